"""Procedurally drawn roadwork objects: cones, barrels, delineators, barricades, signs, barriers, fences,
and (issue 10) workers in hi-vis, machines, drums, water barriers, hoardings, arrow boards, dug-up ground.

Every drawer returns a fresh straight-RGBA uint8 array (about 100-130 px on its long side), tightly
cropped, with random colours within realistic ranges, shading (cylinders get a Lambert profile with
a highlight, boards a gradient), wear, and for flat things a perspective skew (`canvas.finish`).
"""

from __future__ import annotations

import numpy as np

from roadwork.synth.canvas import (SIZE, SS, Canvas, banded_cylinder, board_shade, dark, finish, jersey_segments,
                                   orange, red, striped_board, white)

WORK_WORDS = (("ROAD", "WORK"), ("MEN AT", "WORK"), ("ROAD", "WORK", "AHEAD"), ("WORK", "ZONE"), ("DETOUR",),
              ("LANE", "CLOSED"), ("ROAD", "CLOSED"), ("",))



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
        striped_board(cv, rng, 2, top, w - 2, top + bh, o, wh, bh * rng.uniform(0.9, 1.4), 1 if i % 2 else -1)
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
            striped_board(cv, rng, 1, top, w - 1, top + H * 0.15, c0, white(rng), rng.uniform(12, 20), 0, False)
        for fx in np.linspace(4, w - 4, n_posts):
            cv.poly([(fx - 9, H), (fx + 9, H), (fx + 9, H - 4), (fx - 9, H - 4)], dark(rng))
    for px in np.linspace(2, w - 2, n_posts):
        cv.line((px, 1), (px, H), 1.8, post)
    return finish(cv, rng, skew=0.6)


# ---- issue 10: more kinds of roadwork ---------------------------------------------------------------
def hivis(rng) -> np.ndarray:
    """Fluorescent yellow-green or orange, as work vests are."""
    if rng.random() < 0.55:
        return np.array([rng.uniform(0.75, 0.9), rng.uniform(0.92, 1.0), rng.uniform(0.05, 0.25)])
    return np.array([rng.uniform(0.95, 1.0), rng.uniform(0.4, 0.55), rng.uniform(0.02, 0.12)])


def worker(rng):
    """A road worker: hard hat, hi-vis vest with silver reflective bands, often a tool."""
    cv = Canvas(SIZE, 60)
    cx = 30.0
    skin = np.array([rng.uniform(0.35, 0.85), 0, 0])
    skin[1], skin[2] = skin[0] * rng.uniform(0.65, 0.78), skin[0] * rng.uniform(0.45, 0.6)
    vest, silver = hivis(rng), np.full(3, rng.uniform(0.75, 0.9))
    legs = (hivis(rng) * 0.9 if rng.random() < 0.25 else
            np.array([0.15, 0.2, 0.38]) * rng.uniform(0.7, 1.3) if rng.random() < 0.6 else dark(rng))
    stride = rng.uniform(0, 7)
    cv.line((cx, 68), (cx - stride, SIZE - 3), 7, legs)
    cv.line((cx, 68), (cx + stride, SIZE - 3), 7, legs)
    shirt = dark(rng) + rng.uniform(0, 0.3, 3)
    cv.line((cx - 10, 28), (cx - 14, 62), 5, shirt)
    cv.line((cx + 10, 28), (cx + 15, 60), 5, shirt)
    cv.poly([(cx - 11, 24), (cx + 11, 24), (cx + 13, 72), (cx - 13, 72)], vest, board_shade(cv, rng))
    for y in (46, 60):  # reflective bands round the body
        cv.poly([(cx - 12, y), (cx + 12, y), (cx + 12.5, y + 3.5), (cx - 12.5, y + 3.5)], silver)
    cv.line((cx - 6, 24), (cx - 6, 46), 2.5, silver)
    cv.line((cx + 6, 24), (cx + 6, 46), 2.5, silver)
    cv.ellipse((cx, 15), (7, 8.5), skin)
    hat = np.array([0.97, 0.97, 0.95]) if rng.random() < 0.4 else (np.array([1.0, 0.85, 0.1]) if rng.random() < 0.6
                                                                   else orange(rng))
    cv.ellipse((cx, 10), (8.5, 6.5), hat, start=180, end=360)
    cv.line((cx - 10, 10), (cx + 10, 10), 2, hat * 0.9)
    tool = rng.random()
    if tool < 0.35:  # shovel
        cv.line((cx + 15, 40), (cx + 20, SIZE - 10), 2, np.array([0.5, 0.35, 0.2]))
        cv.poly([(cx + 16, SIZE - 12), (cx + 25, SIZE - 12), (cx + 22, SIZE - 2), (cx + 18, SIZE - 2)], dark(rng) + 0.2)
    elif tool < 0.55:  # stop/slow paddle
        cv.line((cx + 15, 60), (cx + 16, 22), 1.8, np.full(3, 0.6))
        cv.ellipse((cx + 16, 18), (8, 8), red(rng) if rng.random() < 0.5 else orange(rng))
    return finish(cv, rng)


