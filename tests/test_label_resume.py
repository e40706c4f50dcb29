"""Ctrl-C on a real `roadwork label` process, then the same command again (issue 8).

The first run (--local, one image per shard) is interrupted with SIGINT once a part file is on disk:
it must exit 130 with a short message naming how to resume, and leave the finished parts as they
were. The rerun must skip exactly those parts and label the rest, every image once in the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from roadwork.label import read_labels

# ~10 ms a shard on a 2-core machine: 300 shards leave the poller seconds to catch the first part
# while most shards are still to do (checked below, so a too-fast machine fails loudly, not silently)
N_IMAGES = 300
POLL_TIMEOUT_S = 180  # a guard against a hung process, not a speed assert: torch import on a loaded box


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    return env


def _parts(out: Path) -> list[Path]:
    return sorted((out / "labels").glob("part-*.parquet")) if (out / "labels").is_dir() else []


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(N_IMAGES):
        Image.fromarray(rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)).save(d / f"f{i:04d}.jpg")
    return d


def test_ctrl_c_leaves_finished_shards_and_the_rerun_resumes(inputs: Path, tiny_vit_dir: Path, tmp_path: Path):
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "roadwork.cli", "label", str(inputs), "--out", str(out), "--model",
            str(tiny_vit_dir), "--local", "--shard-size", "1", "--batch-size", "1"]
    # files, not pipes: a full pipe would stall the child and hide what it printed
    with open(tmp_path / "stdout", "w+") as so, open(tmp_path / "stderr", "w+") as se:
        proc = subprocess.Popen(argv, env=_env(), stdout=so, stderr=se)
        try:
            deadline = time.monotonic() + POLL_TIMEOUT_S
            while not _parts(out):
                assert proc.poll() is None, f"exited {proc.returncode} before any part was written"
                assert time.monotonic() < deadline, "no part file written in time"
                time.sleep(0.01)
            # freeze it so the snapshot is exactly what was finished when Ctrl-C came
            os.kill(proc.pid, signal.SIGSTOP)
            finished = {p.name: p.read_bytes() for p in _parts(out)}
            os.kill(proc.pid, signal.SIGINT)
            os.kill(proc.pid, signal.SIGCONT)
            rc = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        so.seek(0)
        se.seek(0)
        stdout, stderr = so.read(), se.read()

    assert len(finished) < N_IMAGES, "labelling finished before the interrupt: raise N_IMAGES"
    assert rc == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert 1 <= len(lines) <= 3, stderr
    assert "interrupted" in stderr and "rerun the same command to resume" in stderr, stderr
    assert stdout == ""

    # the interrupt touched none of the finished parts; it may have finished the one in flight
    for name, data in finished.items():
        assert (out / "labels" / name).read_bytes() == data, name
    kept = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in _parts(out)}
    assert set(finished) <= set(kept) and sorted(kept) == [f"part-{s:05d}.parquet" for s in range(len(kept))]
    assert len(kept) < N_IMAGES

    rerun = subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"({len(kept)} already done)" in " ".join(rerun.stderr.split()), rerun.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["shards_skipped"] == len(kept) and summary["labelled_this_run"] == N_IMAGES - len(kept)
    assert summary["complete"] and summary["shards_done"] == N_IMAGES
    # skipped, not rewritten: same bytes, same mtime
    assert {n: (p.read_bytes(), p.stat().st_mtime_ns) for n, p in ((p.name, p) for p in _parts(out))
            if n in kept} == kept
    assert not list((out / "labels").glob(".part-*"))  # a temp part cut off by the interrupt is gone

    rows = read_labels(out).to_pylist()
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in inputs.glob("*.jpg"))  # each once
    assert all(r["error"] is None and r["label"] in (0, 1) for r in rows)
