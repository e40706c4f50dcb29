"""Hard negatives for copy-paste synthesis: orange, red and striped things that are not roadwork.

Cars, trucks, people in warm colours, striped awnings and parasols, shop signs, pumpkins, hydrants,
wheelie bins and plain concrete barriers; and (issue 10) red traffic signs: stop, no entry, speed
limits, no parking. They share roadwork's colours on purpose, so that a model
has to learn shapes and context instead of "orange means roadwork".
"""

from __future__ import annotations

import numpy as np

from roadwork.synth.canvas import (SIZE, Canvas, banded_cylinder, board_shade, cylinder_shade, dark, finish,
                                   jersey_segments, orange, red, warm, white)

SHOP_WORDS = ("SALE", "OPEN", "CAFE", "PIZZA", "HOTEL", "BANK", "TAXI", "SHOP", "FOOD", "BAR", "MARKET", "TEA",
              "MOBILE", "24H", "DRINKS", "MOTEL")


def car(rng):
    body = warm(rng)
    glass = dark(rng) + np.array([0.02, 0.05, 0.08])
    if rng.random() < 0.75:  # from behind, as a dashcam sees most cars
        cv = Canvas(80, 110)
        cv.poly([(8, 70), (102, 70), (102, 76), (8, 76)], dark(rng))  # tyres + bumper shadow
        cv.poly([(4, 38), (106, 38), (104, 72), (6, 72)], body, board_shade(cv, rng))
        cv.poly([(18, 10), (92, 10), (102, 38), (8, 38)], body * 0.9)
        cv.poly([(22, 14), (88, 14), (96, 36), (14, 36)], glass)
        for x in (6, 86):
            cv.poly([(x, 42), (x + 18, 42), (x + 18, 52), (x, 52)], np.array([0.75, 0.05, 0.05]))
        cv.poly([(42, 54), (68, 54), (68, 62), (42, 62)], white(rng) if rng.random() < 0.6 else np.array([0.95, 0.85, 0.2]))
        cv.poly([(4, 64), (106, 64), (106, 72), (4, 72)], dark(rng) if rng.random() < 0.5 else body * 0.7)
    else:  # side view, parked at the roadside
        cv = Canvas(60, 130)
        cv.poly([(2, 22), (128, 24), (128, 48), (2, 48)], body, board_shade(cv, rng))
        cv.poly([(30, 4), (90, 4), (108, 24), (18, 24)], body * 0.92)
        cv.poly([(34, 7), (58, 7), (58, 22), (24, 22)], glass)
        cv.poly([(62, 7), (88, 7), (102, 22), (62, 22)], glass)
        for x in (28, 104):
            cv.ellipse((x, 48), (11, 11), dark(rng))
            cv.ellipse((x, 48), (5, 5), np.full(3, 0.6))
    return finish(cv, rng)


def truck(rng):
    cv = Canvas(120, 100)
    box = warm(rng) if rng.random() < 0.7 else white(rng)
    cv.poly([(10, 100), (90, 100), (90, 112), (10, 112)], dark(rng))
    cv.poly([(4, 4), (96, 4), (96, 104), (4, 104)], box, board_shade(cv, rng))
    cv.line((50, 6), (50, 102), 1.5, box * 0.6)
    if rng.random() < 0.5:
        cv.poly([(4, 70), (96, 70), (96, 78), (4, 78)], warm(rng))
    for x in (6, 84):
        cv.poly([(x, 92), (x + 10, 92), (x + 10, 99), (x, 99)], np.array([0.8, 0.05, 0.05]))
    return finish(cv, rng)


