"""`evaluate()` end to end on a small manifest with the tiny ViT; `roadwork eval` through typer."""

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import make_tiny_vit
from PIL import Image
from typer.testing import CliRunner

from roadwork.cli import app
from roadwork.engine import Engine
from roadwork.evaluate import evaluate
from roadwork.metrics import binary_metrics

N_GOOD = 14


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """14 small images over two sources (one unreadable file more), as a `path,label,group,source` CSV."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(N_GOOD):
        label = i % 2
        arr = rng.integers(0, 256, (40 + i, 56, 3), dtype=np.uint8)
        arr[..., 0] = 200 if label else arr[..., 0]  # a little signal so the two classes differ
        name = f"img_{i:02d}.jpg"
        Image.fromarray(arr).save(root / name, quality=90)
        rows.append((name, label, f"g{i // 4}", "alpha" if i < 8 else "beta"))
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    rows.insert(5, ("broken.jpg", 1, "g9", "beta"))
    with (root / "manifest.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "group", "source"])
        w.writerows(rows)
    return root / "manifest.csv"


@pytest.fixture(scope="module")
def engine(tiny_vit_dir: Path) -> Engine:
    return Engine.from_pretrained(str(tiny_vit_dir))


def test_eval_without_challenge_is_the_engine_on_the_files(engine, manifest):
    rep = evaluate(engine, manifest, challenge=False, progress=False, batch_size=4)
    assert rep.n == N_GOOD
    assert len(rep.errors) == 1 and rep.errors[0][0].endswith("broken.jpg")
    rows = [r for r in csv.DictReader(manifest.open()) if r["path"] != "broken.jpg"]
    imgs = [Image.open(manifest.parent / r["path"]).convert("RGB") for r in rows]
    direct = [r.prob for r in engine.predict(imgs)]
    np.testing.assert_allclose(rep.probs, direct, atol=1e-6)  # batching changed nothing
    assert rep.labels.tolist() == [int(r["label"]) for r in rows]
    d = rep.to_dict()
    assert d["per_level"] == {} and set(d["per_source"]) == {"alpha", "beta"}
    assert d["per_source"]["alpha"]["n"] == 8 and d["per_source"]["beta"]["n"] == 6
    m = binary_metrics(rep.labels, direct)
    assert d["mcc"] == pytest.approx(m["mcc"]) and d["accuracy"] == pytest.approx(m["accuracy"])
    assert d["errors"] == 1 and "broken.jpg" in d["error_files"][0]["path"]
    assert 0.0 <= d["reward"] <= 1.0 and d["reward_detail"]["rounds"] == N_GOOD
    tier = d["per_tier"]["tiers"]["classifier"]
    assert tier["ran"] == tier["answered"] == N_GOOD
    assert tier["accuracy"] == pytest.approx(d["accuracy"]) and tier["ms_per_image"] > 0
    assert d["per_tier"]["cascade"]["accuracy"] == pytest.approx(d["accuracy"])
    json.dumps(d, allow_nan=False)  # strict JSON: nan became null


def test_eval_limit_is_a_seeded_subset(engine, manifest):
    a = evaluate(engine, manifest, challenge=False, limit=6, seed=3, progress=False)
    b = evaluate(engine, manifest, challenge=False, limit=6, seed=3, progress=False)
    assert a.n + len(a.errors) == 6 and a.paths == b.paths
    assert a.paths == sorted(a.paths)  # a subset in manifest order, not a reshuffle


def test_eval_with_challenge_is_deterministic_per_seed(engine, manifest):
    a = evaluate(engine, manifest, challenge=True, seed=7, progress=False, protocol="2026-01")
    b = evaluate(engine, manifest, challenge=True, seed=7, progress=False, protocol="2026-01")
    c = evaluate(engine, manifest, challenge=True, seed=8, progress=False, protocol="2026-01")
    assert a.n == N_GOOD and set(a.levels.tolist()) <= {0, 1, 2, 3}
    assert np.array_equal(a.levels, b.levels) and np.array_equal(a.probs, b.probs)
    assert a.to_dict()["reward"] == b.to_dict()["reward"]
    assert not (np.array_equal(a.levels, c.levels) and np.array_equal(a.probs, c.probs))
    plain = evaluate(engine, manifest, challenge=False, progress=False)
    assert not np.allclose(a.probs, plain.probs)  # the challenge really changed the pixels
    d = a.to_dict()
    assert set(d["per_level"]) == {str(v) for v in set(a.levels.tolist())}
    assert sum(v["n"] for v in d["per_level"].values()) == N_GOOD
    assert d["protocol"] == "2026-01"


def test_eval_follows_the_protocol(engine, manifest):
    """2026-05 has no levels (none reported) and sends the native image; 2026-04 levels are letterboxed."""
    native = evaluate(engine, manifest, challenge=True, seed=7, progress=False)  # the default: 2026-05
    d = native.to_dict()
    assert d["protocol"] == "2026-05" and set(native.levels.tolist()) == {-1} and d["per_level"] == {}
    plain = evaluate(engine, manifest, challenge=False, progress=False)
    assert plain.to_dict()["protocol"] == ""
    assert not np.array_equal(native.probs, plain.probs)  # the JPEG q75 round trip changed the pixels
    np.testing.assert_allclose(native.probs, plain.probs, atol=0.05)  # ... a little, at the same size
    boxed = evaluate(engine, manifest, challenge=True, seed=7, progress=False, protocol="2026-04")
    assert set(boxed.levels.tolist()) <= {0, 1, 2, 3} and boxed.to_dict()["protocol"] == "2026-04"


def test_per_tier_table_of_a_two_tier_cascade(tiny_vit_dir, manifest, tmp_path):
    second = make_tiny_vit(tmp_path / "second", seed=1)
    first = Engine.from_pretrained(str(tiny_vit_dir))
    p1 = evaluate(first, manifest, challenge=False, progress=False).probs
    lo, hi = float(np.quantile(p1, 0.3)), float(np.quantile(p1, 0.7))  # the middle ~40% escalate
    from roadwork.config import load_config

    cfg = load_config(overrides={"tiers": [{"name": "a", "model": str(tiny_vit_dir), "band": [lo, hi]},
                                           {"name": "b", "model": str(second)}]})
    rep = evaluate(Engine.from_config(cfg), manifest, challenge=False, progress=False)
    t = rep.to_dict()["per_tier"]
    esc = (p1 >= lo) & (p1 <= hi)
    assert t["tiers"]["a"]["ran"] == N_GOOD and t["tiers"]["a"]["answered"] == int((~esc).sum())
    assert t["tiers"]["b"]["ran"] == t["tiers"]["b"]["answered"] == int(esc.sum()) > 0
    correct = np.round(rep.probs).astype(int) == rep.labels
    assert t["tiers"]["a"]["accuracy"] == pytest.approx(correct[~esc].mean())
    assert t["tiers"]["b"]["accuracy"] == pytest.approx(correct[esc].mean())
    assert t["tiers"]["a"]["accuracy_ran"] == pytest.approx((np.round(p1).astype(int) == rep.labels).mean())
    # escalated images paid for both tiers
    assert t["tiers"]["b"]["cost_ms_answered"] > t["tiers"]["b"]["ms_per_image"]
    assert t["cascade"]["accuracy"] == pytest.approx(correct.mean())


def test_cli_eval_json_and_report(tiny_vit_dir, manifest, tmp_path):
    out = tmp_path / "report"
    res = CliRunner().invoke(app, ["eval", "--data", str(manifest), "--model", str(tiny_vit_dir), "--no-challenge",
                                   "--json", "--report", str(out), "--seed", "1", "--protocol", "2026-04"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)  # exactly one JSON object on stdout
    for key in ("n", "mcc", "accuracy", "auc", "reward", "precision", "recall", "brier", "ece", "per_level",
                "per_source", "per_tier", "errors"):
        assert key in d
    assert d["n"] == N_GOOD and d["errors"] == 1 and d["seed"] == 1
    for name in ("roc.png", "reliability.png", "confusion.png", "accuracy_per_level.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4
    assert "src=\"http" not in page and "<link" not in page  # self-contained
    assert "alpha" in page and "broken.jpg" in page


def test_cli_eval_tables_and_bad_data(tiny_vit_dir, manifest, tmp_path):
    res = CliRunner().invoke(app, ["eval", "-d", str(manifest), "-m", str(tiny_vit_dir), "--no-challenge",
                                   "--limit", "5"])
    assert res.exit_code == 0, res.output
    assert "per source" in res.stdout and "per tier" in res.stdout and "reward" in res.stdout
    res = CliRunner().invoke(app, ["eval", "-d", str(tmp_path / "nope.csv"), "-m", str(tiny_vit_dir)])
    assert res.exit_code == 2 and "nope.csv" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(app, ["eval", "-d", str(manifest), "-m", str(tmp_path / "no_model")])
    assert res.exit_code == 2 and "no_model" in res.output and "Traceback" not in res.output


def test_one_class_source_reports_nan_auc_as_null(engine, tmp_path):
    for i in range(3):
        Image.new("RGB", (32, 32), (i * 60, 10, 10)).save(tmp_path / f"{i}.png")
    (tmp_path / "m.csv").write_text("path,label\n0.png,0\n1.png,0\n2.png,0\n")
    d = evaluate(engine, tmp_path / "m.csv", challenge=False, progress=False).to_dict()
    assert d["auc"] is None and d["n"] == 3 and not math.isnan(d["accuracy"])


def test_eval_scores_the_challenges_challenge_make_writes(engine, manifest, tmp_path):
    from roadwork.challenge.dataset import make_challenge_set

    make_challenge_set(manifest, tmp_path / "set", seed=11, n=9, progress=False, protocol="2026-01")
    rows = list(csv.DictReader((tmp_path / "set" / "labels.csv").open()))
    rep = evaluate(engine, manifest, challenge=True, seed=11, limit=9, progress=False, protocol="2026-01")
    assert rep.paths == [r["origin"] for r in rows]
    assert rep.levels.tolist() == [int(r["level"]) for r in rows]
    # the same pixels: scoring the written JPEGs without a second challenge gives the same answers
    jpegs = [Image.open(tmp_path / "set" / r["file"]).convert("RGB") for r in rows]
    np.testing.assert_allclose(rep.probs, [r.prob for r in engine.predict(jpegs)], atol=1e-6)


def test_tables_print_a_dash_where_mcc_or_precision_is_undefined():
    from rich.console import Console

    from roadwork.report import _table

    rows = {"one_class": {"n": 5, "positives": 0, "precision": 0.0, "mcc": 0.0},
            "mixed": {"n": 6, "positives": 3, "precision": 0.0, "mcc": 0.0}}
    console = Console(width=100, record=True)
    console.print(_table("per source", rows, ("n", "positives", "precision", "mcc"), "source"))
    text = console.export_text()
    one = next(ln for ln in text.splitlines() if "one_class" in ln)
    mixed = next(ln for ln in text.splitlines() if "mixed" in ln)
    assert one.count("—") == 2 and "0.000" not in one
    assert "—" not in mixed and mixed.count("0.000") == 2  # a measured 0 stays a 0
