"""Scoring a trained model folder the way the miner would see images (issue 10 item 5).

Two views of every held-out image, each drawn once with a fixed seed and cached, so every recipe and
seed of an ablation is scored on the very same pixels:

    224     the 224x224 challenge of `--protocol` (2026-01 crops, 2026-04 letterboxes), JPEG q75
    native  the 2026-05 challenge: the image at its own size as JPEG q75 (re-encoded once more for
            JPEG sources, as the validator's cache does)

The model answers through the classifier tier (its own preprocessing, calibration folded in), so a
model is scored exactly as `roadwork predict` and the miner run it. MCC is at 0.5 on the calibrated
probability, i.e. at the threshold fitted on the run's validation groups.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from roadwork.metrics import binary_metrics, stream_reward

VIEWS = ("224", "native")
NATIVE_PROTOCOL = "2026-05"


def view_protocol(view: str, protocol: str) -> str:
    return NATIVE_PROTOCOL if view == "native" else protocol


class _Views:
    """records[i] -> (uint8 HxWx3 challenge image, label); picklable for DataLoader workers."""

    def __init__(self, records: Sequence[Any], protocol: str, seed: int):
        self.records, self.protocol, self.seed = list(records), protocol, seed

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        from roadwork.challenge import make_challenge
        from roadwork.challenge.protocols import is_jpeg_path

        r = self.records[i]
        rng = np.random.default_rng([self.seed, 7, i])  # not the training streams' (seed, epoch, index)
        ch = make_challenge(r.load().convert("RGB"), rng, protocol=self.protocol, from_jpeg=is_jpeg_path(r.path))
        return np.asarray(ch.image.convert("RGB"), dtype=np.uint8), int(r.label)


def _as_list(batch: list) -> list:
    return batch


def cache_views(records: Sequence[Any], protocol: str, seed: int, workers: int) -> dict[str, Any]:
    """Every record's challenge image of `protocol` (fixed seed), for `save_cache`."""
    from torch.utils.data import DataLoader

    from roadwork.train.loader import worker_init

    loader = DataLoader(_Views(records, protocol, seed), batch_size=16, num_workers=workers,
                        collate_fn=_as_list, worker_init_fn=worker_init)
    images, labels = [], []
    for batch in loader:
        for img, y in batch:
            images.append(img)
            labels.append(y)
    return {"images": images, "labels": np.asarray(labels, np.int64), "protocol": protocol, "seed": seed,
            "paths": [str(r.path) for r in records]}


def save_cache(path: str | Path, cache: dict[str, Any]) -> None:
    import pickle

    tmp = Path(path).with_suffix(".tmp")
    with tmp.open("wb") as f:
        pickle.dump(cache, f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)


def load_cache(path: str | Path) -> dict[str, Any]:
    import pickle

    with Path(path).open("rb") as f:
        return pickle.load(f)


Predict = Callable[[list[Image.Image]], np.ndarray]


def tier_predictor(model_dir: str | Path, device: str = "auto", batch_size: int = 128) -> Predict:
    """The classifier tier over a saved folder: P(roadwork) for a list of PIL images."""
    from roadwork.tiers.classifier import ClassifierTier

    tier = ClassifierTier(str(model_dir), device=device, dtype="float32", batch_size=batch_size)
    return lambda images: np.asarray(tier.predict_batch(images), np.float64)


def model_predictor(model_dir: str | Path, device: str = "auto") -> Predict:
    """The saved folder's own model and processor, with the processor's resize and normalization done
    on the GPU (the HF processor on the CPU was the ablation's bottleneck with many runs at once).
    The resize is torch's (antialiased, the processor's bilinear or bicubic); the 224 views need none."""
    import torch
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    from roadwork.tiers.classifier import roadwork_index

    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    model = AutoModelForImageClassification.from_pretrained(str(model_dir), dtype=torch.float32).to(dev).eval()
    proc = AutoImageProcessor.from_pretrained(str(model_dir))
    size = proc.size.get("height", 224), proc.size.get("width", 224)
    mode = "bicubic" if int(getattr(proc, "resample", 2)) == 3 else "bilinear"
    mean = torch.tensor(proc.image_mean, device=dev).view(1, 3, 1, 1)
    std = torch.tensor(proc.image_std, device=dev).view(1, 3, 1, 1)
    index = roadwork_index(model.config.id2label)

    @torch.inference_mode()
    def predict(images: list[Image.Image]) -> np.ndarray:
        xs = []
        for im in images:
            x = torch.from_numpy(np.asarray(im.convert("RGB"), np.uint8).copy()).to(dev).permute(2, 0, 1)[None].float()
            if tuple(x.shape[-2:]) != size:
                x = torch.nn.functional.interpolate(x, size=size, mode=mode, antialias=True, align_corners=False)
            xs.append(x.clamp(0, 255))
        x = (torch.cat(xs) / 255 - mean) / std
        logits = model(pixel_values=x).logits.float()
        return torch.softmax(logits, dim=-1)[:, index].cpu().numpy().astype(np.float64)
    return predict


def probabilities(predict: Predict, images: Sequence[np.ndarray], batch_size: int = 128) -> np.ndarray:
    out = [predict([Image.fromarray(a) for a in images[s:s + batch_size]]) for s in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros(0)


def metrics(probs: np.ndarray, labels: np.ndarray, seed: int) -> dict[str, float]:
    """AUC, MCC at 0.5, simulated reward and the false-positive rate for one scored set."""
    m = binary_metrics(labels, probs)
    neg = labels == 0
    out = {"n": int(m["n"]), "positives": int(m["positives"]), "auc": m["auc"], "mcc": m["mcc"],
           "accuracy": m["accuracy"], "fpr": float(np.mean(probs[neg] > 0.5)) if neg.any() else float("nan")}
    out["reward"] = stream_reward(probs, labels, seed)["mean_reward"] if m["positives"] else float("nan")
    return out


def score_caches(predict: Predict, caches: dict[str, str | Path], seed: int) -> dict[str, dict[str, float]]:
    """{name: metrics} for every cache file in `caches` ({"clips/224": path, "probe/native": path, ...})."""
    out = {}
    for name, path in caches.items():
        c = load_cache(path)
        out[name] = metrics(probabilities(predict, c["images"]), c["labels"], seed)
    return out
