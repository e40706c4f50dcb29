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

Options (`DetectorOptions` in roadwork.tiers.kinds, with their defaults): class_map {group: [label
names or ids]}, min_score (detections kept), count_threshold (detections counted), calibrator.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from roadwork.config import TierConfig
from roadwork.tiers.base import resolve_device, resolve_dtype
from roadwork.tiers.calibrator import FeatureTier, fit_calibrator, load_calibrator
from roadwork.tiers.kinds import DEFAULT_CLASS_MAP, DetectorOptions

__all__ = ["DEFAULT_CLASS_MAP", "DetectorTier", "detection_features", "fit_calibrator", "resolve_class_map"]

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
    def _setup(self, cfg: TierConfig, options: DetectorOptions, id2label: dict[int, str]) -> None:
        self.configure(cfg.name, cfg.batch_size, cfg.cost)
        self.class_map = {str(k): list(v) for k, v in options.class_map.items()}
        self.groups = list(self.class_map)
        self.label_group = resolve_class_map(self.class_map, id2label, cfg.name)
        self.min_score = options.min_score
        self.count_threshold = options.count_threshold
        self.feature_names = [f"{g}_max" for g in self.groups] + [f"{g}_count" for g in self.groups] + ["area"]
        self.calibrator = load_calibrator(options.calibrator, cfg.model, cfg.name)

    @abstractmethod
    def detect(self, images: list[Image.Image]) -> list[Detections]: ...

    def features_batch(self, images: list[Image.Image]) -> np.ndarray:
        return detection_features(self.detect(images), self.label_group, len(self.groups), self.count_threshold)

    def uncalibrated(self, x: np.ndarray) -> np.ndarray:
        return x[:, :len(self.groups)].max(axis=1)


class DetectorTier(_DetectionTier):
    kind = "detector"
    default_cost = 10.0

    def __init__(self, cfg: TierConfig, options: DetectorOptions):
        from transformers import AutoImageProcessor, AutoModelForObjectDetection

        self.device = resolve_device(cfg.device)
        self.dtype = resolve_dtype(cfg.dtype, self.device)
        self.model = AutoModelForObjectDetection.from_pretrained(cfg.model, dtype=self.dtype).to(self.device).eval()
        self.processor = AutoImageProcessor.from_pretrained(cfg.model)
        self._setup(cfg, options, self.model.config.id2label)

    @classmethod
    def build(cls, cfg: TierConfig, options: DetectorOptions) -> "DetectorTier":
        return cls(cfg, options)

    @torch.inference_mode()
    def detect(self, images: list[Image.Image]) -> list[Detections]:
        enc = self.processor(images=list(images), return_tensors="pt")
        enc = {k: (v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device)) for k, v in enc.items()}
        out = self.model(**enc)
        out.logits = out.logits.float()
        out.pred_boxes = out.pred_boxes.float()
        # target_sizes=None keeps boxes relative to the image (0..1), which is what the area feature wants
        res = self.processor.post_process_object_detection(out, threshold=self.min_score, target_sizes=None)
        return [(r["scores"].cpu().numpy(), r["labels"].cpu().numpy(), r["boxes"].cpu().numpy()) for r in res]
