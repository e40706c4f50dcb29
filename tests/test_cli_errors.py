"""A user's mistakes, run as real `roadwork` processes: each gets a short message that names the problem
(no traceback) and a non-zero exit. All cases start at once (each spends most of its time importing)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow  # ~10 processes importing torch/transformers: ~20-40 s on 2 cores

# case -> (arguments, extra environment, what stderr must name, most stderr lines)
USAGE = 6  # click's usage error: "Usage: ...", "Try ... --help", and the error in a 3-line box
CASES = {
    "missing model folder": (["predict", "examples/", "--model", "{tmp}/nomodel"], {}, "no such model folder", 1),
    "folder that is not a model": (["predict", "examples/", "--model", "models/color"], {}, "not a model folder", 1),
    "mistyped tier kind": (["predict", "examples/", "--config", "{tmp}/bad.yaml"], {},
                           "did you mean 'classifier'?", 1),
    "hub id while offline": (["predict", "examples/", "--model", "someone/x"], {"HF_HUB_OFFLINE": "1"},
                             "HF_HUB_OFFLINE", 1),
    # a closed loopback port stands for a hub that cannot be reached (the real one is not reachable from CI)
    "hub id, hub unreachable": (["predict", "examples/", "--model", "someone/x"],
                                {"HF_ENDPOINT": "http://127.0.0.1:9"}, "unreachable", 1),
    "train --init while offline": (["train", "--data", "examples", "--out", "{tmp}/run", "--init",
                                    "google/vit-base-patch16-224"], {"HF_HUB_OFFLINE": "1"}, "offline", 1),
    "label --address auto, no cluster": (["label", "examples/", "--out", "{tmp}/labels", "--address", "auto"],
                                         {}, "no Ray cluster", 1),
    "batch size 0": (["predict", "examples/", "--batch-size", "0"], {}, "--batch-size", USAGE),
    "fps 0": (["predict", "examples/", "--fps", "0"], {}, "--fps", USAGE),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("errors")
    (tmp / "bad.yaml").write_text("tiers:\n  - kind: clasifier\n")
    procs = {}
    for name, (args, env, _, _) in CASES.items():
        # an empty hub cache and Ray folder of our own: what the user's machine holds must not matter
        full_env = {**os.environ, "HF_HOME": str(tmp / "hf"), "RAY_TMPDIR": str(tmp / "ray"),
                    "PYTHONPATH": str(REPO), **env}
        for k in ("RAY_ADDRESS", *(() if "HF_HUB_OFFLINE" in env else ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))):
            full_env.pop(k, None)
        argv = [sys.executable, "-m", "roadwork.cli", *(a.format(tmp=tmp) for a in args)]
        procs[name] = subprocess.Popen(argv, cwd=REPO, env=full_env, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)
    out = {}
    for name, p in procs.items():
        stdout, stderr = p.communicate(timeout=300)
        out[name] = (p.returncode, stdout, stderr)
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_mistake_gets_a_short_message_and_a_nonzero_exit(runs, case):
    code, stdout, stderr = runs[case]
    _, _, names, most_lines = CASES[case]
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert code == 2, (code, stderr[-2000:])
    assert "Traceback" not in stderr and names in stderr, stderr[-2000:]
    assert len(lines) <= most_lines, stderr
    assert stdout == ""
