"""The `onnx` tier: a classifier folder's ONNX export on onnxruntime, for CPU-only miners.

`roadwork export-onnx DIR` writes `model.onnx` (fp32), `model.int8.onnx` (static INT8) and
`onnx.json` (a fingerprint of the weights it came from, the preprocessing spec, the measured
agreement with PyTorch) into the folder. This module imports neither torch nor transformers: a
cold `roadwork predict one.jpg` spends its time on the image, not on building a model. An export
whose fingerprint no longer matches the folder's weights is stale and is never used implicitly.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import platform
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from roadwork.config import TierConfig
from roadwork.fast.preprocess import PreprocessSpec
from roadwork.tiers.base import Tier
from roadwork.tiers.kinds import OnnxOptions

log = logging.getLogger(__name__)

STAMP_FILE = "onnx.json"
FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
# what decides the model's output: weights, architecture, preprocessing and unfolded calibration
_FINGERPRINTED = ("config.json", "preprocessor_config.json", "roadwork.json")
_WEIGHTS = ("*.safetensors", "*.bin")
CACHE_DIR = Path(os.environ.get("ROADWORK_CACHE", Path.home() / ".cache" / "roadwork")) / "onnx"


def fingerprint(folder: str | Path) -> str:
    """sha256 over the files that decide the folder's probabilities (cheap: ~20 MB, tens of ms)."""
    folder = Path(folder)
    h = hashlib.sha256()
    files = [folder / n for n in _FINGERPRINTED if (folder / n).is_file()]
    files += sorted(f for pat in _WEIGHTS for f in folder.glob(pat))
    for f in files:
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()


def read_stamp(folder: str | Path) -> dict[str, Any] | None:
    path = Path(folder) / STAMP_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        log.warning("%s: not valid JSON; ignoring the ONNX export", path)
        return None


def file_stats(folder: str | Path) -> dict[str, list[int]]:
    """(size, mtime_ns) of the fingerprinted files: when all match the stamp, hashing is skipped."""
    folder = Path(folder)
    files = [folder / n for n in _FINGERPRINTED if (folder / n).is_file()]
    files += sorted(f for pat in _WEIGHTS for f in folder.glob(pat))
    return {f.name: [f.stat().st_size, f.stat().st_mtime_ns] for f in files}


def fresh_export(folder: str | Path, precision: str = "fp32") -> Path | None:
    """The folder's ONNX file for `precision` if one exists and was exported from these weights."""
    folder = Path(folder)
    stamp = read_stamp(folder) if folder.is_dir() else None
    if not stamp:
        return None
    path = folder / stamp.get("files", {}).get(precision, FILES.get(precision, ""))
    if not path.is_file():
        return None
    if stamp.get("stats") != file_stats(folder) and stamp.get("fingerprint") != _fingerprint_cached(folder):
        log.warning("%s: ONNX export is stale (weights changed since `roadwork export-onnx`); not used", folder)
        return None
    return path


@functools.lru_cache(maxsize=8)
def _fingerprint_cached(folder: Path) -> str:
    return fingerprint(folder)


def _session(path: Path, threads: int) -> Any:
    """An onnxruntime session. Graph optimisation costs ~0.4 s of a cold start, so the optimised graph
    is cached per model file, onnxruntime version and host (it may hold CPU-specific layouts) and
    later loads skip it; without a writable cache the session simply optimises every time."""
    import onnxruntime as ort

    def options(level: Any) -> Any:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = level
        opts.log_severity_level = 3  # warnings about unused initializers are noise to a miner
        return opts

    st = path.stat()
    key = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{ort.__version__}|{platform.node()}"
                       .encode()).hexdigest()[:20]
    cached = CACHE_DIR / f"{key}.onnx"
    providers = ["CPUExecutionProvider"]
    if cached.is_file():
        try:
            return ort.InferenceSession(str(cached), options(ort.GraphOptimizationLevel.ORT_DISABLE_ALL),
                                        providers=providers)
        except Exception as e:  # noqa: BLE001 - a damaged cache entry: rebuild it below
            log.warning("%s: unusable cached graph (%s); re-optimising", cached, e)
    opts = options(ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    tmp = None
    try:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        tmp = CACHE_DIR / f".{key}.{os.getpid()}.onnx"
        opts.optimized_model_filepath = str(tmp)
    except OSError:
        pass
    sess = ort.InferenceSession(str(path), opts, providers=providers)
    if tmp is not None and tmp.is_file():
        os.replace(tmp, cached)  # atomic: a concurrent reader sees the whole file or none
    return sess


def cuda_possible() -> bool:
    """Whether this machine could run CUDA, answered without importing torch when it cannot
    (no NVIDIA device node means no CUDA: torch's 2-3 s import is not needed to learn that)."""
    if not any(os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg")):
        return False
    import torch

    return torch.cuda.is_available()


class OnnxTier(Tier):
    """P(roadwork) from an ONNX export (its output is the calibrated probability itself)."""

    kind = "onnx"

    def __init__(self, model: str, name: str = "classifier", precision: str = "fp32", threads: int | None = None,
                 batch_size: int = 32, cost: float | None = None, check_fresh: bool = True):
        if precision not in FILES:
            raise ValueError(f"onnx tier '{name}': precision must be one of {', '.join(FILES)}, got {precision!r}")
        path = Path(model)
        folder = path.parent if path.is_file() else path
        stamp = read_stamp(folder) or {}
        if path.is_dir():
            found = fresh_export(path, precision) if check_fresh else path / FILES[precision]
            if found is None or not found.is_file():
                raise ValueError(f"onnx tier '{name}': no current {precision} export in {path} "
                                 f"(run `roadwork export-onnx {path}`)")
            path = found
        self.precision = precision
        self.model_path = str(path)
        self.spec = PreprocessSpec.from_dict(stamp["preprocess"]) if "preprocess" in stamp \
            else PreprocessSpec.from_folder(folder)
        self.session = _session(path, threads or os.cpu_count() or 1)
        self.input_name = self.session.get_inputs()[0].name
        # calibration is folded into the exported graph's output
        self.configure(name, batch_size, cost, _read_json(folder / "roadwork.json").get("cost_ms"))

    @classmethod
    def build(cls, cfg: TierConfig, options: OnnxOptions, check_fresh: bool = True) -> "OnnxTier":
        return cls(cfg.model, name=cfg.name, precision=options.precision, threads=options.threads,
                   batch_size=cfg.batch_size, cost=cfg.cost, check_fresh=check_fresh)

    def predict_batch(self, images: list[Image.Image]) -> np.ndarray:
        x = self.spec.to_numpy(images)
        return np.asarray(self.session.run(None, {self.input_name: x})[0]).reshape(-1)

    @property
    def warmup_size(self) -> tuple[int, int]:
        size = self.spec.out_size or (224, 224)
        return (size[1], size[0])


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}
