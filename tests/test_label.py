"""`roadwork label` on a real local Ray cluster (2 CPUs, 2 actors) and in-process (--local).

One Ray run labels a folder of 12 images, a corrupt file and a 2 s video; the other tests check
its output against `Engine.predict`, resume it after deleting a part file, and compare --local.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from roadwork.config import load_config
from roadwork.data import iter_video_frames
from roadwork.decode import load_image
from roadwork.label import LabelError, part_path, read_labels, run_label

pytestmark = pytest.mark.timeout(600)  # Ray start-up and actor imports on a loaded 2-core machine

N_IMAGES, SHARD = 12, 4  # + bad.jpg + clip.mp4 = 14 items -> shards of 4, 4, 4, 2
FPS, VIDEO_S = 2.0, 2    # frames at 0, 0.5, 1, 1.5 s


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import av

    d = tmp_path_factory.mktemp("label_inputs")
    rng = np.random.default_rng(0)
    for i in range(N_IMAGES):
        Image.fromarray(rng.integers(0, 256, (32 + i, 40, 3), dtype=np.uint8)).save(d / f"img{i:02d}.png")
    (d / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    with av.open(str(d / "clip.mp4"), "w") as c:
        s = c.add_stream("mpeg4", rate=8)
        s.width, s.height, s.pix_fmt = 48, 32, "yuv420p"
        for i in range(VIDEO_S * 8):
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.full((32, 48, 3), 15 * i, np.uint8), format="rgb24")))
        c.mux(s.encode())
    return d


@pytest.fixture(scope="module")
def cfg(tiny_vit_dir: Path):
    return load_config(overrides={"tiers": [{"model": str(tiny_vit_dir)}]})


@pytest.fixture(scope="module")
def ray_run(ray_cluster, inputs: Path, cfg, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("label_ray")
    summary = run_label([str(inputs)], out, cfg, fps=FPS, batch_size=3, shard_size=SHARD, num_workers=2)
    return out, summary


def _rows(out: Path) -> list[dict]:
    return sorted(read_labels(out).to_pylist(), key=lambda r: (r["path"], r["time_s"] or 0.0))


def test_ray_labels_every_input_once_with_engine_probabilities(ray_run, inputs: Path, cfg):
    from roadwork.engine import Engine

    out, summary = ray_run
    rows = _rows(out)
    images = sorted(str(p) for p in inputs.glob("img*.png"))
    still = [r for r in rows if r["time_s"] is None]
    assert [r["path"] for r in still] == sorted(images + [str(inputs / "bad.jpg")])  # each exactly once
    video = [r for r in rows if r["time_s"] is not None]
    assert {r["path"] for r in video} == {str(inputs / "clip.mp4")}
    assert [r["time_s"] for r in video] == [0.0, 0.5, 1.0, 1.5]

    bad = next(r for r in rows if r["path"].endswith("bad.jpg"))
    assert bad["error"] and bad["prob"] is None and bad["label"] is None
    good = [r for r in rows if not r["path"].endswith("bad.jpg")]
    assert all(r["error"] is None and r["tier"] == cfg.tiers[0].name for r in good)

    engine = Engine.from_config(cfg)
    expected = engine.predict([load_image(p) for p in images])
    expected += engine.predict([f for _, f in iter_video_frames(inputs / "clip.mp4", FPS)])
    got = [r for r in good if r["time_s"] is None] + video
    np.testing.assert_allclose([r["prob"] for r in got], [e.prob for e in expected], atol=1e-5)
    assert [r["label"] for r in got] == [e.label for e in expected]

    assert summary == json.loads((out / "summary.json").read_text())
    assert summary["items"] == N_IMAGES + 2 and summary["rows"] == N_IMAGES + 1 + 4
    assert summary["labelled"] == N_IMAGES + 4 and summary["errors"] == 1 and summary["video_frames"] == 4
    assert summary["positives"] == sum(e.label for e in expected)
    assert summary["shards"] == summary["shards_done"] == 4 and summary["complete"]
    assert summary["mode"] == "ray" and summary["workers"] == 2 and summary["images_per_s"] > 0
    assert sorted(p.name for p in (out / "labels").iterdir()) == [f"part-{i:05d}.parquet" for i in range(4)]


def test_resume_recomputes_only_the_missing_shard(ray_run, inputs: Path, cfg, tmp_path: Path):
    src, _ = ray_run
    out = tmp_path / "out"
    shutil.copytree(src, out)
    before = _rows(out)
    part_path(out, 1).unlink()
    mtimes = {s: part_path(out, s).stat().st_mtime_ns for s in (0, 2, 3)}

    summary = run_label([str(inputs)], out, cfg, fps=FPS, batch_size=3, shard_size=SHARD, num_workers=2)
    assert {s: part_path(out, s).stat().st_mtime_ns for s in (0, 2, 3)} == mtimes  # not rewritten
    assert part_path(out, 1).exists()
    assert summary["shards_skipped"] == 3 and summary["labelled_this_run"] == SHARD and summary["workers"] == 1
    assert summary["complete"] and summary["rows"] == len(before)
    after = _rows(out)
    assert [(r["path"], r["time_s"], r["label"], r["error"]) for r in after] == \
        [(r["path"], r["time_s"], r["label"], r["error"]) for r in before]
    np.testing.assert_allclose([r["prob"] or 0.0 for r in after], [r["prob"] or 0.0 for r in before], atol=1e-6)


def test_resume_refuses_a_different_plan(ray_run, inputs: Path, cfg, tmp_path: Path):
    src, _ = ray_run
    out = tmp_path / "out"
    shutil.copytree(src, out)
    with pytest.raises(LabelError, match="--no-resume"):
        run_label([str(inputs)], out, cfg, fps=FPS, shard_size=SHARD + 1, local=True)
    assert len(list((out / "labels").glob("part-*.parquet"))) == 4  # nothing deleted


def test_local_gives_the_same_rows_as_ray(ray_run, inputs: Path, cfg, tmp_path: Path):
    src, ray_summary = ray_run
    summary = run_label([str(inputs)], tmp_path, cfg, fps=FPS, batch_size=3, shard_size=SHARD, local=True)
    ray_rows, local_rows = _rows(src), _rows(tmp_path)
    assert [(r["path"], r["time_s"], r["label"], r["tier"], r["error"]) for r in local_rows] == \
        [(r["path"], r["time_s"], r["label"], r["tier"], r["error"]) for r in ray_rows]
    np.testing.assert_allclose([r["prob"] or 0.0 for r in local_rows], [r["prob"] or 0.0 for r in ray_rows],
                               atol=1e-6)
    assert summary["mode"] == "local"
    assert {k: summary[k] for k in ("items", "rows", "labelled", "positives", "errors", "video_frames")} == \
        {k: ray_summary[k] for k in ("items", "rows", "labelled", "positives", "errors", "video_frames")}


def test_cli_local_and_bad_inputs(inputs: Path, tiny_vit_dir: Path, tmp_path: Path):
    from roadwork.cli import app

    runner = CliRunner()
    out = tmp_path / "o"
    specs = [str(inputs / "img0*.png"), str(inputs / "bad.jpg")]  # a glob (10 images) and a file
    res = runner.invoke(app, ["label", *specs, "--out", str(out), "--model", str(tiny_vit_dir), "--local",
                              "--shard-size", "4"])
    assert res.exit_code == 0, res.output
    s = json.loads((out / "summary.json").read_text())
    assert (s["items"], s["labelled"], s["errors"], s["shards"], s["complete"]) == (11, 10, 1, 3, True)

    res = runner.invoke(app, ["label", str(inputs / "nope*.png"), "--out", str(tmp_path / "x"), "--local"])
    assert res.exit_code == 2 and "no such file" in res.output
    res = runner.invoke(app, ["label", str(inputs / "img00.png"), "--out", str(tmp_path / "y"), "--local",
                              "--model", str(tmp_path / "missing_model")])
    assert res.exit_code == 2 and "cannot build the engine" in res.output


def test_missing_ray_is_a_clear_error(inputs: Path, cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(LabelError, match=r"ray is not installed.*--local"):
        run_label([str(inputs / "img00.png")], tmp_path, cfg, num_workers=1)
