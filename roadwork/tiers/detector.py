"""Object-detector tiers: roadwork objects found -> features -> calibrated P(roadwork).

kind `detector`: any transformers `AutoModelForObjectDetection` checkpoint (RT-DETR, RT-DETRv2,
D-FINE, DETR, Deformable/Conditional DETR, YOLOS ...). There is no ultralytics YOLO kind: ultralytics
(AGPL-3.0) pulls the non-headless opencv-python beside our opencv-python-headless, turns telemetry on
and pip-installs packages at run time, the three traps STYLE.md names for an exposed miner; a YOLO
model exported to a transformers-format detector, or RT-DETR/D-FINE, fills the same role.

A class map groups the detector's label names into roadwork groups (cones, barrels, barriers,
signs, workers, machines). Per image the features are, for each group, the best score and
log(1 + count of detections above `count_threshold`), plus the fraction of the image the roadwork
boxes cover. A logistic calibrator fitted on labelled images (`fit_calibrator`) maps them to a
probability; without one the tier answers the best roadwork score, which is a ranking, not a
calibrated probability.

Options: class_map {group: [label names or ids]}, min_score (detections kept, default 0.05),
count_threshold (default 0.3), calibrator (dict or json path).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from roadwork.config import TierConfig
from roadwork.tiers import register_tier
from roadwork.tiers.base import resolve_device, resolve_dtype
from roadwork.tiers.calibrator import FeatureTier, fit_calibrator, load_calibrator

__all__ = ["DEFAULT_CLASS_MAP", "DetectorTier", "detection_features", "fit_calibrator", "resolve_class_map"]

# Names from Objects365 (D-FINE *-obj365), COCO and common roadwork data sets; matched without case.
# COCO alone has none of cones, barrels, barriers or machines: a COCO detector only sees the
# "stop sign" flaggers hold, which is weak evidence — prefer an Objects365 or roadwork-trained model.
DEFAULT_CLASS_MAP: dict[str, list[str]] = {
    "cone": ["traffic cone", "cone", "construction cone", "traffic_cone"],
    "barrel": ["barrel/bucket", "barrel", "drum barrel", "traffic barrel"],
    "barrier": ["barrier", "barricade", "hurdle", "jersey barrier", "road barrier", "fence barrier"],
    "sign": ["traffic sign", "work sign", "road work sign", "construction sign", "temporary sign", "stop sign"],
    "worker": ["helmet", "worker", "construction worker", "hard hat", "safety vest"],
    "machine": ["machinery vehicle", "crane", "excavator", "bulldozer", "construction vehicle", "machine"],
}
_KNOWN = {"class_map", "min_score", "count_threshold", "calibrator"}
Detections = tuple[np.ndarray, np.ndarray, np.ndarray]  # scores (K,), label ids (K,), boxes xyxy in [0,1] (K,4)


def resolve_class_map(class_map: dict[str, list[Any]], id2label: dict[int, str], tier: str) -> dict[int, int]:
    """label id -> group index. Names match the model's labels without case; ints are ids."""
    by_name: dict[str, list[int]] = {}
    for i, name in id2label.items():
        by_name.setdefault(str(name).strip().lower(), []).append(int(i))
    out: dict[int, int] = {}
    for g, (group, names) in enumerate(class_map.items()):
        for n in names:
            ids = [int(n)] if isinstance(n, int) else by_name.get(str(n).strip().lower(), [])
            for i in ids:
                out.setdefault(i, g)
    if not out:
        raise ValueError(f"tier '{tier}': no class of the class map {sorted(class_map)} matches the detector's "
                         f"labels (e.g. {list(id2label.values())[:8]}); set options.class_map")
    return out


def detection_features(dets: Sequence[Detections], label_group: dict[int, int], n_groups: int,
                       count_threshold: float) -> np.ndarray:
    """(N, 2*G + 1): per group [max score], per group [log1p(count)], then roadwork box area fraction."""
    x = np.zeros((len(dets), 2 * n_groups + 1))
    for r, (scores, labels, boxes) in enumerate(dets):
        area = 0.0
        for s, lab, box in zip(scores, labels, boxes):
            g = label_group.get(int(lab))
            if g is None:
                continue
            x[r, g] = max(x[r, g], float(s))
            if s >= count_threshold:
                x[r, n_groups + g] += 1
                b = np.clip(box, 0.0, 1.0)
                area += max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
        x[r, n_groups:2 * n_groups] = np.log1p(x[r, n_groups:2 * n_groups])
        x[r, -1] = min(area, 1.0)
    return x


class _DetectionTier(FeatureTier):
    def _setup(self, cfg: TierConfig, id2label: dict[int, str]) -> None:
        opts = dict(cfg.options)
        unknown = set(opts) - _KNOWN
        if unknown:
            raise ValueError(f"tier '{cfg.name}': unknown detector option(s) {sorted(unknown)} (known: {sorted(_KNOWN)})")
        self.name = cfg.name
        self.batch_size = cfg.batch_size
        self.class_map = {str(k): list(v) for k, v in (opts.get("class_map") or DEFAULT_CLASS_MAP).items()}
        self.groups = list(self.class_map)
        self.label_group = resolve_class_map(self.class_map, id2label, cfg.name)
        self.min_score = float(opts.get("min_score", 0.05))
        self.count_threshold = float(opts.get("count_threshold", 0.3))
        self.feature_names = [f"{g}_max" for g in self.groups] + [f"{g}_count" for g in self.groups] + ["area"]
        self.calibrator = load_calibrator(opts.get("calibrator"), cfg.model, cfg.name)

    @abstractmethod
    def detect(self, images: Sequence[Image.Image]) -> list[Detections]: ...

    def features(self, images: Sequence[Image.Image]) -> np.ndarray:
        dets: list[Detections] = []
        for s in range(0, len(images), self.batch_size):
            dets += self.detect([im.convert("RGB") for im in images[s:s + self.batch_size]])
        return detection_features(dets, self.label_group, len(self.groups), self.count_threshold)

    def uncalibrated(self, x: np.ndarray) -> np.ndarray:
        return x[:, :len(self.groups)].max(axis=1)


class DetectorTier(_DetectionTier):
    kind = "detector"

    def __init__(self, cfg: TierConfig):
        from transformers import AutoImageProcessor, AutoModelForObjectDetection

        self.device = resolve_device(cfg.device)
        self.dtype = resolve_dtype(cfg.dtype, self.device)
        self.model = AutoModelForObjectDetection.from_pretrained(cfg.model, dtype=self.dtype).to(self.device).eval()
        self.processor = AutoImageProcessor.from_pretrained(cfg.model)
        self.cost = cfg.cost if cfg.cost is not None else 10.0
        self._setup(cfg, self.model.config.id2label)

    @torch.inference_mode()
    def detect(self, images: Sequence[Image.Image]) -> list[Detections]:
        enc = self.processor(images=list(images), return_tensors="pt")
        enc = {k: (v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device)) for k, v in enc.items()}
        out = self.model(**enc)
        out.logits = out.logits.float()
        out.pred_boxes = out.pred_boxes.float()
        # target_sizes=None keeps boxes relative to the image (0..1), which is what the area feature wants
        res = self.processor.post_process_object_detection(out, threshold=self.min_score, target_sizes=None)
        return [(r["scores"].cpu().numpy(), r["labels"].cpu().numpy(), r["boxes"].cpu().numpy()) for r in res]


@register_tier("detector")
def _build(cfg: TierConfig) -> DetectorTier:
    return DetectorTier(cfg)
