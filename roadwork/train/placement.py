"""Where pasted objects go: a flat-ground pinhole camera per scene, and layouts of objects on it.

The camera is an estimated horizon row, a vanishing point, a camera height and a focal length. An
object of real height `h` metres standing `Z` metres ahead is `h * f / Z` pixels tall and its foot
sits `f * cam_h / Z` pixels below the horizon: size grows linearly with distance below the horizon,
and rows of cones recede along lane lines towards the vanishing point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from roadwork.train import shapes
from roadwork.train.objects import Cutout, ObjectBank


# ---- scene geometry ---------------------------------------------------------------------------------
@dataclass
class Ground:
    """Flat-ground camera model of one scene, in pixels of the image it was estimated on."""

    horizon: float  # row of the horizon
    bottom: float  # lowest row that is still road (above bonnet/dashboard)
    vx: float  # column of the vanishing point
    focal: float  # focal length in pixels
    cam_h: float  # camera height in metres
    road: np.ndarray  # bool (H, W): grey, low-saturation pixels (asphalt)

    def row(self, z: float) -> float:
        """Image row of the ground `z` metres ahead."""
        return self.horizon + self.focal * self.cam_h / z

    def col(self, x: float, z: float) -> float:
        """Image column of lateral offset `x` metres (right positive) at depth `z`."""
        return self.vx + self.focal * x / z

    def z_near(self) -> float:
        return self.focal * self.cam_h / max(1.0, self.bottom - self.horizon)


def dashboard_row(rgb: np.ndarray) -> int:
    """Top row of a bonnet or dashboard across the bottom of the frame (the height if none).

    Its top edge is a row much darker than the road above (shadow, black trim), and the frame
    below it is darker than the road on the whole; a tree shadow across a sunlit road is followed
    by bright road again. A bonnet that mirrors the road is not caught (its rows count as road)."""
    H, W = rgb.shape[:2]
    v = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 2][:, int(W * 0.25):int(W * 0.75)]
    med = np.median(v, axis=1).astype(np.float32)
    ref = float(np.median(med[int(H * 0.45):int(H * 0.6)]))
    for r in range(int(H * 0.55), int(H * 0.95)):
        if med[r] < 0.45 * ref and med[r:].mean() < 0.8 * ref:
            return r
    return H


def road_mask(rgb: np.ndarray, sample_rows: tuple[int, int] | None = None) -> np.ndarray:
    """Asphalt-like pixels (bool, same size): grey, and close in colour to the road just ahead.

    The road sample is taken from `sample_rows` of the central third (default 70-80 % down, below
    most horizons and above most bonnets); pale overcast sky is grey too, but rarely the same grey.
    """
    H, W = rgb.shape[:2]
    r0, r1 = sample_rows or (int(H * 0.7), int(H * 0.8))
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    grey = (hsv[..., 1] < 70) & (hsv[..., 2] > 30) & (hsv[..., 2] < 225)
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    ref = np.median(lab[r0:max(r1, r0 + 1), int(W * 0.35):int(W * 0.65)].reshape(-1, 3), axis=0)
    # lightness varies along the road (shade, wet patches) more than hue does: weigh it half
    dist = np.sqrt((((lab - ref) * np.array([0.5, 1.0, 1.0], np.float32)) ** 2).sum(-1))
    return grey & (dist < 22)


def estimate_ground(rgb: np.ndarray, rng: np.random.Generator) -> Ground:
    """Horizon, road bottom and vanishing point from the road-like pixels of the central band.

    From the road sample's rows, scanning up, the road runs out where the central band stops
    looking like it; that row (clipped to the usual 30-65 % of the height of a forward-facing
    camera) is the horizon. Scanning down, rows that stop being road are bonnet or dashboard.
    """
    H, W = rgb.shape[:2]
    dash = dashboard_row(rgb)
    start = min(int(H * 0.75), dash - int(H * 0.08))
    road = road_mask(rgb, (start - int(H * 0.05), start + int(H * 0.05)))
    road[dash:] = False
    band = road[:, int(W * 0.38):int(W * 0.62)].mean(axis=1)
    band = np.convolve(band, np.ones(5) / 5, mode="same")
    lo, hi = int(H * 0.30), int(H * 0.65)
    bottom = start
    while bottom < dash - 1 and band[bottom + 1] >= 0.3:
        bottom += 1
    y = start
    while y > lo and band[y - 1] >= 0.3:
        y -= 1
    horizon = float(np.clip(y, lo, hi)) if band[start] >= 0.3 else H * 0.47
    horizon += rng.uniform(-0.02, 0.02) * H
    rows = road[int(horizon + 0.05 * H):int(horizon + 0.2 * H)]
    cols = np.nonzero(rows)[1]
    vx = 0.5 * W if len(cols) < 20 else 0.5 * (0.5 * W + float(np.median(cols)))
    vx += rng.uniform(-0.05, 0.05) * W
    focal = W / (2 * np.tan(np.radians(rng.uniform(55, 90)) / 2))
    bottom = min(float(dash - 1), max(bottom, horizon + 0.2 * H))
    return Ground(horizon, bottom, vx, focal, rng.uniform(1.2, 1.7), road)


# ---- layout -----------------------------------------------------------------------------------------
@dataclass
class Placement:
    cut: Cutout
    x: float  # column of the object's foot centre
    y: float  # row of the object's bottom edge
    h: float  # height in pixels
    z: float  # depth in metres (paint far to near)


def _place(g: Ground, cut: Cutout, x_m: float, z: float, rng: np.random.Generator) -> Placement:
    (h0, h1), (e0, e1) = shapes.GEOMETRY[cut.kind]
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
        weights = {k: bank.weights[k] for k in shapes.ROW_KINDS if k != "cone" or bank.cones}
        kinds = list(weights)
        kind = kinds[rng.choice(len(kinds), p=np.array(list(weights.values())) / sum(weights.values()))]
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
