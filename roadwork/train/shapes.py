"""Procedurally drawn roadwork objects for copy-paste synthesis (hard negatives: `distractors`).

Every `draw(kind, rng)` returns a fresh straight-RGBA uint8 array (about 100-130 px on its long side),
tightly cropped, with random colours within realistic ranges, shading (cylinders get a Lambert
profile with a highlight, boards a gradient), wear, and for flat things a perspective skew. Drawing
happens at 2x and is area-downsampled with premultiplied alpha, which anti-aliases the edges without
dark fringes.
"""

from __future__ import annotations

import cv2
import numpy as np

SS = 2  # supersampling factor
SIZE = 120  # target size of the long side before cropping

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

WORK_WORDS = (("ROAD", "WORK"), ("MEN AT", "WORK"), ("ROAD", "WORK", "AHEAD"), ("WORK", "ZONE"), ("DETOUR",),
              ("LANE", "CLOSED"), ("ROAD", "CLOSED"), ("",))


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


def draw(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A new RGBA uint8 drawing of `kind` (see POSITIVE_WEIGHTS / NEGATIVE_WEIGHTS)."""
    from roadwork.train import distractors  # it builds on this module's canvas

    try:
        fn = DRAWERS.get(kind) or distractors.DRAWERS[kind]
    except KeyError:
        known = sorted(DRAWERS) + sorted(distractors.DRAWERS)
        raise ValueError(f"unknown object kind {kind!r}; known: {', '.join(known)}") from None
    return fn(rng)


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


def cone_drawn(rng):
    cv = Canvas(SIZE, 80)
    base_c = dark(rng) if rng.random() < 0.7 else orange(rng) * 0.8
    body = orange(rng) if rng.random() < 0.8 else red(rng)
    h_base = rng.uniform(0.05, 0.09) * SIZE
    cv.poly([(6, SIZE - 2), (74, SIZE - 2), (68, SIZE - 2 - h_base), (12, SIZE - 2 - h_base)], base_c)
    wt, wb = rng.uniform(3, 6), rng.uniform(22, 28)
    s0 = rng.uniform(0.25, 0.35)
    stripes = [(0, body), (s0, white(rng)), (s0 + rng.uniform(0.12, 0.18), body)]
    if rng.random() < 0.5:
        s1 = rng.uniform(0.55, 0.62)
        stripes += [(s1, white(rng)), (s1 + rng.uniform(0.08, 0.12), body)]
    banded_cylinder(cv, rng, 40, 4, SIZE - 1 - h_base, wt, wb, stripes, curve=0.03)
    return finish(cv, rng)


def barrel(rng):
    w = rng.uniform(0.55, 0.7) * SIZE
    cv = Canvas(SIZE, int(w * 1.2) + 4)
    cx, r = cv.w / SS / 2, w / 2
    cv.ellipse((cx, SIZE - 6), (r * 1.12, 5), dark(rng))  # rubber base ring
    cv.poly([(cx - r * 1.12, SIZE - 12), (cx + r * 1.12, SIZE - 12), (cx + r * 1.12, SIZE - 6), (cx - r * 1.12, SIZE - 6)], dark(rng))
    o, wh = (orange(rng), white(rng))
    nb = rng.choice([4, 5])
    bands = [(i / nb, o if i % 2 == 0 else wh) for i in range(nb)]
    banded_cylinder(cv, rng, cx, 8, SIZE - 10, r * 0.94, r, bands, curve=0.04)
    cv.ellipse((cx, 9), (r * 0.94, 5), o * 0.75)  # top cap
    return finish(cv, rng)


def delineator(rng):
    cv = Canvas(SIZE, 50)
    cx, r = 25, rng.uniform(5, 8)
    cv.poly([(cx - 18, SIZE - 2), (cx + 18, SIZE - 2), (cx + 14, SIZE - 9), (cx - 14, SIZE - 9)], dark(rng))
    o = orange(rng)
    b0 = rng.uniform(0.1, 0.18)
    bands = [(0, o), (b0, white(rng)), (b0 + 0.1, o), (b0 + 0.22, white(rng)), (b0 + 0.32, o)]
    banded_cylinder(cv, rng, cx, 12, SIZE - 8, r * 0.85, r, bands)
    cv.ellipse((cx, 9), (r * 0.9, r * 0.9), o * 0.9)
    return finish(cv, rng)


def _striped_board(cv: Canvas, rng, x0, y0, x1, y1, c0, c1, period, direction, diagonal=True):
    y, x = cv.grid()
    inside = (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
    phase = (x + direction * (y if diagonal else 0)) / period
    col = np.where(((np.floor(phase) % 2) == 0)[..., None], c0, c1).astype(np.float32)
    cv.paint(inside, col, board_shade(cv, rng))


def barricade(rng):
    w = rng.uniform(1.5, 2.2) * SIZE * 0.75
    cv = Canvas(int(SIZE * 0.75), int(w))
    H = SIZE * 0.75
    leg = white(rng) if rng.random() < 0.5 else np.full(3, rng.uniform(0.45, 0.65))
    n_boards = rng.choice([1, 2, 3], p=[0.2, 0.3, 0.5])
    bh = rng.uniform(0.13, 0.18) * H
    o, wh = orange(rng) if rng.random() < 0.85 else red(rng), white(rng)
    a_frame = n_boards < 3 and rng.random() < 0.5
    for lx in (w * 0.15, w * 0.85):
        if a_frame:
            cv.line((lx - 8, H - 1), (lx, H * 0.15), 3, leg)
            cv.line((lx + 8, H - 1), (lx, H * 0.15), 3, leg)
        else:
            cv.line((lx, H - 1), (lx, H * 0.05), rng.uniform(3, 5), leg)
            cv.line((lx - 10, H - 2), (lx + 10, H - 2), 3, leg)
    for i in range(n_boards):
        top = H * 0.08 + i * bh * 1.7
        _striped_board(cv, rng, 2, top, w - 2, top + bh, o, wh, bh * rng.uniform(0.9, 1.4), 1 if i % 2 else -1)
    if rng.random() < 0.3:  # "ROAD CLOSED" plate on top
        pw = w * 0.5
        cv.poly([(w / 2 - pw / 2, 1), (w / 2 + pw / 2, 1), (w / 2 + pw / 2, H * 0.08), (w / 2 - pw / 2, H * 0.08)], white(rng))
    return finish(cv, rng, skew=0.45)


def _worker_symbol(cv: Canvas, c, s, colour):
    x, y = c
    cv.ellipse((x - 0.05 * s, y - 0.32 * s), (0.07 * s, 0.07 * s), colour)
    cv.line((x - 0.05 * s, y - 0.22 * s), (x + 0.05 * s, y + 0.05 * s), 0.08 * s, colour)
    cv.line((x + 0.05 * s, y + 0.05 * s), (x - 0.1 * s, y + 0.3 * s), 0.06 * s, colour)
    cv.line((x + 0.05 * s, y + 0.05 * s), (x + 0.15 * s, y + 0.3 * s), 0.06 * s, colour)
    cv.line((x - 0.03 * s, y - 0.12 * s), (x + 0.2 * s, y + 0.02 * s), 0.05 * s, colour)
    cv.line((x + 0.3 * s, y - 0.2 * s), (x + 0.15 * s, y + 0.25 * s), 0.03 * s, colour)
    cv.ellipse((x + 0.28 * s, y + 0.32 * s), (0.14 * s, 0.07 * s), colour, start=180, end=360)


def sign(rng):
    cv = Canvas(SIZE, 100)
    cx, s = 50, rng.uniform(36, 46)
    cy = s + 3
    pole = np.full(3, rng.uniform(0.2, 0.6))
    if rng.random() < 0.5:  # A-frame stand
        cv.line((cx - 0.6 * s, SIZE - 1), (cx, cy), 3, pole)
        cv.line((cx + 0.6 * s, SIZE - 1), (cx, cy), 3, pole)
    else:
        cv.line((cx, SIZE - 1), (cx, cy), 3, pole)
        cv.line((cx - 0.4 * s, SIZE - 2), (cx + 0.4 * s, SIZE - 2), 3, pole)
    style = rng.random()
    if style < 0.7:  # US/Asia orange diamond
        face = orange(rng) * rng.uniform(0.95, 1.0)
        cv.poly([(cx, cy - s), (cx + s, cy), (cx, cy + s), (cx - s, cy)], dark(rng))
        cv.poly([(cx, cy - s * 0.9), (cx + s * 0.9, cy), (cx, cy + s * 0.9), (cx - s * 0.9, cy)], face)
        words = WORK_WORDS[rng.integers(len(WORK_WORDS))]
        if words == ("",) or rng.random() < 0.3:
            _worker_symbol(cv, (cx, cy), s, dark(rng))
        else:
            th = s * 0.55 / max(2, len(words))
            width = max(cv.text_width(w_, th) for w_ in words)
            th *= min(1.0, s * 1.0 / max(width, 1))
            for i, w_ in enumerate(words):
                cv.text(w_, (cx, cy + (i - (len(words) - 1) / 2) * th * 1.5), th, dark(rng))
    else:  # European red-bordered triangle with the worker
        cv.poly([(cx, cy - s), (cx + s, cy + s * 0.75), (cx - s, cy + s * 0.75)], red(rng))
        cv.poly([(cx, cy - s * 0.62), (cx + s * 0.68, cy + s * 0.58), (cx - s * 0.68, cy + s * 0.58)],
                white(rng) if rng.random() < 0.6 else np.array([0.95, 0.8, 0.1]))
        _worker_symbol(cv, (cx, cy + s * 0.12), s * 0.75, dark(rng))
    if rng.random() < 0.3:  # orange flags on top
        for d in (-1, 1):
            cv.poly([(cx + d * 2, cy - s), (cx + d * 14, cy - s - 12), (cx + d * 6, cy - s - 16)], orange(rng))
    return finish(cv, rng, skew=0.35)


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


def jersey(rng):
    c0 = orange(rng) if rng.random() < 0.6 else red(rng)
    colours = [c0 if i % 2 == 0 else white(rng) for i in range(rng.integers(1, 4))]
    return jersey_segments(rng, colours)


def fence(rng):
    w = rng.uniform(1.8, 2.8) * 60
    cv = Canvas(70, int(w))
    H = 68
    post = np.full(3, rng.uniform(0.15, 0.5))
    n_posts = max(2, int(w // 55) + 1)
    if rng.random() < 0.6:  # orange plastic mesh
        y, x = cv.grid()
        p = rng.uniform(5, 8)
        u, v = (x + y) / p, (x - y) / p
        t = rng.uniform(0.25, 0.4)
        sag = 3 * np.sin(np.pi * (x % (w / (n_posts - 1))) / (w / (n_posts - 1)))
        inside = (y > 4 + sag) & (y < H * rng.uniform(0.75, 0.95)) & (x > 1) & (x < w - 1)
        strands = ((u % 1) < t) | ((v % 1) < t) | (np.abs(y - 4 - sag) < 1.5)
        cv.paint(inside & strands, orange(rng), board_shade(cv, rng))
    else:  # panel barrier: blocks of red/orange and white
        c0 = red(rng) if rng.random() < 0.5 else orange(rng)
        for top in (H * 0.15, H * 0.5):
            _striped_board(cv, rng, 1, top, w - 1, top + H * 0.15, c0, white(rng), rng.uniform(12, 20), 0, False)
        for fx in np.linspace(4, w - 4, n_posts):
            cv.poly([(fx - 9, H), (fx + 9, H), (fx + 9, H - 4), (fx - 9, H - 4)], dark(rng))
    for px in np.linspace(2, w - 2, n_posts):
        cv.line((px, 1), (px, H), 1.8, post)
    return finish(cv, rng, skew=0.6)


DRAWERS = {"cone_drawn": cone_drawn, "barrel": barrel, "delineator": delineator, "barricade": barricade,
           "sign": sign, "jersey": jersey, "fence": fence}
