"""Zero-shot tier: CLIP or SigLIP image-text similarity against roadwork / no-roadwork prompts.

Options (`ZeroShotOptions` in roadwork.tiers.kinds, with their defaults):
  positive, negative   prompt lists
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
from roadwork.metrics import sigmoid
from roadwork.tiers.base import resolve_device, resolve_dtype
from roadwork.tiers.calibrator import FeatureTier, load_calibrator
from roadwork.tiers.kinds import ZeroShotOptions

def _pooled(out: Any) -> torch.Tensor:
    # transformers 5 returns a model output whose pooler_output is the projected embedding;
    # older releases returned the tensor itself.
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class ZeroShotTier(FeatureTier):
    kind = "zeroshot"
    feature_names = ["logit"]

    default_cost = 5.0

    def __init__(self, cfg: TierConfig, options: ZeroShotOptions):
        from transformers import AutoModel, AutoProcessor

        self.configure(cfg.name, cfg.batch_size, cfg.cost)
        self.device = resolve_device(cfg.device)
        self.dtype = resolve_dtype(cfg.dtype, self.device)
        self.positive = list(options.positive)
        self.negative = list(options.negative)
        self.model = AutoModel.from_pretrained(cfg.model, dtype=self.dtype).to(self.device).eval()
        self.processor = AutoProcessor.from_pretrained(cfg.model)
        family = options.family
        if family == "auto":
            family = "siglip" if "siglip" in self.model.config.model_type else "clip"
        self.family = family
        self.text_max_length = options.text_max_length
        self.calibrator = load_calibrator(options.calibrator, cfg.model, cfg.name)
        self._text = self._encode_text(self.positive + self.negative)

    @classmethod
    def build(cls, cfg: TierConfig, options: ZeroShotOptions) -> "ZeroShotTier":
        return cls(cfg, options)

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

    def prompt_logits(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(N, P+Q) image-prompt logits exactly as the model's own forward computes them."""
        parts = [self._prompt_logits(c) for c in self.chunks(images)]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.positive) + len(self.negative)))

    @torch.inference_mode()
    def _prompt_logits(self, images: list[Image.Image]) -> np.ndarray:
        scale = self.model.logit_scale.float().exp()
        bias = self.model.logit_bias.float() if self.family == "siglip" else 0.0
        enc = self.processor(images=images, return_tensors="pt")
        enc = {k: (v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device)) for k, v in enc.items()}
        emb = _pooled(self.model.get_image_features(**enc)).float()
        emb = emb / emb.norm(dim=-1, keepdim=True)
        return (emb @ self._text.T * scale + bias).cpu().numpy().astype(np.float64)

    def features_batch(self, images: list[Image.Image]) -> np.ndarray:
        z = self._prompt_logits(images)
        pos, neg = z[:, :len(self.positive)], z[:, len(self.positive):]
        if self.family == "siglip":
            score = pos.max(axis=1) - neg.max(axis=1)
        else:
            score = np.logaddexp.reduce(pos, axis=1) - np.logaddexp.reduce(neg, axis=1)
        return score[:, None]

    def uncalibrated(self, x: np.ndarray) -> np.ndarray:
        return sigmoid(x[:, 0])
