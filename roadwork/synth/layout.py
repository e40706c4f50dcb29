"""Layouts of objects on a scene's ground: rows and clusters of roadwork, hard negatives at the sides.

Every placement stands on the flat ground of `ground.Ground`, so its size follows its depth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from roadwork.synth import kinds
from roadwork.synth.bank import ObjectBank
from roadwork.synth.config import SynthConfig
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


def _anchor(g: Ground, rng: np.random.Generator, x_of: Callable[[], float], far: float,
            z_min: float = 0.0) -> tuple[float, float]:
    """A ground point (x metres, z metres, at least `z_min` ahead) drawn until it lands on the road
    (8 tries)."""
    for _ in range(8):
        x, z = x_of(), _depth(g, rng, far, z_min)
        if _on_road(g, x, z, rng):
            break
    return x, z


def _depth(g: Ground, rng: np.random.Generator, far: float = 45.0, z_min: float = 0.0) -> float:
    """Log-uniform between the nearest visible ground (or `z_min`) and `far` metres."""
    z0 = max(g.z_near() * 1.15, z_min)
    return float(z0 * np.exp(rng.uniform(0, np.log(max(far, z0 * 1.5) / z0))))


def layout_positive(g: Ground, bank: ObjectBank, rng: np.random.Generator, max_objects: int = 8,
                    config: SynthConfig | None = None) -> list[Placement]:
    """1-8 roadwork objects: a row along a lane (often a taper), a cluster, or both. With a config:
    now and then (`far_p`) all of them far away and small, and (`negatives_in_positives`) hard
    negatives beside them."""
    out: list[Placement] = []
    if config is not None and rng.random() < config.far_p:
        for _ in range(5):
            out = _try_positive(g, bank, rng, max_objects, config, far=True)
            if len(out) >= 2:
                break
        else:
            out = []
    if not out:
        for _ in range(5):
            out = _try_positive(g, bank, rng, max_objects, config)
            if out:
                break
        else:  # every draw fell outside the frame: one object in front, slightly off-centre
            out = [_place(g, bank.positive(rng, config=config), rng.uniform(-1.5, 1.5), g.z_near() * 1.5, rng)]
    if config is not None and config.hard_negatives and rng.random() < config.negatives_in_positives:
        out = sorted(out + layout_negative(g, bank, rng, config, n_max=3), key=lambda p: -p.z)
    return out


def _try_positive(g: Ground, bank: ObjectBank, rng: np.random.Generator, max_objects: int,
                  config: SynthConfig | None = None, far: bool = False) -> list[Placement]:
    out: list[Placement] = []
    H, W = g.road.shape
    mode = rng.choice(["row", "cluster", "both"], p=[0.45, 0.35, 0.2])
    # far layouts start 22-70 m ahead: a few pixels tall at 224 px, as distant work zones are
    near_row, near_cluster = (70.0, 70.0) if far else (14.0, 20.0)
    z_min = 22.0 if far else 0.0
    if mode in ("row", "both"):
        table = kinds.NEW_POSITIVE_WEIGHTS if config is not None and config.new_kinds else bank.weights
        use_cones = bool(bank.cones) and (config is None or config.real_cones)
        weights = {k: table[k] for k in kinds.ROW_KINDS if k in table and (k != "cone" or use_cones)}
        names = list(weights)
        kind = names[rng.choice(len(names), p=np.array(list(weights.values())) / sum(weights.values()))]
        n = int(rng.integers(min(3, max_objects), max_objects + 1))
        x0, z = _anchor(g, rng, lambda: rng.choice([-1, 1]) * rng.uniform(1.0, 4.5), near_row, z_min)
        slope = rng.uniform(-0.25, 0.25) if rng.random() < 0.5 else 0.0  # a taper closing a lane
        dz = rng.uniform(2.5, 8.0)
        for i in range(n):
            out.append(_place(g, bank.positive(rng, kind, config), x0 + slope * i * dz, z + i * dz, rng))
    if mode in ("cluster", "both"):
        x0, z0 = _anchor(g, rng, lambda: rng.uniform(-5, 5), near_cluster, z_min)
        for _ in range(int(rng.integers(2 if far else 1, 5))):
            cut = bank.positive(rng, config=config)
            out.append(_place(g, cut, x0 + rng.uniform(-1.5, 1.5), z0 + rng.uniform(-1.5, 3.0), rng))
    min_h = 3.0 if config is None else max(3.0, config.min_height_frac * H)
    out = [p for p in out if p.z > g.z_near() and p.h >= min_h][:max_objects]
    if far:  # keep them small: only drop what lies outside the frame
        return sorted([p for p in out if 0 < p.x < W and g.horizon < p.y <= H], key=lambda p: -p.z)
    return _ensure_visible(g, out, rng)


def layout_negative(g: Ground, bank: ObjectBank, rng: np.random.Generator, config: SynthConfig | None = None,
                    n_max: int = 4) -> list[Placement]:
    """1-4 hard negatives: vehicles in the lanes, people, signs and street furniture at the sides."""
    for _ in range(5):
        out = []
        for _ in range(int(rng.integers(1, n_max + 1))):
            cut = bank.negative(rng, config)
            lane = cut.kind in ("car", "truck")
            x, z = _anchor(g, rng, (lambda: rng.uniform(-4, 4)) if lane else
                           (lambda: rng.choice([-1, 1]) * rng.uniform(2.5, 8)), 25.0)
            out.append(_place(g, cut, x, z, rng))
        out = _ensure_visible(g, [p for p in out if p.h >= 3], rng)
        if out:
            return out
    return [_place(g, bank.negative(rng, config), rng.uniform(-1.5, 1.5), g.z_near() * 1.5, rng)]


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
