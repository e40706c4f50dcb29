"""Export a classifier folder to ONNX: fp32 (`model.onnx`) and static INT8 (`model.int8.onnx`).

The exported graph maps normalized pixels straight to the calibrated P(roadwork) (the classifier
tier's own post-processing is traced into it), so the `onnx` tier needs no model code. INT8 is
onnxruntime's static QDQ quantization (per-channel weights, activations calibrated on real images:
validator-style challenges of the given data, else of `examples/`). Every export is checked against
PyTorch on those images and the largest probability difference is written into `onnx.json`.
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from roadwork.fast.onnx_tier import FILES, STAMP_FILE, file_stats, fingerprint
from roadwork.fast.preprocess import PreprocessSpec

log = logging.getLogger(__name__)

OPSET = 18
MAX_PROB_DIFF = 0.01  # the fp32 export must agree with PyTorch this closely on every check image


def calibration_images(data: str | None = None, n: int = 64, seed: int = 0) -> list[Image.Image]:
    """Validator-style challenges (the JPEGs a miner is sent) of `data` or of the example frames."""
    from roadwork.challenge import make_challenge
    from roadwork.config import REPO_ROOT

    rng = np.random.default_rng(seed)
    if data:
        from roadwork.data import open_source

        records = open_source(data).records()
        idx = rng.permutation(len(records))[:n]
        frames = [records[int(i)].load() for i in idx]
    else:
        frames = [Image.open(p).convert("RGB") for p in sorted((REPO_ROOT / "examples").glob("*.jpg"))]
    return [Image.open(io.BytesIO(make_challenge(frames[i % len(frames)], rng).jpeg)).convert("RGB")
            for i in range(n)]


def _wrapped(tier: Any):
    import torch

    class ProbModel(torch.nn.Module):
        """pixel_values -> calibrated P(roadwork), exactly the tier's post-processing."""

        def __init__(self):
            super().__init__()
            self.model = tier.model

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            return tier._probs(self.model(pixel_values=pixel_values).logits.float())

    return ProbModel().eval()


def export_onnx(model_dir: str | Path, out_dir: str | Path | None = None, int8: bool = True,
                data: str | None = None, n_calib: int = 64, log_fn: Callable[[str], None] = print) -> dict[str, Any]:
    """Write the ONNX files and `onnx.json` into `out_dir` (default: the model folder itself)."""
    import torch

    from roadwork.tiers.classifier import ClassifierTier

    model_dir = Path(model_dir)
    out = Path(out_dir) if out_dir else model_dir
    out.mkdir(parents=True, exist_ok=True)
    tier = ClassifierTier(str(model_dir), device="cpu", dtype="float32")
    spec = PreprocessSpec.from_folder(model_dir, getattr(tier.model.config, "image_size", None))
    if not spec.supported:
        raise ValueError(f"{model_dir}: its image processor does more than resize/crop/normalize; "
                         "the onnx tier cannot reproduce it")
    images = calibration_images(data, n_calib)
    x = spec.to_numpy(images)
    size = spec.out_size or (224, 224)
    t0 = time.perf_counter()
    fp32 = out / FILES["fp32"]
    _export(_wrapped(tier), torch.zeros(2, 3, *size), fp32, variable_size=spec.out_size is None)
    log_fn(f"exported {fp32} ({fp32.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - t0:.1f} s)")
    with torch.inference_mode():
        ref = tier.predict(images)  # the PyTorch path, transformers processor included
    report: dict[str, Any] = {"format": 1, "fingerprint": fingerprint(model_dir), "stats": file_stats(model_dir),
                              "files": {"fp32": fp32.name},
                              "preprocess": spec.to_dict(), "opset": OPSET, "torch": torch.__version__,
                              "check": {"images": len(images), "source": data or "examples/ challenges"}}
    got = _run(fp32, x)
    report["check"]["fp32_max_abs_diff"] = float(np.abs(got - ref).max())
    if report["check"]["fp32_max_abs_diff"] > MAX_PROB_DIFF:
        raise RuntimeError(f"fp32 ONNX export differs from PyTorch by {report['check']['fp32_max_abs_diff']:.4f} "
                           f"(> {MAX_PROB_DIFF}); not writing {STAMP_FILE}")
    if int8:
        q = out / FILES["int8"]
        quantize_int8(fp32, q, x)
        got8 = _run(q, x)
        report["files"]["int8"] = q.name
        report["check"]["int8_max_abs_diff"] = float(np.abs(got8 - ref).max())
        report["check"]["int8_mean_abs_diff"] = float(np.abs(got8 - ref).mean())
        report["check"]["int8_label_agreement"] = float(np.mean((got8 > 0.5) == (ref > 0.5)))
        log_fn(f"quantized {q} ({q.stat().st_size / 1e6:.1f} MB): max |p_int8 - p_torch| "
               f"{report['check']['int8_max_abs_diff']:.4f} on {len(images)} images")
    import onnxruntime

    report["onnxruntime"] = onnxruntime.__version__
    (out / STAMP_FILE).write_text(json.dumps(report, indent=2) + "\n")
    log_fn(f"fp32 max |p_onnx - p_torch| = {report['check']['fp32_max_abs_diff']:.2e}; wrote {out / STAMP_FILE}")
    return report


