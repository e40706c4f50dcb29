"""Image-classifier tier: any Hugging Face image-classification checkpoint (ViT, DINOv2, ConvNeXt,
Swin, ResNet, timm backbones through transformers' TimmWrapper), from a hub id or a local folder.

Calibration (temperature and threshold) is folded into the classifier head when a model is saved,
so P(roadwork) here equals the "Roadwork" score of the subnet base miner's pipeline on the same folder.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image

from roadwork.config import TierConfig
from roadwork.tiers import register_tier
from roadwork.tiers.base import Tier, clean_probs, resolve_device, resolve_dtype

LABELS = {0: "None", 1: "Roadwork"}


def roadwork_index(id2label: dict) -> int:
    """Index of the roadwork class: the label named 'roadwork' (any case), else 1."""
    for i, name in id2label.items():
        if str(name).strip().lower() == "roadwork":
            return int(i)
    return 1


class ClassifierTier(Tier):
    kind = "classifier"

    def __init__(self, model: str, name: str = "classifier", device: str = "auto", dtype: str = "auto",
                 batch_size: int = 32, cost: float | None = None):
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        self.name = name
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.batch_size = batch_size
        self.model = AutoModelForImageClassification.from_pretrained(model, dtype=self.dtype)
        self.model.to(self.device).eval()
        if self.device.type == "cuda":
            self.model.to(memory_format=torch.channels_last)
        self.processor = AutoImageProcessor.from_pretrained(model)
        self.index = roadwork_index(self.model.config.id2label)
        self.cost = cost if cost is not None else 1.0
        self.model_path = model

    @torch.inference_mode()
    def predict(self, images: Sequence[Image.Image]) -> np.ndarray:
        out: list[np.ndarray] = []
        for s in range(0, len(images), self.batch_size):
            chunk = [im.convert("RGB") for im in images[s:s + self.batch_size]]
            pixels = self.processor(images=chunk, return_tensors="pt")["pixel_values"]
            pixels = pixels.to(self.device, self.dtype, non_blocking=True)
            logits = self.model(pixel_values=pixels).logits.float()
            out.append(torch.softmax(logits, dim=-1)[:, self.index].cpu().numpy())
        return clean_probs(np.concatenate(out) if out else np.zeros(0))


@register_tier("classifier")
def _build(cfg: TierConfig) -> ClassifierTier:
    return ClassifierTier(cfg.model, name=cfg.name, device=cfg.device, dtype=cfg.dtype,
                          batch_size=cfg.batch_size, cost=cfg.cost)
