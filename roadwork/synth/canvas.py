"""The drawing surface of procedural objects: colour palettes, a supersampled RGBA canvas, shading.

Drawing happens at `SS` x and `finish` area-downsamples with premultiplied alpha, which anti-aliases
the edges without dark fringes, adds wear and an optional perspective skew, and crops to the alpha.
Shared by the roadwork drawers (`drawn_roadwork`) and the hard negatives (`drawn_negatives`).
"""

from __future__ import annotations

import cv2
import numpy as np

SS = 2  # supersampling factor
SIZE = 120  # target size of the long side before cropping

# ---- colours ----------------------------------------------------------------------------------------
def orange(rng: np.random.Generator) -> np.ndarray:
    return np.array([rng.uniform(0.86, 1.0), rng.uniform(0.22, 0.5), rng.uniform(0.0, 0.12)])


def red(rng: np.random.Generator) -> np.ndarray:
    return np.array([rng.uniform(0.72, 0.95), rng.uniform(0.04, 0.18), rng.uniform(0.05, 0.18)])


def white(rng: np.random.Generator) -> np.ndarray:
    return np.clip(rng.uniform(0.84, 0.97) + rng.normal(0, 0.015, 3), 0, 1)


def dark(rng: np.random.Generator) -> np.ndarray:
    return np.full(3, rng.uniform(0.05, 0.18)) + rng.uniform(0, 0.03, 3)


def warm(rng: np.random.Generator) -> np.ndarray:
    """The hard negatives' palette: orange, red or yellow."""
    u = rng.random()
    if u < 0.45:
        return orange(rng)
    if u < 0.8:
        return red(rng)
    return np.array([rng.uniform(0.9, 1.0), rng.uniform(0.7, 0.88), rng.uniform(0.0, 0.2)])


# ---- canvas -----------------------------------------------------------------------------------------
class Canvas:
    """Float RGB + alpha at SS x resolution; painters composite opaque shapes over what is there."""

    def __init__(self, h: int, w: int):
        self.h, self.w = h * SS, w * SS
        self.rgb = np.zeros((self.h, self.w, 3), np.float32)
        self.a = np.zeros((self.h, self.w), np.float32)

    def _mask(self, draw) -> np.ndarray:
        m = np.zeros((self.h, self.w), np.uint8)
        draw(m)
        return m.astype(bool)

    def paint(self, mask: np.ndarray, colour: np.ndarray | float, shade: np.ndarray | None = None) -> None:
        col = np.broadcast_to(np.asarray(colour, np.float32), (self.h, self.w, 3)) if np.ndim(colour) <= 1 else colour
        if shade is not None:
            col = col * shade[..., None]
        self.rgb[mask] = col[mask]
        self.a[mask] = 1.0

    def poly(self, pts, colour, shade=None) -> np.ndarray:
        p = [np.round(np.asarray(pts, np.float64) * SS).astype(np.int32)]
        m = self._mask(lambda m: cv2.fillPoly(m, p, 1))
        self.paint(m, colour, shade)
        return m

    def ellipse(self, c, axes, colour, shade=None, angle=0.0, start=0, end=360) -> np.ndarray:
        cc = (round(c[0] * SS), round(c[1] * SS))
        ax = (max(1, round(axes[0] * SS)), max(1, round(axes[1] * SS)))
        m = self._mask(lambda m: cv2.ellipse(m, cc, ax, angle, start, end, 1, -1))
        self.paint(m, colour, shade)
        return m

    def line(self, p0, p1, width, colour) -> np.ndarray:
        q0, q1 = (round(p0[0] * SS), round(p0[1] * SS)), (round(p1[0] * SS), round(p1[1] * SS))
        m = self._mask(lambda m: cv2.line(m, q0, q1, 1, max(1, round(width * SS))))
        self.paint(m, colour)
        return m

    def text(self, s: str, c, height: float, colour, thick: float = 0.16) -> None:
        font = cv2.FONT_HERSHEY_DUPLEX
        scale = height * SS / 22.0
        t = max(1, round(height * SS * thick))
        (tw, th), _ = cv2.getTextSize(s, font, scale, t)
        org = (round(c[0] * SS - tw / 2), round(c[1] * SS + th / 2))
        self.paint(self._mask(lambda m: cv2.putText(m, s, org, font, scale, 1, t, cv2.LINE_8)), colour)

    def text_width(self, s: str, height: float, thick: float = 0.16) -> float:
        scale = height * SS / 22.0
        return cv2.getTextSize(s, cv2.FONT_HERSHEY_DUPLEX, scale, max(1, round(height * SS * thick)))[0][0] / SS

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel centre coordinates in canvas units (not supersampled)."""
        y, x = np.mgrid[0:self.h, 0:self.w].astype(np.float32)
        return (y + 0.5) / SS, (x + 0.5) / SS


def cylinder_shade(u: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Lambert + Phong profile across a cylinder; u in [-1, 1] from left to right edge."""
    lx = rng.uniform(-0.7, 0.7)
    lz = np.sqrt(1 - lx * lx)
    nz = np.sqrt(np.clip(1 - u * u, 0, 1))
    lam = np.clip(lx * u + lz * nz, 0, 1)
    amb = rng.uniform(0.35, 0.55)
    return (amb + (1 - amb) * lam + rng.uniform(0.05, 0.25) * lam ** 25).astype(np.float32)