def _export(module: Any, example: Any, path: Path, variable_size: bool) -> None:
    import torch

    dims = {0: "batch", 2: "height", 3: "width"} if variable_size else {0: "batch"}
    with torch.inference_mode(False), torch.no_grad():
        try:  # the dynamo exporter (torch >= 2.5's default path)
            batch = torch.export.Dim("batch", min=1, max=4096)
            shapes = {"pixel_values": {0: batch}} if not variable_size else {
                "pixel_values": {0: batch, 2: torch.export.Dim("height"), 3: torch.export.Dim("width")}}
            prog = torch.onnx.export(module, (example,), input_names=["pixel_values"], output_names=["prob"],
                                     dynamic_shapes=shapes, opset_version=OPSET, dynamo=True, external_data=False)
            prog.save(str(path))
        except Exception as e:  # some architectures only trace with the TorchScript exporter
            log.warning("dynamo ONNX export failed (%s: %s); retrying with the TorchScript exporter",
                        type(e).__name__, e)
            torch.onnx.export(module, (example,), str(path), input_names=["pixel_values"], output_names=["prob"],
                              dynamic_axes={"pixel_values": dims, "prob": {0: "batch"}}, opset_version=OPSET,
                              dynamo=False)


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([np.asarray(sess.run(None, {name: x[i:i + 16]})[0]).reshape(-1)
                           for i in range(0, len(x), 16)])


class _Reader:
    """onnxruntime's CalibrationDataReader over preprocessed calibration batches."""

    def __init__(self, name: str, x: np.ndarray, batch: int = 8):
        self._it = iter([{name: x[i:i + batch]} for i in range(0, len(x), batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def quantize_int8(fp32: Path, out: Path, calib: np.ndarray) -> None:
    """Static INT8 (QDQ, per-channel weights, MinMax-calibrated activations) of an fp32 export."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    name = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        try:  # folds constants and infers shapes so that more nodes quantize
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        except Exception as e:  # noqa: BLE001 - an optimisation; quantize the plain graph instead
            log.warning("quant_pre_process failed (%s); quantizing the unprocessed graph", e)
            pre = fp32
        quantize_static(str(pre), str(out), _Reader(name, calib), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)


def export_main(model: str, out: str | None, int8: bool, data: str | None, n: int, console: Any) -> int:
    try:
        export_onnx(model, out, int8=int8, data=data, n_calib=n, log_fn=console.print)
    except (ValueError, RuntimeError, OSError) as e:
        console.print(f"[red]{e}[/red]")
        return 2
    return 0


__all__ = ["calibration_images", "export_onnx", "quantize_int8"]
