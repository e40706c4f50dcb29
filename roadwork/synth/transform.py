"""On-the-fly synthesis as a DataLoader transform (`CopyPaste`)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from roadwork.synth.bank import ObjectBank
from roadwork.synth.compose import compose_sample
from roadwork.synth.config import SynthConfig
from roadwork.synth.sample import SynthSample
from roadwork.synth.seeding import worker_rng


class CopyPaste:
    """DataLoader transform: with probability `p` a label-0 image becomes a synthetic positive.

    `(image, label) -> (image, label)`; `sample(image, label)` gives the `SynthSample` with its
    roadwork mask instead. With probability `p_neg` (of the images not made positive) a label-0
    image gets hard negatives and stays 0. Positives pass unchanged. `config` says how each image
    is made (`SynthConfig`). Picklable; each DataLoader worker draws from its own stream (`seed`
    mixed with the worker's seed).
    """

    def __init__(self, bank: ObjectBank, p: float = 0.3, seed: int | None = None, p_neg: float = 0.0,
                 max_objects: int = 8, config: SynthConfig | None = None):
        self.bank, self.p, self.seed, self.p_neg = bank, p, seed, p_neg
        self.config = config or SynthConfig(max_objects=max_objects)
        self._rng: np.random.Generator | None = None
        self._pid = 0

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_rng": None}

    def __call__(self, image: Image.Image, label: int = 0, rng: np.random.Generator | None = None
                 ) -> tuple[Image.Image, int]:
        s = self.sample(image, label, rng)
        return (image, s.label) if s.meta.get("passed_through") else (s.pil(), s.label)

    def sample(self, image: Image.Image | np.ndarray, label: int = 0, rng: np.random.Generator | None = None
               ) -> SynthSample:
        """The training sample for one record. A real image passes through with `mask` all zeros
        for label 0 (nothing there is roadwork) and None for label 1 (no pixel truth)."""
        if rng is None:
            self._rng, self._pid = worker_rng(self.seed, self._rng, self._pid)
            rng = self._rng
        arr = np.asarray(image.convert("RGB")) if isinstance(image, Image.Image) else np.asarray(image)
        if int(label) != 0:
            return SynthSample(arr, None, int(label), {"passed_through": True})
        u = rng.random()
        if u < self.p:
            return compose_sample(arr, self.bank, rng, False, self.config)
        if u < self.p + (1 - self.p) * self.p_neg:
            return compose_sample(arr, self.bank, rng, True, self.config)
        return SynthSample(arr, np.zeros(arr.shape[:2], np.uint8), 0, {"passed_through": True})
