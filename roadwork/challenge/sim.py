"""Challenges as the SN72 validator makes them: a level 0-3 augmentation, then JPEG q75 on the wire.

Mirrors `apply_augmentation_by_level` + `prepare_synapse` (natix release 2.0.4), with every random draw
taken from one explicit `np.random.Generator` instead of the validator's mix of numpy's, torch's and
Python's global generators. Distributions are the validator's; the streams are ours.

Left out on purpose: the crop nudge toward a `mask_center` (only for cached images whose metadata carries
one, i.e. in-painted synthetics; real Hub images have none), and the validator's fallback of sending the
raw, un-resized image when augmentation raises.
"""

from __future__ import annotations

import base64
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from roadwork.challenge import ops
from roadwork.decode import decode_bytes

LEVELS = (0, 1, 2, 3)
LEVEL_PROBS = (0.25, 0.25, 0.25, 0.25)
MAX_ANGLE = 20.0          # RandomRotation(20): uniform in [-20, 20] degrees
CROP_SCALE = (0.2, 1.0)   # RandomResizedCrop(224, scale=(0.2, 1.0), ratio=(1.0, 1.0))
# level -> (distortion codes applied in this order, highest strength drawn uniformly from 0..max)
LEVEL_DISTORTIONS: dict[int, tuple[tuple[str, ...], int]] = {
    0: ((), 0), 1: ((), 0), 2: (ops.CODES[:3], 1), 3: (ops.CODES, 2),
}


@dataclass
class Challenge:
    """One challenge. `image` is what the miner decodes from the wire (after JPEG q75); `sent` the pixels
    the validator encoded. `distortions` maps every code to its strength (0 = off, always all five keys);
    `angle` (degrees) and `crop` (top, left, height, width) are None at level 0."""

    image: Image.Image
    jpeg: bytes
    level: int
    distortions: dict[str, int]
    angle: float | None = None
    crop: tuple[int, int, int, int] | None = None
    sent: Image.Image | None = field(default=None, repr=False)

    @property
    def wire(self) -> str:
        """The synapse's `image` field: base64 of the JPEG bytes."""
        return base64.b64encode(self.jpeg).decode("ascii")


def to_wire(img: Image.Image) -> str:
    """base64 of `img` saved as a PIL-default JPEG (quality 75), the text the validator sends."""
    return base64.b64encode(ops.jpeg_bytes(img)).decode("ascii")


def draw_level(rng: np.random.Generator) -> int:
    # The validator walks the cumulative probabilities with `rand <= cum` on np.random.random().
    u, cum = rng.random(), 0.0
    for level, p in zip(LEVELS, LEVEL_PROBS):
        cum += p
        if u <= cum:
            return level
    return LEVELS[-1]


def draw_crop(rng: np.random.Generator, height: int, width: int) -> tuple[int, int, int, int]:
    """RandomResizedCrop.get_params with ratio (1, 1): (top, left, height, width).

    A square of area scale * H * W must fit, so on a 16:9 frame only scales up to 9/16 can succeed;
    after 10 failed tries torchvision falls back to the centred square of the shorter side. That skews the
    real distribution toward big crops and exact centre crops, and we keep the skew.
    """
    area = height * width
    for _ in range(10):
        # torch also draws an aspect ratio exp(U(log 1, log 1)) == 1.0; nothing to draw here.
        side = int(round(math.sqrt(area * rng.uniform(*CROP_SCALE))))
        if 0 < side <= width and 0 < side <= height:
            top = int(rng.integers(0, height - side + 1))
            left = int(rng.integers(0, width - side + 1))
            return top, left, side, side
    side = min(height, width)  # fallback: ratio clamped to 1 -> centred square
    return (height - side) // 2, (width - side) // 2, side, side


def draw_strengths(rng: np.random.Generator, level: int) -> dict[str, int]:
    codes, top = LEVEL_DISTORTIONS[level]
    drawn = {c: int(rng.integers(0, top + 1)) for c in codes}  # random.randint(0, top): inclusive
    return {c: drawn.get(c, 0) for c in ops.CODES}


