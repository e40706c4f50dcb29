"""The one interface every tier implements, and what all tiers share: batching, building from a
config (typed options, one cost precedence), calibration status and warm-up."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Sequence

import numpy as np
from PIL import Image

if TYPE_CHECKING:  # torch is imported where a tier runs on it: the onnxruntime CPU path never loads it
    import torch

    from roadwork.config import TierConfig
    from roadwork.fast.encoded import ImageInput


class Tier(ABC):
    """A model family behind one call: images in, P(roadwork) out.

    `predict` returns a float64 array of shape (N,) with values in [0, 1]; it cuts the images into
    chunks of `batch_size` and hands each to `predict_batch`, which is all a kind implements besides
    `build`. Tiers calibrate themselves (temperature / fitted calibrator stored with the model) so
    that the router can compare their probabilities and decide at p > 0.5. `cost` is ms per image
    on the reference machine, used by the router's deadline and calibrate-cascade's budget.
    """

    kind: ClassVar[str] = "tier"
    # True for tiers whose predict_batch decodes `Encoded` inputs itself (the classifier on a GPU:
    # nvjpeg); every other tier gets PIL images, decoded on the CPU by `chunks`
    takes_encoded: bool = False
    default_cost: ClassVar[float] = 1.0  # ms/image when neither the config nor the model folder says
    name: str = "tier"
    cost: float = 1.0
    batch_size: int = 32

    # ---- building -------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: "TierConfig") -> "Tier":
        """The tier `cfg` describes. Its options are validated by the kind's model (one line naming a
        bad or mistyped field) and handed to `build` typed."""
        from pydantic import ValidationError

        from roadwork.config import ConfigError, TierConfig, explain_error
        from roadwork.tiers.kinds import kind_of

        raw = cfg.model_dump()
        try:  # again: a config made with model_copy(update=...) was never validated
            checked = TierConfig.model_validate(raw)
        except ValidationError as e:
            raise ConfigError(explain_error(e, f"tier '{cfg.name}'", raw, TierConfig)) from None
        return cls.build(checked, kind_of(checked.kind).options.model_validate(checked.options))

    @classmethod
    @abstractmethod
    def build(cls, cfg: "TierConfig", options: "Any") -> "Tier":
        """Construct the tier from a validated config and its kind's options model."""

    def configure(self, name: str, batch_size: int, cost: float | None, measured: float | None = None) -> None:
        """Settings every tier has. Cost precedence (the one `TierConfig.cost` documents): the configured
        cost, else the cost measured into the model's folder, else the kind's default."""
        self.name = name
        self.batch_size = int(batch_size)
        self.cost = float(cost if cost is not None else measured if measured is not None else self.default_cost)

    # ---- answering ------------------------------------------------------------------------------
    def chunks(self, images: Sequence["ImageInput"]) -> Iterator[list[Any]]:
        """RGB copies of `images` in chunks of at most `batch_size` (the only batching loop of the tiers);
        encoded inputs are decoded here unless the tier `takes_encoded`."""
        from roadwork.fast.encoded import Encoded, as_image

        for s in range(0, len(images), self.batch_size):
            part = images[s:s + self.batch_size]
            yield [im if self.takes_encoded and isinstance(im, Encoded) else as_image(im) for im in part]

    def predict(self, images: Sequence["ImageInput"]) -> np.ndarray:
        parts = [np.asarray(self.predict_batch(c), dtype=np.float64).reshape(-1) for c in self.chunks(images)]
        p = np.concatenate(parts) if parts else np.zeros(0)
        broken = [i for i, im in enumerate(images) if getattr(im, "broken", False)]
        if broken and len(p) == len(images):  # corrupt data behind a valid header: no answer of its own
            p[broken] = np.nan
        return clean_probs(p)

    @abstractmethod
    def predict_batch(self, images: list[Image.Image]) -> np.ndarray:
        """P(roadwork) for at most `batch_size` RGB images."""

    @property
    def calibrated(self) -> bool:
        """Whether `predict` is a calibrated probability (a feature tier without a fitted calibrator
        answers a ranking); the engine's fallback prefers calibrated tiers."""
        return True

    @property
    def warmup_size(self) -> tuple[int, int]:
        """(width, height) of the blank image `warmup` runs: the model's input size where it has one."""
        return (224, 224)

    def warmup(self) -> None:
        """One blank image through the whole path: kernels, caches and lazy imports happen here, not
        on the first request."""
        self.predict([Image.new("RGB", self.warmup_size)])

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