def person(rng):
    cv = Canvas(SIZE, 50)
    skin = np.array([rng.uniform(0.35, 0.9), 0, 0])
    skin[1], skin[2] = skin[0] * rng.uniform(0.65, 0.78), skin[0] * rng.uniform(0.45, 0.6)
    top, legs = warm(rng), (np.array([0.15, 0.2, 0.4]) if rng.random() < 0.5 else dark(rng)) * rng.uniform(0.8, 1.3)
    stride = rng.uniform(0, 8)
    cv.line((25, 66), (25 - stride, SIZE - 3), 7, legs)
    cv.line((25, 66), (25 + stride, SIZE - 3), 7, legs)
    cv.poly([(15, 24), (35, 24), (37, 70), (13, 70)], top, board_shade(cv, rng))
    swing = rng.uniform(-6, 6)
    cv.line((15, 27), (12 + swing, 60), 5, top * 0.9)
    cv.line((35, 27), (38 - swing, 60), 5, top * 0.9)
    cv.ellipse((25, 13), (8, 10), skin)
    cv.ellipse((25, 7), (8, 5), dark(rng), start=180, end=360)  # hair
    return finish(cv, rng)


def awning(rng):
    cv = Canvas(60, 130)
    c0, c1 = (red(rng) if rng.random() < 0.6 else orange(rng)), white(rng)
    y, x = cv.grid()
    period = rng.uniform(8, 14)
    slant = (y / 60) * 8  # the awning leans out: wider at the bottom
    inside = (x > 8 - slant) & (x < 122 + slant) & (y > 2) & (y < 48 + 4 * np.abs(np.sin(np.pi * x / period)))
    col = np.where(((np.floor(x / period) % 2) == 0)[..., None], c0, c1).astype(np.float32)
    shade = (0.7 + 0.3 * (y / 60)).astype(np.float32)
    cv.paint(inside, col, shade)
    return finish(cv, rng, skew=0.4)


def parasol(rng):
    cv = Canvas(SIZE, 120)
    c0, c1 = (red(rng) if rng.random() < 0.6 else orange(rng)), white(rng)
    cv.line((60, 30), (60, SIZE - 4), 2.5, np.full(3, 0.7))
    cv.ellipse((60, SIZE - 4), (14, 3), dark(rng))
    y, x = cv.grid()
    ang = np.arctan2(y - 40, x - 60)
    inside = (((x - 60) / 56) ** 2 + ((y - 40) / 32) ** 2 <= 1) & (y <= 40)
    n = rng.choice([6, 8, 10])
    col = np.where(((np.floor((ang + np.pi) / np.pi * n) % 2) == 0)[..., None], c0, c1).astype(np.float32)
    cv.paint(inside, col, cylinder_shade(np.clip((x - 60) / 56, -1, 1), rng))
    return finish(cv, rng)


def shop_sign(rng):
    word = SHOP_WORDS[rng.integers(len(SHOP_WORDS))]
    cv = Canvas(50, 130)
    bg = warm(rng)
    cv.poly([(2, 2), (128, 2), (128, 46), (2, 46)], bg, board_shade(cv, rng))
    ink = white(rng) if rng.random() < 0.6 else dark(rng)
    th = min(26, 110 / max(1e-3, cv.text_width(word, 26)) * 26)
    cv.text(word, (65, 24), th, ink)
    return finish(cv, rng, skew=0.4)


def pumpkin(rng):
    n = rng.integers(1, 5)
    cv = Canvas(70, 50 + 40 * n)
    for i in range(n):
        cx, r = 30 + i * 38 + rng.uniform(-4, 4), rng.uniform(18, 26)
        c = orange(rng)
        y, x = cv.grid()
        u = np.clip((x - cx) / r, -1, 1)
        inside = ((x - cx) / r) ** 2 + ((y - (68 - r * 0.8)) / (r * 0.8)) ** 2 <= 1
        ribs = 0.85 + 0.15 * np.abs(np.cos(u * np.pi * 2.5))
        cv.paint(inside, c, cylinder_shade(u, rng) * ribs.astype(np.float32))
        cv.line((cx, 68 - r * 1.6), (cx + 3, 68 - r * 1.6 - 8), 3, np.array([0.3, 0.45, 0.15]))
    return finish(cv, rng)


