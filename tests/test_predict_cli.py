"""`roadwork predict` end to end through the CLI: files, folders, errors and multi-view decisions."""

import json

from typer.testing import CliRunner

from roadwork.cli import app
from roadwork.engine import Engine
from roadwork.sequence import combine_views

from conftest import EXAMPLES

runner = CliRunner()


def _lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_predict_folder_json_matches_engine(tiny_vit_dir, street_images):
    res = runner.invoke(app, ["predict", str(EXAMPLES), "--model", str(tiny_vit_dir), "--json"])
    assert res.exit_code == 0, res.output
    rows = _lines(res.stdout)
    assert [r["path"].split("/")[-1] for r in rows] == sorted(p.name for p in EXAMPLES.glob("*.jpg"))
    want = [r.prob for r in Engine.from_pretrained(str(tiny_vit_dir)).predict(street_images)]
    assert [r["prob"] for r in rows] == [round(p, 6) for p in want]


def test_predict_views_prints_one_combined_decision(tiny_vit_dir):
    res = runner.invoke(app, ["predict", str(EXAMPLES), "--model", str(tiny_vit_dir), "--json", "--views", "max"])
    assert res.exit_code == 0, res.output
    rows = _lines(res.stdout)
    per_image, combined = rows[:-1], rows[-1]
    assert combined["views"] == 3 and combined["method"] == "max"
    assert abs(combined["prob"] - combine_views([r["prob"] for r in per_image], "max")) < 1e-5
    assert combined["label"] == int(combined["prob"] > 0.5)


def test_predict_reports_bad_and_missing_inputs(tiny_vit_dir, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg at all")
    res = runner.invoke(app, ["predict", str(bad), str(tmp_path / "missing.jpg"), "--model", str(tiny_vit_dir),
                              "--json"])
    assert res.exit_code == 1
    rows = _lines(res.stdout)
    assert rows and rows[0]["path"] == str(bad) and "bad.jpg" in rows[0]["error"]
    assert "missing.jpg" in res.output


def test_predict_unknown_view_method_is_a_usage_error(tiny_vit_dir):
    res = runner.invoke(app, ["predict", str(EXAMPLES), "--model", str(tiny_vit_dir), "--views", "vote"])
    assert res.exit_code == 2 and "unknown method 'vote'" in res.output


def test_predict_keeps_argument_order_names_each_file_once_and_reports_every_miss(tiny_vit_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    text = tmp_path / "notes.jpg"
    text.write_text("hi\nthere, not an image")
    phoenix = EXAMPLES / "roadwork_phoenix.jpg"
    args = [str(phoenix), str(empty), str(tmp_path / "missing.jpg"), str(EXAMPLES), str(phoenix), str(text)]
    res = runner.invoke(app, ["predict", *args, "--model", str(tiny_vit_dir), "--json"])
    assert res.exit_code == 1
    rows = _lines(res.stdout)
    names = [r["path"].split("/")[-1] for r in rows]
    assert names == ["roadwork_phoenix.jpg", "empty", "missing.jpg", "none_los_angeles.jpg", "roadwork_boston.jpg",
                     "notes.jpg"]  # argument order; phoenix once although named twice
    assert "no images or videos" in rows[1]["error"] and "no such file" in rows[2]["error"]
    assert "'hi\\nthere, not an" in rows[5]["error"]  # a text file shows its text, not hex


def test_predict_empty_folder_says_so_and_fails(tiny_vit_dir, tmp_path):
    res = runner.invoke(app, ["predict", str(tmp_path), "--model", str(tiny_vit_dir)])
    assert res.exit_code == 1 and "no images or videos in this folder" in res.output


def test_version():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.startswith("roadwork 0.")


def test_readme_sample_output_is_what_predict_prints():
    # The README's first command ends in `roadwork predict examples/`; its sample block must be that output.
    import re
    import subprocess
    import sys

    from conftest import REPO

    readme = (REPO / "README.md").read_text()
    first = readme.split("```bash\n", 1)[1].split("\n", 1)[0]
    assert first.endswith("roadwork predict examples/")
    sample = re.search(r"prints:\n\n```\n(.*?)```", readme, re.S)
    assert sample, "README: a 'prints:' block after the first commands"
    env = {**__import__("os").environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "roadwork.cli", "predict", "examples/"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout == sample.group(1)
