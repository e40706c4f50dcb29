"""Whole-scene weather and camera effects: rain, fog, glare, motion blur, sensor noise.

Applied to the finished composite (float32 HxWx3, 0..1) in place or returned, so the background
and the pasted objects get the same weather. Fog follows depth: the ground's depth per row, and
each pasted object's own depth where it stands (`depth` buffer from compositing), so a far cone is
as faded as the road around it; its density is capped so that the farthest pasted object keeps
at least a third of its contrast (a positive must stay visible).
"""

from __future__ import annotations

import cv2
import numpy as np

from roadwork.synth.ground import Ground

SKY_DEPTH = 400.0  # metres assumed above the horizon


def ground_depth(g: Ground, shape: tuple[int, int]) -> np.ndarray:
    """Depth in metres of each pixel if everything were flat ground (sky: SKY_DEPTH), float32 HxW."""
    H, W = shape
    rows = np.arange(H, dtype=np.float32) + 0.5
    below = rows - g.horizon
    z = np.where(below > 0.5, g.focal * g.cam_h / np.maximum(below, 0.5), SKY_DEPTH).astype(np.float32)
    return np.broadcast_to(np.minimum(z, SKY_DEPTH)[:, None], (H, W)).copy()


def fog(canvas: np.ndarray, depth: np.ndarray, rng: np.random.Generator, z_keep: float) -> np.ndarray:
    """Exponential fog: transmission exp(-beta z); at `z_keep` metres it keeps 35-75 % of contrast."""
    beta = -np.log(rng.uniform(0.35, 0.75)) / max(z_keep, 20.0)
    t = np.exp(-beta * depth)[..., None]
    colour = np.full(3, rng.uniform(0.6, 0.85), np.float32) * np.array([0.97, 0.99, 1.03], np.float32)
    level = float(np.clip(canvas.mean() * 1.6, 0.05, 1.0))  # fog is as bright as the scene's light
    return canvas * t + colour * level * (1 - t)


def rain(canvas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Overcast and wet: duller, a little darker and softer, with slanted streaks of falling rain."""
    H, W = canvas.shape[:2]
    grey = canvas.mean(axis=2, keepdims=True)
    out = (grey + (canvas - grey) * rng.uniform(0.6, 0.85)) * rng.uniform(0.75, 0.95)
    out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 0.8))
    streaks = np.zeros((H, W), np.float32)
    n = int(W * H / rng.uniform(120, 400))
    length = rng.uniform(0.03, 0.08) * H
    angle = rng.uniform(-0.35, 0.35)
    xs, ys = rng.uniform(0, W, n), rng.uniform(-length, H, n)
    dx, dy = np.sin(angle) * length, np.cos(angle) * length
    for x, y, a in zip(xs.astype(int), ys.astype(int), rng.uniform(0.3, 1.0, n)):
        cv2.line(streaks, (int(x), int(y)), (int(x + dx), int(y + dy)), float(a), 1)
    streaks = cv2.GaussianBlur(streaks, (0, 0), 0.7) * rng.uniform(0.08, 0.2)
    return out * (1 - streaks[..., None]) + streaks[..., None] * 0.9


def glare(canvas: np.ndarray, g: Ground, rng: np.random.Generator, night: bool) -> np.ndarray:
    """A bright source near the horizon (low sun; at night an oncoming car's lights): a radial glow,
    veiling light that lowers contrast everywhere, a horizontal lens streak and faint ghosts."""
    H, W = canvas.shape[:2]
    cx = rng.uniform(0.15, 0.85) * W
    cy = g.horizon - rng.uniform(0.0, 0.15 if not night else 0.02) * H
    colour = np.array([1.0, 0.95, 0.8] if not night else [1.0, 0.97, 0.9], np.float32)
    yy, xx = np.ogrid[:H, :W]
    r2 = ((xx - cx) ** 2 + (yy - cy) ** 2).astype(np.float32) / (W * W)
    sigma = rng.uniform(0.03, 0.09) ** 2
    glow = np.exp(-r2 / (2 * sigma)) * rng.uniform(0.4, 1.0) + np.exp(-r2 / (2 * sigma * 10)) * rng.uniform(0.1, 0.3)
    streak = np.exp(-((yy - cy) ** 2) / (2 * (0.006 * H + 0.5) ** 2)) * np.exp(-np.abs(xx - cx) / (0.3 * W))
    layer = (glow + streak * rng.uniform(0.2, 0.6)).astype(np.float32)[..., None] * colour
    veil = rng.uniform(0.05, 0.2)
    out = canvas * (1 - veil) + veil * colour + layer
    ghosts = np.zeros_like(canvas)
    for k in rng.uniform(0.4, 1.6, int(rng.integers(0, 3))):  # ghosts mirrored through the image centre
        gx, gy = W / 2 + (W / 2 - cx) * k, H / 2 + (H / 2 - cy) * k
        cv2.circle(ghosts, (int(gx), int(gy)), int(rng.uniform(0.02, 0.06) * W), (colour * 0.06).tolist(), -1,
                   cv2.LINE_AA)
    return out + ghosts


def motion_blur(canvas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The camera moved during the exposure: a line kernel, mostly horizontal (turning, shaking)."""
    W = canvas.shape[1]
    n = int(np.clip(round(rng.uniform(0.008, 0.03) * W), 2, 31))
    k = np.zeros((n, n), np.float32)
    angle = rng.normal(0, 0.35) if rng.random() < 0.8 else rng.uniform(0, np.pi)
    c = (n - 1) / 2
    cv2.line(k, (int(round(c - np.cos(angle) * c)), int(round(c - np.sin(angle) * c))),
             (int(round(c + np.cos(angle) * c)), int(round(c + np.sin(angle) * c))), 1.0, 1)
    return cv2.filter2D(canvas, -1, k / k.sum(), borderType=cv2.BORDER_REFLECT)


def sensor_noise(canvas: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Luma and chroma noise (night exposures are noisy)."""
    H, W = canvas.shape[:2]
    return canvas + rng.normal(0, sigma, (H, W, 1)).astype(np.float32) + rng.normal(0, sigma / 2, (H, W, 3)).astype(
        np.float32)