def hydrant(rng):
    cv = Canvas(SIZE, 70)
    c = red(rng) if rng.random() < 0.6 else np.array([0.95, 0.8, 0.1])
    banded_cylinder(cv, rng, 35, 30, SIZE - 12, 14, 15, [(0, c)])
    cv.ellipse((35, 30), (16, 14), c * 0.9, start=180, end=360)
    cv.poly([(12, 50), (58, 50), (58, 62), (12, 62)], c * 0.8)
    cv.poly([(18, SIZE - 14), (52, SIZE - 14), (56, SIZE - 2), (14, SIZE - 2)], c * 0.7)
    return finish(cv, rng)


def bin_(rng):
    cv = Canvas(SIZE, 80)
    c = warm(rng)
    cv.poly([(12, 18), (68, 18), (64, SIZE - 10), (16, SIZE - 10)], c, board_shade(cv, rng))
    cv.poly([(8, 8), (72, 8), (74, 20), (6, 20)], c * 0.8)
    for x in (20, 60):
        cv.ellipse((x, SIZE - 8), (7, 7), dark(rng))
    return finish(cv, rng)


def jersey_concrete(rng):
    g = rng.uniform(0.5, 0.8)
    return jersey_segments(rng, [np.array([g, g, g * rng.uniform(0.93, 1.0)])] * int(rng.integers(1, 4)))


def _pole(cv: Canvas, cx: float, top: float, rng) -> None:
    cv.line((cx, top), (cx, SIZE - 1), 3, np.full(3, rng.uniform(0.45, 0.7)))


def stop_sign(rng):
    """A red octagon on a pole (STOP, or a blank/foreign-script look)."""
    cv = Canvas(SIZE, 70)
    cx, cy, r = 35, 32, rng.uniform(24, 30)
    _pole(cv, cx, cy, rng)
    ang = np.pi / 8 + np.arange(8) * np.pi / 4
    cv.poly(np.c_[cx + r * np.cos(ang), cy + r * np.sin(ang)], white(rng))
    cv.poly(np.c_[cx + 0.9 * r * np.cos(ang), cy + 0.9 * r * np.sin(ang)], red(rng), board_shade(cv, rng))
    if rng.random() < 0.8:
        cv.text("STOP", (cx, cy), r * 0.55, white(rng), thick=0.2)
    return finish(cv, rng, skew=0.25)


def round_sign(rng):
    """Round regulatory signs: no entry (red disc, white bar), speed limit or no parking (red ring)."""
    cv = Canvas(SIZE, 70)
    cx, cy, r = 35, 32, rng.uniform(22, 30)
    _pole(cv, cx, cy, rng)
    kind = rng.random()
    if kind < 0.4:
        cv.ellipse((cx, cy), (r, r), red(rng), board_shade(cv, rng))
        cv.poly([(cx - 0.65 * r, cy - 0.15 * r), (cx + 0.65 * r, cy - 0.15 * r), (cx + 0.65 * r, cy + 0.15 * r),
                 (cx - 0.65 * r, cy + 0.15 * r)], white(rng))
    else:
        cv.ellipse((cx, cy), (r, r), red(rng), board_shade(cv, rng))
        inner = white(rng) if kind < 0.75 else np.array([0.1, 0.25, 0.65])
        cv.ellipse((cx, cy), (0.78 * r, 0.78 * r), inner)
        if kind < 0.75:
            cv.text(str(rng.choice([20, 30, 40, 50, 60, 80])), (cx, cy), r * 0.7, dark(rng), thick=0.18)
        else:
            cv.line((cx - 0.55 * r, cy - 0.55 * r), (cx + 0.55 * r, cy + 0.55 * r), 0.15 * r, red(rng))
    return finish(cv, rng, skew=0.25)


DRAWERS = {"car": car, "truck": truck, "person": person, "awning": awning, "parasol": parasol,
           "shop_sign": shop_sign, "pumpkin": pumpkin, "hydrant": hydrant, "bin": bin_,
           "jersey_concrete": jersey_concrete, "stop_sign": stop_sign, "round_sign": round_sign}
