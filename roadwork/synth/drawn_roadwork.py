"""Procedurally drawn roadwork objects: cones, barrels, delineators, barricades, signs, barriers, fences.

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


DRAWERS = {"cone_drawn": cone_drawn, "barrel": barrel, "delineator": delineator, "barricade": barricade,
           "sign": sign, "jersey": jersey, "fence": fence}