def machine(rng):
    """An excavator (tracks, cab, boom, bucket) or a road roller, in construction yellow or orange."""
    body = (np.array([rng.uniform(0.9, 1.0), rng.uniform(0.68, 0.82), rng.uniform(0.0, 0.12)]) if rng.random() < 0.75
            else orange(rng))
    glass = dark(rng) + np.array([0.03, 0.06, 0.09])
    black = dark(rng)
    if rng.random() < 0.65:
        cv = Canvas(110, 200)
        cv.poly([(20, 92), (140, 92), (150, 100), (140, 108), (20, 108), (10, 100)], black)  # tracks
        for x in np.linspace(24, 136, 7):
            cv.ellipse((x, 100), (4, 4), np.full(3, 0.3))
        cv.poly([(18, 60), (128, 60), (128, 90), (18, 90)], body, board_shade(cv, rng))  # house
        cv.poly([(70, 28), (116, 28), (120, 60), (70, 60)], body * 0.95)  # cab
        cv.poly([(76, 33), (112, 33), (115, 56), (76, 56)], glass)
        up = rng.uniform(-12, 8)
        tip = (178 + rng.uniform(-8, 8), 30 + up)
        cv.line((120, 66), tip, 9, body * 0.92)  # boom
        foot = (tip[0] + rng.uniform(-6, 10), tip[1] + rng.uniform(35, 55))
        cv.line(tip, foot, 6, body * 0.85)  # stick
        fx, fy = foot
        cv.poly([(fx - 12, fy - 4), (fx + 6, fy - 6), (fx + 10, fy + 8), (fx - 4, fy + 12)], black + 0.1)  # bucket
    else:
        cv = Canvas(100, 170)
        cv.ellipse((40, 72), (26, 26), np.full(3, rng.uniform(0.35, 0.55)))  # steel drum
        cv.poly([(10, 40), (80, 40), (80, 58), (10, 58)], body)
        cv.poly([(70, 46), (160, 46), (160, 86), (70, 86)], body, board_shade(cv, rng))
        cv.poly([(100, 6), (150, 6), (150, 46), (100, 46)], body * 0.9)  # canopy / cab
        cv.poly([(106, 12), (144, 12), (144, 42), (106, 42)], glass)
        cv.ellipse((135, 84), (14, 14), black)
    return finish(cv, rng)


def drum(rng):
    """A channelizer drum in another livery: red/white (Europe) or yellow/black, taller, with a handle."""
    w = rng.uniform(0.5, 0.6) * SIZE
    cv = Canvas(SIZE, int(w * 1.25) + 4)
    cx, r = cv.w / SS / 2, w / 2
    c0 = red(rng) if rng.random() < 0.6 else np.array([rng.uniform(0.92, 1.0), rng.uniform(0.78, 0.9), 0.05])
    c1 = white(rng) if c0[1] < 0.5 else dark(rng)
    cv.poly([(cx - r * 1.15, SIZE - 10), (cx + r * 1.15, SIZE - 10), (cx + r * 1.15, SIZE - 2),
             (cx - r * 1.15, SIZE - 2)], dark(rng))
    nb = int(rng.choice([4, 6]))
    banded_cylinder(cv, rng, cx, 12, SIZE - 9, r * 0.9, r, [(i / nb, c0 if i % 2 == 0 else c1) for i in range(nb)],
                    curve=0.04)
    cv.ellipse((cx, 12), (r * 0.9, 5), c0 * 0.75)
    cv.line((cx - r * 0.3, 6), (cx + r * 0.3, 6), 3, c0 * 0.7)  # handle
    return finish(cv, rng)


def water_barrier(rng):
    """Interlocking plastic water-filled barriers, alternating red and white."""
    n = int(rng.integers(1, 4))
    seg = rng.uniform(1.4, 1.9) * 40
    cv = Canvas(60, int(seg * n) + 4)
    cols = [red(rng), white(rng)] if rng.random() < 0.8 else [orange(rng), white(rng)]
    for i in range(n):
        x0, x1 = 2 + i * seg, 2 + (i + 1) * seg - 2
        c = cols[i % 2]
        cv.poly([(x0, 58), (x1, 58), (x1 - 4, 14), (x0 + 4, 14)], c, board_shade(cv, rng))
        cv.ellipse(((x0 + x1) / 2, 14), ((x1 - x0) / 2 - 4, 8), c * 0.95, start=180, end=360)
        cv.ellipse(((x0 + x1) / 2, 10), (4, 2.5), c * 0.6)  # fill cap
        cv.line((x0 + 6, 40), (x1 - 6, 40), 1.5, c * 0.75)
    return finish(cv, rng, skew=0.5)


HOARDING_WORDS = ("WORK IN PROGRESS", "METRO WORK", "INCONVENIENCE REGRETTED", "MEN AT WORK", "KEEP OUT",
                  "ROAD WIDENING", "")