def augment(img: Image.Image, level: int, rng: np.random.Generator,
            noise: ops.Noise | None = None) -> tuple[np.ndarray, float | None, tuple | None, dict[str, int]]:
    """The pixels the validator JPEG-encodes for `level`: (uint8 RGB 224x224x3, angle, crop, strengths)."""
    if level not in LEVELS:
        raise ValueError(f"augmentation level must be one of {LEVELS}, got {level!r}")
    if level == 0:
        return np.asarray(ops.level0(img)), None, None, draw_strengths(rng, 0)
    rgb = np.asarray(img.convert("RGB"))
    height, width = rgb.shape[:2]
    angle = float(rng.uniform(-MAX_ANGLE, MAX_ANGLE))
    crop = draw_crop(rng, height, width)  # on the rotated image, which keeps the input's size
    # RandomHorizontalFlip/RandomVerticalFlip come next in the validator, but never fire: their __init__
    # sets `self.params = {}`, so forward() never takes its random branch and reads do_flip=False.
    u8 = ops.truncate_u8(ops.rotate_resized_crop(rgb, angle, crop))
    strengths = draw_strengths(rng, level)
    if any(strengths.values()):
        if noise is None:
            noise = rng.standard_normal
        bgr = u8[:, :, ::-1]  # the validator flips the tensor to BGR for the DeeperForensics code
        for code in ops.CODES:
            if strengths[code]:
                bgr = ops.distort(bgr, code, strengths[code], noise)
        u8 = np.ascontiguousarray(bgr[:, :, ::-1])
    return u8, angle, crop, strengths


def make_challenge(img: Image.Image, rng: np.random.Generator, level: int | None = None,
                   noise: ops.Noise | None = None) -> Challenge:
    """Turn `img` into a challenge. All randomness comes from `rng` (level when None, angle, crop,
    strengths, and the GNC noise unless `noise` — shape -> standard normal samples — is given)."""
    if level is None:
        level = draw_level(rng)
    u8, angle, crop, strengths = augment(img, level, rng, noise)
    sent = Image.fromarray(u8, "RGB")
    jpeg = ops.jpeg_bytes(sent)
    return Challenge(image=decode_bytes(jpeg, source="challenge JPEG"), jpeg=jpeg, level=level,
                     distortions=strengths, angle=angle, crop=crop, sent=sent)


class ChallengeTransform:
    """PIL -> PIL training transform: a random validator challenge, as the miner would decode it.

    Picklable for DataLoader workers. Each worker builds its own generator on first use from
    (seed, the worker's torch seed), so workers draw independent streams, and a new epoch (new worker
    seeds) draws new challenges; with a fixed `seed` and a seeded torch the whole run is reproducible.
    `seed=None` takes fresh OS entropy. `levels` restricts the levels, drawn uniformly.
    """

    def __init__(self, seed: int | None = None, levels: Sequence[int] = LEVELS):
        self.levels = tuple(int(v) for v in levels)
        if not self.levels or any(v not in LEVELS for v in self.levels):
            raise ValueError(f"levels must be a non-empty subset of {LEVELS}, got {tuple(levels)!r}")
        self.seed = seed
        self._rng: np.random.Generator | None = None
        self._owner: tuple | None = None

    def _generator(self) -> np.random.Generator:
        from torch.utils.data import get_worker_info

        info = get_worker_info()
        owner = (os.getpid(), None if info is None else info.seed)
        if self._rng is None or owner != self._owner:
            if self.seed is None:
                entropy = None
            else:
                entropy = self.seed if info is None else [self.seed, info.seed]
            self._rng = np.random.default_rng(np.random.SeedSequence(entropy))
            self._owner = owner
        return self._rng

    def __call__(self, img: Image.Image) -> Image.Image:
        rng = self._generator()
        level = self.levels[int(rng.integers(len(self.levels)))]
        return make_challenge(img, rng, level).image

    def __getstate__(self) -> dict:
        return {"seed": self.seed, "levels": self.levels, "_rng": None, "_owner": None}

    def __repr__(self) -> str:
        return f"ChallengeTransform(seed={self.seed!r}, levels={self.levels!r})"
