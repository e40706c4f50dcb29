"""Where the road is in a street scene: a flat-ground pinhole camera estimated per scene.

The camera is an estimated horizon row, a vanishing point, a camera height and a focal length. An
object of real height `h` metres standing `Z` metres ahead is `h * f / Z` pixels tall and its foot
sits `f * cam_h / Z` pixels below the horizon: size grows linearly with distance below the horizon,
and rows of cones recede along lane lines towards the vanishing point (`layout`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


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