def hoarding(rng):
    """A site hoarding: a long wall of painted sheet panels (blue/green/white/yellow) with a striped
    skirt, as metro and road-widening works put along the road (IDD's roadwork)."""
    n = int(rng.integers(2, 6))
    pw = rng.uniform(36, 50)
    H = 70
    cv = Canvas(H + 4, int(pw * n) + 4)
    palette = [np.array([0.1, 0.3, 0.7]), np.array([0.1, 0.5, 0.25]), white(rng), np.array([0.95, 0.8, 0.1]),
               np.array([0.85, 0.85, 0.8])]
    base = palette[rng.integers(len(palette))] * rng.uniform(0.8, 1.05)
    alt = palette[rng.integers(len(palette))] * rng.uniform(0.8, 1.05) if rng.random() < 0.4 else base
    w = pw * n
    for i in range(n):
        cv.poly([(2 + i * pw, 2), (2 + (i + 1) * pw - 1, 2), (2 + (i + 1) * pw - 1, H), (2 + i * pw, H)],
                base if i % 2 == 0 else alt, board_shade(cv, rng))
    stripe_a, stripe_b = (np.array([0.95, 0.8, 0.1]), dark(rng)) if rng.random() < 0.6 else (red(rng), white(rng))
    striped_board(cv, rng, 2, H - 14, w, H, stripe_a, stripe_b, rng.uniform(7, 12), 1)
    if rng.random() < 0.5:
        striped_board(cv, rng, 2, 2, w, 9, stripe_a, stripe_b, rng.uniform(7, 12), -1)
    word = HOARDING_WORDS[rng.integers(len(HOARDING_WORDS))]
    if word:
        ink = white(rng) if base.mean() < 0.5 else dark(rng)
        th = min(16.0, (w - 8) / max(1e-3, cv.text_width(word, 16)) * 16)
        cv.text(word, (2 + w / 2, H * 0.45), th, ink)
    for i in range(n + 1):
        cv.line((2 + i * pw, 0), (2 + i * pw, H + 3), 1.5, np.full(3, 0.35))
    return finish(cv, rng, skew=0.6)


def arrow_board(rng):
    """A trailer-mounted arrow board: black panel with a chevron of amber lamps."""
    cv = Canvas(SIZE, 110)
    black, amber = dark(rng), np.array([1.0, rng.uniform(0.6, 0.8), 0.1])
    cv.line((55, 60), (55, SIZE - 14), 4, np.full(3, 0.4))
    cv.poly([(20, SIZE - 16), (90, SIZE - 16), (90, SIZE - 8), (20, SIZE - 8)], orange(rng) * 0.9)
    cv.ellipse((30, SIZE - 6), (6, 6), black)
    cv.ellipse((80, SIZE - 6), (6, 6), black)
    cv.poly([(4, 4), (106, 4), (106, 62), (4, 62)], black)
    d = 1 if rng.random() < 0.5 else -1
    pts = [(55 + d * 35, 33)] + [(55 + d * (35 - k * 9), 33 + s * k * 6) for k in range(1, 5) for s in (-1, 1)]
    pts += [(55 + d * (30 - k * 12), 33) for k in range(1, 6)]
    for x, y in pts:
        cv.ellipse((x, y), (3, 3), amber)
    return finish(cv, rng, skew=0.3)


def excavation(rng):
    """Dug-up road: a mound of earth beside a dark trench, broken asphalt edges, stones."""
    w = rng.uniform(2.5, 4.0) * 40
    cv = Canvas(44, int(w) + 4)
    earth = np.array([rng.uniform(0.4, 0.6), rng.uniform(0.3, 0.42), rng.uniform(0.18, 0.28)])
    xs = np.linspace(2, w, 12)
    top = 40 - np.clip(np.sin(np.linspace(0, np.pi, 12)) * rng.uniform(18, 34) + rng.normal(0, 3, 12), 2, 40)
    cv.poly([(2, 42)] + list(zip(xs, top)) + [(w, 42)], earth, board_shade(cv, rng))
    y, x = cv.grid()
    grain = (0.85 + 0.3 * np.random.default_rng(int(rng.integers(1 << 30))).random(y.shape)).astype(np.float32)
    cv.rgb *= np.where(cv.a[..., None] > 0, grain[..., None], 1)
    hole_x = rng.uniform(0.1, 0.5) * w
    cv.ellipse((hole_x + w * 0.2, 38), (w * 0.22, 5), dark(rng) * 0.6)
    asphalt = np.full(3, rng.uniform(0.25, 0.4))
    for _ in range(int(rng.integers(3, 8))):
        cx, cy = rng.uniform(4, w), rng.uniform(30, 41)
        cv.poly([(cx, cy), (cx + rng.uniform(3, 8), cy - rng.uniform(0, 3)), (cx + rng.uniform(2, 6), cy + 3)],
                asphalt if rng.random() < 0.5 else earth * 0.7)
    return finish(cv, rng)


DRAWERS = {"cone_drawn": cone_drawn, "barrel": barrel, "delineator": delineator, "barricade": barricade,
           "sign": sign, "jersey": jersey, "fence": fence, "worker": worker, "machine": machine, "drum": drum,
           "water_barrier": water_barrier, "hoarding": hoarding, "arrow_board": arrow_board, "excavation": excavation}
