"""Challenges as the SN72 validator makes them, for each validator version (`protocols.py`):
2026-01 and 2026-04 draw a level 0-3 augmentation (crop or letterbox geometry) and send 224x224 JPEG q75;
2026-05 sends the image at its native size as JPEG q75.

Mirrors `apply_augmentation_by_level` + `prepare_synapse` of each version, with every random draw
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
from roadwork.challenge.protocols import DEFAULT_PROTOCOL, Protocol, get_protocol
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
    the validator encoded. `level` is the augmentation level (None for 2026-05, which has none);
    `distortions` maps every code to its strength (0 = off, always all five keys); `angle` (degrees) is
    None at level 0, `crop` (top, left, height, width) exists only for 2026-01 levels 1-3."""

    image: Image.Image
    jpeg: bytes
    level: int | None
    distortions: dict[str, int]
    angle: float | None = None
    crop: tuple[int, int, int, int] | None = None
    sent: Image.Image | None = field(default=None, repr=False)
    protocol: str = DEFAULT_PROTOCOL

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


def augment(img: Image.Image, level: int, rng: np.random.Generator, noise: ops.Noise | None = None, *,
            protocol: str | Protocol) -> tuple[np.ndarray, float | None, tuple | None, dict[str, int]]:
    """The pixels the validator JPEG-encodes for `level`: (uint8 RGB 224x224x3, angle, crop, strengths).

    Draws in the validator's order: angle, crop (2026-01 only), strengths, then the GNC noise."""
    proto = get_protocol(protocol)
    if not proto.augmented:
        raise ValueError(f"protocol {proto.name} has no augmentation levels (the image goes out at native size)")
    if level not in LEVELS:
        raise ValueError(f"augmentation level must be one of {LEVELS}, got {level!r}")
    if level == 0:
        return apply_level(img, proto, 0), None, None, draw_strengths(rng, 0)
    angle = float(rng.uniform(-MAX_ANGLE, MAX_ANGLE))
    crop = None
    if proto.geometry == "crop":
        crop = draw_crop(rng, img.height, img.width)  # on the rotated image, which keeps the input's size
    strengths = draw_strengths(rng, level)
    return apply_level(img, proto, level, angle, crop, strengths, noise or rng.standard_normal), angle, crop, strengths


def apply_level(img: Image.Image, protocol: str | Protocol, level: int, angle: float = 0.0,
                crop: tuple[int, int, int, int] | None = None, strengths: dict[str, int] | None = None,
                noise: ops.Noise | None = None) -> np.ndarray:
    """One augmentation level with its random draws given: uint8 RGB 224x224x3, what goes into the JPEG.

    2026-01: L0 centre crop + resize; L1-3 rotate the full frame, then `crop` resized to 224.
    2026-04: every level letterboxes first; L1-3 rotate the 224x224 letterboxed tensor, padding included.
    Levels 2-3 then apply the active distortions in the validator's order (CS, CC, JPEG, GNC, GB)."""
    proto = get_protocol(protocol)
    if proto.geometry == "letterbox":
        u8 = np.asarray(ops.letterbox(img))
        if level > 0:
            u8 = ops.rotate_nearest(u8, angle)
    elif level == 0:
        u8 = np.asarray(ops.level0(img))
    else:
        if crop is None:
            raise ValueError("2026-01 levels 1-3 need a crop (top, left, height, width)")
        u8 = ops.truncate_u8(ops.rotate_resized_crop(np.asarray(img.convert("RGB")), angle, crop))
    # RandomHorizontalFlip/RandomVerticalFlip come next in the validator, but never fire: their __init__
    # sets `self.params = {}`, so forward() never takes its random branch and reads do_flip=False.
    if level >= 2 and strengths and any(strengths.values()):
        bgr = u8[:, :, ::-1]  # the validator flips the tensor to BGR for the DeeperForensics code
        for code in ops.CODES:
            if strengths.get(code):
                bgr = ops.distort(bgr, code, strengths[code], noise)
        u8 = np.ascontiguousarray(bgr[:, :, ::-1])
    return u8


def cache_fill(img: Image.Image) -> Image.Image:
    """A dataset JPEG as the validator's cache holds it: re-saved with PIL defaults (q75), decoded."""
    # the validator's side: it decodes its cache at full size (only the miner's decode may be reduced)
    return decode_bytes(ops.jpeg_bytes(img.convert("RGB")), source="cache JPEG", draft_side=None)


def make_challenge(img: Image.Image, rng: np.random.Generator, level: int | None = None,
                   noise: ops.Noise | None = None, protocol: str | Protocol | None = None,
                   from_jpeg: bool = False) -> Challenge:
    """Turn `img` into a challenge of `protocol` (default: `protocols.DEFAULT_PROTOCOL`). All randomness
    comes from `rng` (level when None, angle, crop, strengths, and the GNC noise unless `noise` -- shape ->
    standard normal samples -- is given). `from_jpeg`: the image came from a JPEG file, which 2026-05's
    cache re-encodes once more before the wire encode."""
    proto = get_protocol(protocol)
    if not proto.augmented:
        if level not in (None, 0):
            raise ValueError(f"protocol {proto.name} has no augmentation levels, got level {level}")
        sent = cache_fill(img) if from_jpeg and proto.reencode_jpeg_sources else img.convert("RGB")
        jpeg = ops.jpeg_bytes(sent)
        return Challenge(image=decode_bytes(jpeg, source="challenge JPEG"), jpeg=jpeg, level=None,
                         distortions=draw_strengths(rng, 0), sent=sent, protocol=proto.name)
    if level is None:
        level = draw_level(rng)
    u8, angle, crop, strengths = augment(img, level, rng, noise, protocol=proto)
    sent = Image.fromarray(u8, "RGB")
    jpeg = ops.jpeg_bytes(sent)
    return Challenge(image=decode_bytes(jpeg, source="challenge JPEG"), jpeg=jpeg, level=level,
                     distortions=strengths, angle=angle, crop=crop, sent=sent, protocol=proto.name)


class ChallengeTransform:
    """PIL -> PIL training transform: a random validator challenge, as the miner would decode it.

    Picklable for DataLoader workers. Each worker builds its own generator on first use from
    (seed, the worker's torch seed), so workers draw independent streams, and a new epoch (new worker
    seeds) draws new challenges; with a fixed `seed` and a seeded torch the whole run is reproducible.
    `seed=None` takes fresh OS entropy. `levels` restricts the levels, drawn uniformly (ignored by
    2026-05, which has none).
    """

    def __init__(self, seed: int | None = None, levels: Sequence[int] = LEVELS, protocol: str | None = None):
        self.levels = tuple(int(v) for v in levels)
        if not self.levels or any(v not in LEVELS for v in self.levels):
            raise ValueError(f"levels must be a non-empty subset of {LEVELS}, got {tuple(levels)!r}")
        self.protocol = get_protocol(protocol).name
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
        if not get_protocol(self.protocol).augmented:
            return make_challenge(img, rng, protocol=self.protocol).image
        level = self.levels[int(rng.integers(len(self.levels)))]
        return make_challenge(img, rng, level, protocol=self.protocol).image

    def __getstate__(self) -> dict:
        return {"seed": self.seed, "levels": self.levels, "protocol": self.protocol, "_rng": None, "_owner": None}

    def __repr__(self) -> str:
        return f"ChallengeTransform(seed={self.seed!r}, levels={self.levels!r}, protocol={self.protocol!r})"
