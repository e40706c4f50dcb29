"""The object kinds synthesis knows: how often each is pasted, how big it is in metres, and `draw`.

"cone" means the real cut-outs of the object bank (`bank.ObjectBank`); every other kind is drawn
procedurally, roadwork by `drawn_roadwork`, hard negatives by `drawn_negatives`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from roadwork.synth import drawn_negatives, drawn_roadwork

# kind -> relative frequency among pastes; "cone" = the real cut-outs of the object bank
POSITIVE_WEIGHTS = {"cone": 0.40, "cone_drawn": 0.10, "barrel": 0.13, "delineator": 0.10, "barricade": 0.09,
                    "sign": 0.08, "jersey": 0.05, "fence": 0.05}
NEGATIVE_WEIGHTS = {"car": 0.12, "truck": 0.06, "person": 0.16, "awning": 0.09, "parasol": 0.09,
                    "shop_sign": 0.12, "pumpkin": 0.10, "hydrant": 0.10, "bin": 0.10, "jersey_concrete": 0.06}
NEGATIVE_KINDS = frozenset(NEGATIVE_WEIGHTS)
# kind -> (real height range in metres, elevation of its bottom above the ground in metres)
GEOMETRY: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "cone": ((0.45, 0.9), (0, 0)), "cone_drawn": ((0.45, 0.9), (0, 0)), "barrel": ((0.9, 1.1), (0, 0)),
    "delineator": ((0.9, 1.2), (0, 0)), "barricade": ((1.1, 1.6), (0, 0)), "sign": ((1.3, 2.0), (0, 0)),
    "jersey": ((0.8, 1.0), (0, 0)), "fence": ((1.0, 1.8), (0, 0)),
    "car": ((1.4, 1.6), (0, 0)), "truck": ((2.8, 3.5), (0, 0)), "person": ((1.55, 1.85), (0, 0)),
    "awning": ((0.6, 1.2), (2.2, 3.0)), "parasol": ((2.0, 2.6), (0, 0)), "shop_sign": ((0.6, 1.4), (1.2, 3.5)),
    "pumpkin": ((0.25, 0.5), (0, 0)), "hydrant": ((0.6, 0.9), (0, 0)), "bin": ((1.0, 1.2), (0, 0)),
    "jersey_concrete": ((0.8, 1.0), (0, 0)),
}
# kinds that come in rows along a lane
ROW_KINDS = ("cone", "cone_drawn", "barrel", "delineator", "jersey")

DRAWERS = {**drawn_roadwork.DRAWERS, **drawn_negatives.DRAWERS}


def draw(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A new RGBA uint8 drawing of `kind` (see POSITIVE_WEIGHTS / NEGATIVE_WEIGHTS)."""
    try:
        fn = DRAWERS[kind]
    except KeyError:
        raise ValueError(f"unknown object kind {kind!r}; known: {', '.join(sorted(DRAWERS))}") from None
    return fn(rng)


@dataclass
class Cutout:
    """An object to paste: straight (not premultiplied) RGBA, tightly cropped to its alpha."""

    rgba: np.ndarray
    kind: str
    origin: str = "procedural"

    @property
    def negative(self) -> bool:
        return self.kind in NEGATIVE_KINDS
