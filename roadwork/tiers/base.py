"""The one interface every tier implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Sequence

import numpy as np
from PIL import Image

if TYPE_CHECKING:  # torch is imported where a tier runs on it: the onnxruntime CPU path never loads it
    import torch


class Tier(ABC):
    """A model family behind one call: images in, P(roadwork) out.

    `predict` returns a float64 array of shape (N,) with values in [0, 1]. Tiers calibrate
    themselves (temperature / fitted calibrator stored with the model) so that the router can
    compare their probabilities. `cost` is the relative cost per image (ms on the reference GPU),
    used by the router's budget.
    """

    name: str = "tier"
    kind: str = "tier"
    cost: float = 1.0
    threshold: float = 0.5  # decision threshold stored with the model

    @abstractmethod
    def predict(self, images: Sequence[Image.Image]) -> np.ndarray: ...

    def warmup(self) -> None:
        self.predict([Image.new("RGB", (224, 224))])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, cost={self.cost})"


def resolve_device(device: str) -> "torch.device":
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: "torch.device") -> "torch.dtype":
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def clean_probs(p: "np.ndarray | torch.Tensor") -> np.ndarray:
    """Finite float64 probabilities in [0, 1]: NaN becomes 0.5, infinities clip."""
    if hasattr(p, "detach"):  # a torch tensor (checked without importing torch)
        p = p.detach().float().cpu().numpy()
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    p = np.nan_to_num(p, nan=0.5, posinf=1.0, neginf=0.0)
    return np.clip(p, 0.0, 1.0)