def board_shade(cv: Canvas, rng: np.random.Generator) -> np.ndarray:
    y, x = cv.grid()
    gx, gy = rng.uniform(-0.25, 0.25, 2)
    return (1 + gx * (x / (cv.w / SS) - 0.5) + gy * (y / (cv.h / SS) - 0.5)).astype(np.float32) * rng.uniform(0.85, 1)


def finish(cv: Canvas, rng: np.random.Generator, skew: float = 0.0) -> np.ndarray:
    """Wear, optional perspective skew, anti-aliased downsample, crop to alpha -> uint8 RGBA."""
    rgb, a = cv.rgb, cv.a
    # low-frequency grime: real paint is never uniform
    g = cv2.resize(rng.uniform(1 - rng.uniform(0, 0.25), 1, (4, 4)).astype(np.float32), (cv.w, cv.h),
                   interpolation=cv2.INTER_CUBIC)
    rgb = rgb * g[..., None]
    if skew > 0:  # a board seen at an angle: one side shorter, shifted
        h, w = a.shape
        d = rng.uniform(0, skew) * h / 2
        side = rng.random() < 0.5
        dst = np.float32([[0, d if side else 0], [w, 0 if side else d], [w, h - (0 if side else d)],
                          [0, h - (d if side else 0)]])
        M = cv2.getPerspectiveTransform(np.float32([[0, 0], [w, 0], [w, h], [0, h]]), dst)
        rgb = cv2.warpPerspective(rgb, M, (w, h), flags=cv2.INTER_LINEAR)
        a = cv2.warpPerspective(a, M, (w, h), flags=cv2.INTER_LINEAR)
    pm = np.dstack([rgb * a[..., None], a])  # premultiplied: transparent pixels add no colour
    small = cv2.resize(pm, (cv.w // SS, cv.h // SS), interpolation=cv2.INTER_AREA)
    alpha = small[..., 3]
    col = small[..., :3] / np.maximum(alpha[..., None], 1e-6)
    rows, cols = np.nonzero(alpha > 0.02)
    if not len(rows):
        raise ValueError("procedural object came out empty")
    out = np.dstack([np.clip(col, 0, 1), np.clip(alpha, 0, 1)])[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    return np.round(out * 255).astype(np.uint8)



# ---- roadwork objects -------------------------------------------------------------------------------
def banded_cylinder(cv: Canvas, rng, cx, y0, y1, r_top, r_bot, bands, curve=0.0):
    """A (possibly tapered) cylinder from y0 to y1 whose colour changes at band edges (fractions)."""
    y, x = cv.grid()
    t = (y - y0) / (y1 - y0)
    r = r_top + (r_bot - r_top) * t
    u = (x - cx) / np.maximum(r, 1e-3)
    inside = (t >= 0) & (t <= 1) & (np.abs(u) <= 1)
    # seen from above the bands curve down in the middle
    v = t + curve * np.sqrt(np.clip(1 - u * u, 0, 1))
    col = np.zeros((cv.h, cv.w, 3), np.float32)
    edges = [0.0] + [e for e, _ in bands[1:]] + [9.0]
    for (_, c), lo, hi in zip(bands, edges[:-1], edges[1:]):
        col[(v >= lo) & (v < hi)] = c
    col[v < 0] = bands[0][1]
    cv.paint(inside, col, cylinder_shade(np.clip(u, -1, 1), rng))



def striped_board(cv: Canvas, rng, x0, y0, x1, y1, c0, c1, period, direction, diagonal=True):
    y, x = cv.grid()
    inside = (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
    phase = (x + direction * (y if diagonal else 0)) / period
    col = np.where(((np.floor(phase) % 2) == 0)[..., None], c0, c1).astype(np.float32)
    cv.paint(inside, col, board_shade(cv, rng))



def jersey_segments(rng, colours):
    n = len(colours)
    seg = rng.uniform(1.6, 2.4) * 50
    cv = Canvas(70, int(seg * n) + 4)
    H = 60
    for i, c in enumerate(colours):
        x0, x1 = 2 + i * seg, 2 + (i + 1) * seg - 1
        cv.poly([(x0, H + 8), (x1, H + 8), (x1, 14), (x0, 14)], c * 0.9)
        cv.poly([(x0 + 4, 14), (x1 - 4, 14), (x1 - 10, 4), (x0 + 10, 4)], c)  # top face, lit
        cv.line((x0, H * 0.6 + 8), (x1, H * 0.6 + 8), 1.5, c * 0.7)  # the foot's kink
        if i:
            cv.line((x0, 14), (x0, H + 8), 1.2, c * 0.5)
    cv.rgb *= board_shade(cv, rng)[..., None]
    return finish(cv, rng, skew=0.5)

