"""Tiers without a model, for the engine's routing and deadline tests: an image's probability is its
top-left pixel's red value / 255, and each image takes `delay_s` of wall time."""

from __future__ import annotations

import time

import numpy as np
from PIL import Image

from roadwork.tiers.base import Tier


class FakeTier(Tier):
    kind = "fake"

    def __init__(self, name: str, cost: float = 1.0, delay_s: float = 0.0, calibrated: bool = True):
        self.configure(name, batch_size=32, cost=cost)
        self.delay_s = delay_s
        self._calibrated = calibrated
        self.seen: list[int] = []  # red values of every image it ran on

    @classmethod
    def build(cls, cfg, options):  # pragma: no cover - built directly, never from a config
        raise NotImplementedError

    def predict_batch(self, images):
        time.sleep(self.delay_s * len(images))
        red = [im.getpixel((0, 0))[0] for im in images]
        self.seen += red
        return np.array(red, dtype=np.float64) / 255.0

    @property
    def calibrated(self) -> bool:
        return self._calibrated


def image_with_prob(p: float) -> Image.Image:
    return Image.new("RGB", (8, 8), (int(round(p * 255)), 0, 0))
