"""Zero-shot tier: CLIP or SigLIP image-text similarity against roadwork / no-roadwork prompts.

Options (`TierConfig.options`):
  positive, negative   prompt lists (defaults below)
  family               auto | clip | siglip (auto reads the model's config)
  text_max_length      padding length for SigLIP text (it was trained with max_length=64 padding)
  calibrator           Platt {a, b}, a fitted calibrator dict, or a json path; absent = look for
                       roadwork_calibrator.json beside a local model folder

Raw score, before calibration:
  CLIP    softmax over all prompts, P = the mass on roadwork prompts
          (= sigmoid(logsumexp(pos) - logsumexp(neg)))
  SigLIP  every prompt is scored by its own sigmoid; P = sigmoid(best roadwork logit - best none
          logit), i.e. the odds of the best roadwork prompt against the best none prompt (the
          learned bias cancels, which matters: SigLIP's sigmoids alone are tiny for any prompt).
The feature handed to the calibrator is that logit, so a fitted calibrator is Platt scaling.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from roadwork.config import TierConfig
from roadwork.tiers import register_tier
from roadwork.tiers.base import resolve_device, resolve_dtype
from roadwork.metrics import sigmoid
from roadwork.tiers.calibrator import FeatureTier, load_calibrator

DEFAULT_POSITIVE = [
    "a photo of road construction work",
    "a street with traffic cones and road barriers",
    "a road work zone with construction workers and machinery",
    "a road with a construction warning sign",
    "an excavated road under repair",
]
DEFAULT_NEGATIVE = [
    "a photo of a normal street",
    "a clear road with cars driving",
    "an empty highway",
    "a city street with buildings and parked cars",
    "a rural road through fields",
]
_KNOWN = {"positive", "negative", "family", "text_max_length", "calibrator"}


def _pooled(out: Any) -> torch.Tensor:
    # transformers 5 returns a model output whose pooler_output is the projected embedding;
    # older releases returned the tensor itself.
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class ZeroShotTier(FeatureTier):
    kind = "zeroshot"
    feature_names = ["logit"]

    def __init__(self, cfg: TierConfig):
        from transformers import AutoModel, AutoProcessor

        opts = dict(cfg.options)
        unknown = set(opts) - _KNOWN
        if unknown:
            raise ValueError(f"tier '{cfg.name}': unknown zeroshot option(s) {sorted(unknown)} (known: {sorted(_KNOWN)})")
        self.name = cfg.name
        self.cost = cfg.cost if cfg.cost is not None else 5.0
        self.batch_size = cfg.batch_size
        self.device = resolve_device(cfg.device)
        self.dtype = resolve_dtype(cfg.dtype, self.device)
        self.positive = list(opts.get("positive") or DEFAULT_POSITIVE)
        self.negative = list(opts.get("negative") or DEFAULT_NEGATIVE)
        if not self.positive or not self.negative:
            raise ValueError(f"tier '{cfg.name}': zeroshot needs at least one positive and one negative prompt")
        self.model = AutoModel.from_pretrained(cfg.model, dtype=self.dtype).to(self.device).eval()
        self.processor = AutoProcessor.from_pretrained(cfg.model)
        family = opts.get("family", "auto")
        if family == "auto":
            family = "siglip" if "siglip" in self.model.config.model_type else "clip"
        if family not in ("clip", "siglip"):
            raise ValueError(f"tier '{cfg.name}': options.family must be auto, clip or siglip, got {family!r}")
        self.family = family
        self.text_max_length = int(opts.get("text_max_length", 64))
        self.calibrator = load_calibrator(opts.get("calibrator"), cfg.model, cfg.name)
        self._text = self._encode_text(self.positive + self.negative)

    @torch.inference_mode()
    def _encode_text(self, prompts: list[str]) -> torch.Tensor:
        if self.family == "siglip":
            enc = self.processor(text=prompts, padding="max_length", max_length=self.text_max_length,
                                 truncation=True, return_tensors="pt")
        else:
            enc = self.processor(text=prompts, padding=True, truncation=True, return_tensors="pt")
        enc = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "position_ids")}
        emb = _pooled(self.model.get_text_features(**enc)).float()
        return emb / emb.norm(dim=-1, keepdim=True)

    @torch.inference_mode()
    def prompt_logits(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(N, P+Q) image-prompt logits exactly as the model's own forward computes them."""
        scale = self.model.logit_scale.float().exp()
        bias = self.model.logit_bias.float() if self.family == "siglip" else 0.0
        out: list[np.ndarray] = []
        for s in range(0, len(images), self.batch_size):
            chunk = [im.convert("RGB") for im in images[s:s + self.batch_size]]
            enc = self.processor(images=chunk, return_tensors="pt")
            enc = {k: (v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device))
                   for k, v in enc.items()}
            emb = _pooled(self.model.get_image_features(**enc)).float()
            emb = emb / emb.norm(dim=-1, keepdim=True)
            out.append((emb @ self._text.T * scale + bias).cpu().numpy())
        return np.concatenate(out).astype(np.float64) if out else np.zeros((0, len(self.positive) + len(self.negative)))

    def features(self, images: Sequence[Image.Image]) -> np.ndarray:
        z = self.prompt_logits(images)
        pos, neg = z[:, :len(self.positive)], z[:, len(self.positive):]
        if self.family == "siglip":
            score = pos.max(axis=1) - neg.max(axis=1)
        else:
            score = np.logaddexp.reduce(pos, axis=1) - np.logaddexp.reduce(neg, axis=1)
        return score[:, None]

    def uncalibrated(self, x: np.ndarray) -> np.ndarray:
        return sigmoid(x[:, 0])


@register_tier("zeroshot")
def _build(cfg: TierConfig) -> ZeroShotTier:
    return ZeroShotTier(cfg)
