"""On-the-fly synthesis as a DataLoader transform (`CopyPaste`)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from roadwork.synth.bank import ObjectBank
from roadwork.synth.compose import compose
from roadwork.synth.seeding import worker_rng


class CopyPaste:
    """DataLoader transform: with probability `p` a label-0 image becomes a synthetic positive.

    `(image, label) -> (image, label)`. With probability `p_neg` (of the images not made positive) a
    label-0 image gets hard negatives and stays 0. Positives pass unchanged. Picklable; each
    DataLoader worker draws from its own stream (`seed` mixed with the worker's seed).
    """

    def __init__(self, bank: ObjectBank, p: float = 0.3, seed: int | None = None, p_neg: float = 0.0,
                 max_objects: int = 8):
        self.bank, self.p, self.seed, self.p_neg, self.max_objects = bank, p, seed, p_neg, max_objects
        self._rng: np.random.Generator | None = None
        self._pid = 0

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_rng": None}

    def __call__(self, image: Image.Image, label: int = 0, rng: np.random.Generator | None = None
                 ) -> tuple[Image.Image, int]:
        if rng is None:
            self._rng, self._pid = worker_rng(self.seed, self._rng, self._pid)
            rng = self._rng
        if int(label) != 0:
            return image, int(label)
        u = rng.random()
        if u < self.p:
            arr, _ = compose(np.asarray(image.convert("RGB")), self.bank, rng, False, self.max_objects)
            return Image.fromarray(arr), 1
        if u < self.p + (1 - self.p) * self.p_neg:
            arr, _ = compose(np.asarray(image.convert("RGB")), self.bank, rng, True)
            return Image.fromarray(arr), 0
        return image, 0
