"""Whole-scene lighting: day scenes relit as night, and light sources that are not roadwork.

The shipped model calls night streets with tail and brake lights roadwork (0.85-0.93): red and
amber glows are its cue. So synthetic images get the lights of real streets as hard negatives:
tail/brake light pairs (on a dark car body), oncoming headlights, traffic lights, street lamps with
their pools of tinted light, glowing shop signs and windows, and on wet roads their reflections,
each with a bloom. All of it goes on after the objects are pasted, so a pasted cone at night is as
dark (or as lamp-lit) as the road it stands on. None of it is in the roadwork mask.

Positions come from the scene's ground model, so lights sit at plausible heights and shrink with
distance like everything else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from roadwork.synth.ground import Ground

SODIUM = np.array([1.0, 0.62, 0.28], np.float32)
LED = np.array([0.95, 0.97, 1.0], np.float32)


@dataclass
class Light:
    """A glowing source at ground point (x, z) metres, `elev` metres up; `size` metres across."""

    x: float
    z: float
    elev: float
    size: float
    colour: np.ndarray
    kind: str
    aspect: float = 1.0  # width / height of the glowing shape


@dataclass
class LightLayer:
    lights: list[Light] = field(default_factory=list)

    def kinds(self) -> list[str]:
        return [lt.kind for lt in self.lights]


def is_dark(img: np.ndarray) -> bool:
    """A scene already shot at night or dusk (mean brightness of the lower two thirds)."""
    return float(img[img.shape[0] // 3:].mean()) < 0.2 * 255


def relight_night(canvas: np.ndarray, g: Ground, rng: np.random.Generator) -> np.ndarray:
    """A day scene as the same camera would see it at night under street lamps: exposure down, dark
    sky, blue or sodium ambient cast, a headlight pool on the road ahead and lamp pools beside it."""
    H, W = canvas.shape[:2]
    tint = np.array([0.8, 0.88, 1.1], np.float32) if rng.random() < 0.5 else np.array([1.1, 0.88, 0.66], np.float32)
    out = np.power(np.clip(canvas, 0, 1), rng.uniform(1.15, 1.5)) * (rng.uniform(0.1, 0.25) * tint)
    rows = np.arange(H, dtype=np.float32)[:, None, None]
    sky = np.clip((g.horizon + 0.05 * H - rows) / (0.15 * H), 0, 1)  # the sky goes dark, not grey
    out *= 1 - sky * rng.uniform(0.5, 0.85)
    light = np.ones((H, W), np.float32)
    # headlights: a broad pool on the road in front of the car
    pool = np.zeros((H // 4 + 1, W // 4 + 1), np.float32)
    cx, cy = g.vx / 4, (g.horizon + 0.7 * (g.bottom - g.horizon)) / 4
    cv2.ellipse(pool, (int(cx), int(cy)), (max(1, int(W * 0.28 / 4)), max(1, int((g.bottom - g.horizon) * 0.3 / 4))),
                0, 0, 360, 1.0, -1)
    pool = cv2.GaussianBlur(pool, (0, 0), max(1.0, W / 40))
    light += cv2.resize(pool, (W, H)) * rng.uniform(1.5, 4.0)
    out *= light[..., None]
    return out


def lamp_pools(canvas: np.ndarray, g: Ground, lamps: list[Light], rng: np.random.Generator) -> None:
    """Street lamps light the ground and whatever stands under them, in their colour (in place)."""
    if not lamps:
        return
    H, W = canvas.shape[:2]
    s = 4
    pool = np.zeros((H // s + 1, W // s + 1, 3), np.float32)
    for lt in lamps:
        r = g.focal * rng.uniform(3.0, 6.0) / lt.z
        cv2.ellipse(pool, (int(g.col(lt.x, lt.z) / s), int(g.row(lt.z) / s)), (max(1, int(r / s)),
                    max(1, int(r * 0.35 / s))), 0, 0, 360, (lt.colour * rng.uniform(1.5, 3.5)).tolist(), -1)
    pool = cv2.GaussianBlur(pool, (0, 0), max(1.0, W / 60))
    canvas *= 1 + cv2.resize(pool, (W, H))


def street_lights(g: Ground, rng: np.random.Generator, night: bool) -> LightLayer:
    """The light sources of one street; more and brighter at night."""
    out: list[Light] = []
    H, W = g.road.shape
    for _ in range(int(rng.integers(1, 5 if night else 3))):  # cars ahead: tail lights, brake lights
        x, z = rng.uniform(-4, 4), float(np.exp(rng.uniform(np.log(6), np.log(70))))
        red = np.array([1.0, rng.uniform(0.02, 0.15), rng.uniform(0.02, 0.1)], np.float32)
        gain = rng.uniform(1.5, 4.0) if night else rng.uniform(0.8, 1.6)  # braking or not
        half = rng.uniform(0.65, 0.8)
        for side in (-1, 1):
            out.append(Light(x + side * half, z, rng.uniform(0.7, 1.0), rng.uniform(0.12, 0.25), red * gain, "tail_light",
                             rng.uniform(1.0, 2.5)))
        if rng.random() < 0.3:
            out.append(Light(x, z, rng.uniform(1.2, 1.45), 0.1, red * gain, "brake_light_top", 3.0))
    if night:
        for _ in range(int(rng.integers(0, 3))):  # oncoming headlights, on the other side of the road
            x, z = -rng.uniform(2.5, 7), float(np.exp(rng.uniform(np.log(10), np.log(80))))
            c = np.array([1.0, 0.97, rng.uniform(0.75, 0.95)], np.float32) * rng.uniform(2.0, 5.0)
            for side in (-1, 1):
                out.append(Light(x + side * 0.7, z, 0.65, 0.22, c, "headlight"))
    for _ in range(int(rng.integers(0, 3))):  # traffic lights: red and amber are the confusing ones
        c = [np.array([1.0, 0.08, 0.05]), np.array([1.0, 0.6, 0.05]), np.array([0.2, 1.0, 0.55])][
            rng.choice(3, p=[0.5, 0.25, 0.25])].astype(np.float32)
        out.append(Light(rng.choice([-1, 1]) * rng.uniform(3, 7), float(rng.uniform(12, 60)), rng.uniform(3.0, 5.5),
                         0.25, c * (rng.uniform(1.5, 3.0) if night else rng.uniform(1.0, 1.6)), "traffic_light"))
    if night:
        lamp = SODIUM if rng.random() < 0.6 else LED
        side = rng.choice([-1, 1])
        z = rng.uniform(6, 15)
        while z < 90:  # street lamps along one or both sides
            for s in ((side,) if rng.random() < 0.5 else (-1, 1)):
                out.append(Light(s * rng.uniform(4, 7), z, rng.uniform(6, 9), 0.5, lamp * rng.uniform(1.5, 3.0),
                                 "street_lamp", 1.6))
            z += rng.uniform(20, 35)
        for _ in range(int(rng.integers(0, 6))):  # shop signs and lit windows at the roadside
            c = (np.array([1.0, 0.1, 0.15]), np.array([1.0, 0.45, 0.05]), np.array([1.0, 0.85, 0.2]),
                 np.array([1.0, 0.2, 0.7]), np.array([0.2, 0.5, 1.0]), np.array([1.0, 0.9, 0.7]))[rng.integers(6)]
            out.append(Light(rng.choice([-1, 1]) * rng.uniform(7, 14), float(rng.uniform(8, 60)), rng.uniform(1.0, 4.0),
                             rng.uniform(0.4, 1.2), c.astype(np.float32) * rng.uniform(1.0, 2.5), "shop_light",
                             rng.uniform(1.5, 5.0)))
    return LightLayer([lt for lt in out if lt.z > g.z_near() and -0.1 * W < g.col(lt.x, lt.z) < 1.1 * W])


def render_lights(canvas: np.ndarray, g: Ground, layer: LightLayer, rng: np.random.Generator, night: bool,
                  wet: bool) -> None:
    """Glowing cores, dark car bodies behind tail lights at night, blooms, and (wet) reflections on
    the road below each light (in place)."""
    if not layer.lights:
        return
    H, W = canvas.shape[:2]
    glow = np.zeros((H, W, 3), np.float32)
    reflect = np.zeros((H, W, 3), np.float32)
    for lt in layer.lights:
        x, y = g.col(lt.x, lt.z), g.row(lt.z) - g.focal * lt.elev / lt.z
        r = max(0.6, g.focal * lt.size / lt.z / 2)
        if lt.kind == "traffic_light":  # the dark housing
            hw, hh = max(1, int(r * 1.3)), max(2, int(r * 4))
            cv2.rectangle(canvas, (int(x - hw), int(y - r * 1.5)), (int(x + hw), int(y - r * 1.5 + hh)),
                          (0.04, 0.04, 0.04), -1)
        cv2.ellipse(glow, (int(round(x)), int(round(y))), (max(1, int(round(r * lt.aspect))), max(1, int(round(r)))),
                    0, 0, 360, lt.colour.tolist(), -1, cv2.LINE_AA)
        if wet and y < H:
            y0 = g.row(lt.z)  # the road mirrors the light about its foot, stretched along the view
            y1 = min(H - 1.0, y0 + (y0 - y) * rng.uniform(0.5, 1.2))
            if y1 > y0 + 1:
                _streak(reflect, x, y0, y1, max(1, int(r)), lt.colour * rng.uniform(0.08, 0.2))
    if night:
        _car_bodies(canvas, g, [lt for lt in layer.lights if lt.kind == "tail_light"])
    canvas += glow + cv2.GaussianBlur(reflect, (0, 0), 0.8, sigmaY=2.0)
    canvas += bloom(glow, rng, strong=night)


def _streak(layer: np.ndarray, x: float, y0: float, y1: float, half: int, colour: np.ndarray) -> None:
    """A reflection on a wet road: brightest at the light's foot, fading towards the camera."""
    H, W = layer.shape[:2]
    r0, r1 = int(y0), min(H, int(y1) + 1)
    c0, c1 = max(0, int(x) - half), min(W, int(x) + half + 1)
    if r0 >= r1 or c0 >= c1 or r0 < 0:
        return
    fade = np.linspace(1.0, 0.0, r1 - r0, dtype=np.float32)[:, None, None]
    layer[r0:r1, c0:c1] += fade * colour.astype(np.float32)


