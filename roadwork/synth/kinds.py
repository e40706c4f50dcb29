"""The object kinds synthesis knows: how often each is pasted, how big it is in metres, and `draw`.

"cone" means the real cut-outs of the object bank (`bank.ObjectBank`); every other kind is drawn
procedurally, roadwork by `drawn_roadwork`, hard negatives by `drawn_negatives`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from roadwork.synth import drawn_negatives, drawn_roadwork

# kind -> relative frequency among pastes; "cone" = the real cut-outs of the object bank
POSITIVE_WEIGHTS = {"cone": 0.40, "cone_drawn": 0.10, "barrel": 0.13, "delineator": 0.10, "barricade": 0.09,
                    "sign": 0.08, "jersey": 0.05, "fence": 0.05}
NEGATIVE_WEIGHTS = {"car": 0.12, "truck": 0.06, "person": 0.16, "awning": 0.09, "parasol": 0.09,
                    "shop_sign": 0.12, "pumpkin": 0.10, "hydrant": 0.10, "bin": 0.10, "jersey_concrete": 0.06}
# issue 10: more kinds of roadwork (IDD's hoardings and dug-up roads, workers, machines) and red signs
NEW_POSITIVE_WEIGHTS = {**POSITIVE_WEIGHTS, "cone": 0.30, "worker": 0.07, "machine": 0.05, "drum": 0.05,
                        "water_barrier": 0.05, "hoarding": 0.07, "arrow_board": 0.03, "excavation": 0.05}
NEW_NEGATIVE_WEIGHTS = {**NEGATIVE_WEIGHTS, "car": 0.18, "truck": 0.08, "stop_sign": 0.07, "round_sign": 0.08}
NEGATIVE_KINDS = frozenset(NEW_NEGATIVE_WEIGHTS)
# kind -> (real height range in metres, elevation of its bottom above the ground in metres)
GEOMETRY: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "cone": ((0.45, 0.9), (0, 0)), "cone_drawn": ((0.45, 0.9), (0, 0)), "barrel": ((0.9, 1.1), (0, 0)),
    "delineator": ((0.9, 1.2), (0, 0)), "barricade": ((1.1, 1.6), (0, 0)), "sign": ((1.3, 2.0), (0, 0)),
    "jersey": ((0.8, 1.0), (0, 0)), "fence": ((1.0, 1.8), (0, 0)),
    "car": ((1.4, 1.6), (0, 0)), "truck": ((2.8, 3.5), (0, 0)), "person": ((1.55, 1.85), (0, 0)),
    "awning": ((0.6, 1.2), (2.2, 3.0)), "parasol": ((2.0, 2.6), (0, 0)), "shop_sign": ((0.6, 1.4), (1.2, 3.5)),
    "pumpkin": ((0.25, 0.5), (0, 0)), "hydrant": ((0.6, 0.9), (0, 0)), "bin": ((1.0, 1.2), (0, 0)),
    "jersey_concrete": ((0.8, 1.0), (0, 0)),
    "worker": ((1.6, 1.9), (0, 0)), "machine": ((2.4, 3.4), (0, 0)), "drum": ((0.95, 1.15), (0, 0)),
    "water_barrier": ((0.8, 1.1), (0, 0)), "hoarding": ((1.8, 2.6), (0, 0)), "arrow_board": ((2.2, 3.0), (0, 0)),
    "excavation": ((0.4, 0.9), (0, 0)), "stop_sign": ((2.0, 2.6), (0, 0)), "round_sign": ((2.0, 2.8), (0, 0)),
}
# kinds with writing on them: a mirrored variant would read backwards
NO_MIRROR = frozenset({"sign", "shop_sign", "stop_sign", "round_sign", "hoarding"})
# kinds that come in rows along a lane
ROW_KINDS = ("cone", "cone_drawn", "barrel", "delineator", "jersey", "drum", "water_barrier")

DRAWERS = {**drawn_roadwork.DRAWERS, **drawn_negatives.DRAWERS}


def draw(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A new RGBA uint8 drawing of `kind` (see POSITIVE_WEIGHTS / NEGATIVE_WEIGHTS)."""
    try:
        fn = DRAWERS[kind]
    except KeyError:
        raise ValueError(f"unknown object kind {kind!r}; known: {', '.join(sorted(DRAWERS))}") from None
    return fn(rng)


@lru_cache(maxsize=4096)
def _variant(kind: str, index: int) -> np.ndarray:
    out = draw(kind, np.random.default_rng([zlib.crc32(kind.encode()), index]))
    out.setflags(write=False)  # shared by every paste of this variant
    return out


def draw_variant(kind: str, rng: np.random.Generator, variants: int) -> np.ndarray:
    """One of `variants` fixed drawings of `kind` (drawn once per process, the same in every process,
    so results stay reproducible); `variants=0` draws afresh. Drawing is most of synthesis' time."""
    if variants <= 0:
        return draw(kind, rng)
    return _variant(kind, int(rng.integers(variants)))


@dataclass
class Cutout:
    """An object to paste: straight (not premultiplied) RGBA, tightly cropped to its alpha."""

    rgba: np.ndarray
    kind: str
    origin: str = "procedural"

    @property
    def negative(self) -> bool:
        return self.kind in NEGATIVE_KINDS
