"""Layouts of objects on a scene's ground: rows and clusters of roadwork, hard negatives at the sides.

Every placement stands on the flat ground of `ground.Ground`, so its size follows its depth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from roadwork.synth import kinds
from roadwork.synth.bank import ObjectBank
from roadwork.synth.ground import Ground
from roadwork.synth.kinds import Cutout


@dataclass
class Placement:
    cut: Cutout
    x: float  # column of the object's foot centre
    y: float  # row of the object's bottom edge
    h: float  # height in pixels
    z: float  # depth in metres (paint far to near)


def _place(g: Ground, cut: Cutout, x_m: float, z: float, rng: np.random.Generator) -> Placement:
    (h0, h1), (e0, e1) = kinds.GEOMETRY[cut.kind]
    h_m, elev = rng.uniform(h0, h1), rng.uniform(e0, e1)
    # wide objects (fences, barriers) are drawn by their height too: their rgba carries the aspect
    return Placement(cut, g.col(x_m, z), g.row(z) - g.focal * elev / z, g.focal * h_m / z, z)


def _on_road(g: Ground, x_m: float, z: float, rng: np.random.Generator) -> bool:
    """Is the ground point road-like (so the object does not stand on a car or a wall)? The verge
    is fine now and then: cones and signs stand on grass too."""
    H, W = g.road.shape
    x, y = int(g.col(x_m, z)), int(g.row(z))
    if not (0 <= x < W and 0 <= y < H):
        return rng.random() < 0.5
    r = max(1, H // 60)
    return g.road[max(0, y - r):y + r + 1, max(0, x - 2 * r):x + 2 * r + 1].mean() > 0.3 or rng.random() < 0.15


def _anchor(g: Ground, rng: np.random.Generator, x_of: Callable[[], float], far: float) -> tuple[float, float]:
    """A ground point (x metres, z metres) drawn until it lands on the road (8 tries)."""
    for _ in range(8):
        x, z = x_of(), _depth(g, rng, far)
        if _on_road(g, x, z, rng):
            break
    return x, z


def _depth(g: Ground, rng: np.random.Generator, far: float = 45.0) -> float:
    z0 = g.z_near() * 1.15
    return float(z0 * np.exp(rng.uniform(0, np.log(max(far, z0 * 1.5) / z0))))


def layout_positive(g: Ground, bank: ObjectBank, rng: np.random.Generator, max_objects: int = 8) -> list[Placement]:
    """1-8 roadwork objects: a row along a lane (often a taper), a cluster, or both."""
    for _ in range(5):
        out = _try_positive(g, bank, rng, max_objects)
        if out:
            return out
    # every draw fell outside the frame: one object in front, slightly off-centre
    return [_place(g, bank.positive(rng), rng.uniform(-1.5, 1.5), g.z_near() * 1.5, rng)]


def _try_positive(g: Ground, bank: ObjectBank, rng: np.random.Generator, max_objects: int) -> list[Placement]:
    out: list[Placement] = []
    mode = rng.choice(["row", "cluster", "both"], p=[0.45, 0.35, 0.2])
    if mode in ("row", "both"):
        weights = {k: bank.weights[k] for k in kinds.ROW_KINDS if k != "cone" or bank.cones}
        names = list(weights)
        kind = names[rng.choice(len(names), p=np.array(list(weights.values())) / sum(weights.values()))]
        n = int(rng.integers(3, max_objects + 1))
        x0, z = _anchor(g, rng, lambda: rng.choice([-1, 1]) * rng.uniform(1.0, 4.5), 14.0)
        slope = rng.uniform(-0.25, 0.25) if rng.random() < 0.5 else 0.0  # a taper closing a lane
        dz = rng.uniform(2.5, 8.0)
        for i in range(n):
            out.append(_place(g, bank.positive(rng, kind), x0 + slope * i * dz, z + i * dz, rng))
    if mode in ("cluster", "both"):
        x0, z0 = _anchor(g, rng, lambda: rng.uniform(-5, 5), 20.0)
        for _ in range(int(rng.integers(1, 5))):
            cut = bank.positive(rng)
            out.append(_place(g, cut, x0 + rng.uniform(-1.5, 1.5), z0 + rng.uniform(-1.5, 3.0), rng))
    out = [p for p in out if p.z > g.z_near() and p.h >= 3][:max_objects]
    return _ensure_visible(g, out, rng)


def layout_negative(g: Ground, bank: ObjectBank, rng: np.random.Generator) -> list[Placement]:
    """1-4 hard negatives: vehicles in the lanes, people and street furniture at the sides."""
    for _ in range(5):
        out = []
        for _ in range(int(rng.integers(1, 5))):
            cut = bank.negative(rng)
            lane = cut.kind in ("car", "truck")
            x, z = _anchor(g, rng, (lambda: rng.uniform(-4, 4)) if lane else
                           (lambda: rng.choice([-1, 1]) * rng.uniform(2.5, 8)), 25.0)
            out.append(_place(g, cut, x, z, rng))
        out = _ensure_visible(g, [p for p in out if p.h >= 3], rng)
        if out:
            return out
    return [_place(g, bank.negative(rng), rng.uniform(-1.5, 1.5), g.z_near() * 1.5, rng)]


def _ensure_visible(g: Ground, out: list[Placement], rng: np.random.Generator) -> list[Placement]:
    """A positive nobody can see is a wrong label (and an invisible hard negative is no lesson): drop
    objects far outside the frame and bring the biggest one close enough to be clear."""
    H, W = g.road.shape
    out = [p for p in out if -0.2 * W < p.x < 1.2 * W]
    if not out:
        return out
    big = max(out, key=lambda p: p.h)
    want = H * rng.uniform(0.12, 0.3)
    # bring it nearer (everything scales with 1/z about the vanishing point), but not below the road
    s = min(want / big.h, (g.bottom - g.horizon) / max(1.0, big.y - g.horizon))
    if s > 1:
        big.z /= s
        big.h *= s
        big.y = g.horizon + (big.y - g.horizon) * s
        big.x = float(np.clip(g.vx + (big.x - g.vx) * s, 0.1 * W, 0.9 * W))
    return sorted(out, key=lambda p: -p.z)