def _car_bodies(canvas: np.ndarray, g: Ground, tails: list[Light]) -> None:
    """At night a car is a dark shape between its tail lights."""
    for a, b in zip(tails[::2], tails[1::2]):
        z = a.z
        x0, x1 = g.col(min(a.x, b.x) - 0.2, z), g.col(max(a.x, b.x) + 0.2, z)
        y1 = g.row(z)
        y0 = y1 - g.focal * 1.45 / z
        cv2.rectangle(canvas, (int(x0), int(y0)), (int(x1), int(y1)), (0.02, 0.02, 0.025), -1)


def bloom(glow: np.ndarray, rng: np.random.Generator, strong: bool) -> np.ndarray:
    """Two-scale halo of the bright sources (lens and sensor scatter), computed at quarter size."""
    H, W = glow.shape[:2]
    small = cv2.resize(glow, (max(1, W // 4), max(1, H // 4)), interpolation=cv2.INTER_AREA)
    s = max(0.8, W / 320)
    halo = (cv2.GaussianBlur(small, (0, 0), 1.2 * s) * rng.uniform(0.6, 1.2)
            + cv2.GaussianBlur(small, (0, 0), 4.0 * s) * rng.uniform(0.4, 1.0 if strong else 0.5))
    return cv2.resize(halo, (W, H), interpolation=cv2.INTER_LINEAR) * (1.0 if strong else 0.5)
