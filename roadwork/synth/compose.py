"""Pasting objects into a scene: brightness, colour cast, blur and noise of the scene, a contact shadow.

Objects stand on the road with perspective-consistent size (`roadwork.synth.layout`). Every paste
also updates the roadwork mask (`sample.SynthSample`): a roadwork object adds its alpha, a hard
negative in front of it takes its own alpha away.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from roadwork.synth import lighting, weather
from roadwork.synth.bank import ObjectBank
from roadwork.synth.config import SynthConfig
from roadwork.synth.ground import estimate_ground
from roadwork.synth.layout import Placement, layout_negative, layout_positive
from roadwork.synth.sample import SynthSample


@dataclass
class SceneLook:
    gain: np.ndarray  # per-channel multiplier that brings a neutrally lit object into the scene
    noise: float  # sensor noise sigma (0..1 scale)
    light: float  # horizontal direction of the sun for shadows (-1 left .. 1 right)


def scene_look(img: np.ndarray, rng: np.random.Generator) -> SceneLook:
    f = img.astype(np.float32) / 255
    lower = f[f.shape[0] // 3:]
    mean = lower.reshape(-1, 3).mean(0) + 1e-3
    lum = float(mean.mean())
    cast = (mean / lum) ** 0.5
    gain = np.clip((lum / 0.45) ** 0.6, 0.35, 1.15) * cast
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
    noise = float(1.4826 * np.median(np.abs(g - cv2.medianBlur(g, 3))))
    return SceneLook(gain.astype(np.float32), min(noise, 0.04), rng.uniform(-1, 1))


def paste(canvas: np.ndarray, p: Placement, look: SceneLook, rng: np.random.Generator,
          mask: np.ndarray | None = None, shadows: bool = True,
          depth: np.ndarray | None = None) -> tuple[int, int, int, int] | None:
    """Composite one placement into `canvas` (float32 HxWx3 in 0..1) in place; returns its clipped
    box (x0, y0, x1, y1) or None when nothing landed in the image. `mask` (float32 HxW, 0..1
    roadwork coverage) and `depth` (metres, for fog) are updated in place."""
    H, W = canvas.shape[:2]
    rgba = p.cut.rgba.astype(np.float32) / 255
    h = max(2, int(round(p.h)))
    w = max(1, int(round(p.h * rgba.shape[1] / rgba.shape[0])))
    if h > 2 * H or w > 3 * W:
        return None
    pm = np.dstack([rgba[..., :3] * rgba[..., 3:], rgba[..., 3]])  # premultiplied for clean resampling
    interp = cv2.INTER_AREA if h < rgba.shape[0] else cv2.INTER_LINEAR
    pm = cv2.resize(pm, (w, h), interpolation=interp)
    sigma = rng.uniform(0.2, 0.7)
    pm = cv2.GaussianBlur(pm, (0, 0), sigma)
    a = np.clip(pm[..., 3], 0, 1)
    col = pm[..., :3] / np.maximum(a[..., None], 1e-4)
    col = col * look.gain * rng.uniform(0.85, 1.1)
    x0, y0 = int(round(p.x - w / 2)), int(round(p.y - h))

    if shadows and p.cut.kind not in ("awning", "shop_sign") and rng.random() < 0.8:
        _shadow(canvas, p, w, look, rng)
    # clip the object's box to the image
    ix0, iy0, ix1, iy1 = max(0, x0), max(0, y0), min(W, x0 + w), min(H, y0 + h)
    if ix0 >= ix1 or iy0 >= iy1:
        return None
    sa = a[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0, None]
    sc = col[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]
    if look.noise > 0:
        sc = sc + rng.normal(0, look.noise, sc.shape).astype(np.float32)
    region = canvas[iy0:iy1, ix0:ix1]
    region[:] = region * (1 - sa) + np.clip(sc, 0, 1) * sa
    if mask is not None:
        m = mask[iy0:iy1, ix0:ix1]
        m[:] = m * (1 - sa[..., 0]) + (0 if p.cut.negative else sa[..., 0])
    if depth is not None:
        d = depth[iy0:iy1, ix0:ix1]
        d[sa[..., 0] > 0.5] = p.z
    return ix0, iy0, ix1, iy1


def _shadow(canvas: np.ndarray, p: Placement, w: int, look: SceneLook, rng: np.random.Generator) -> None:
    H, W = canvas.shape[:2]
    sw, sh = w * rng.uniform(0.55, 0.8), max(1.0, p.h * rng.uniform(0.05, 0.12))
    cx, cy = p.x + look.light * w * 0.35, p.y - sh * 0.3
    pad = int(sw + 4)
    x0, y0 = int(cx) - pad, int(cy) - pad
    m = np.zeros((2 * pad, 2 * pad), np.float32)
    cv2.ellipse(m, (pad, pad), (max(1, int(sw)), max(1, int(sh))), 0, 0, 360, 1.0, -1)
    m = cv2.GaussianBlur(m, (0, 0), max(0.8, sh * 0.6)) * rng.uniform(0.25, 0.5)
    ix0, iy0, ix1, iy1 = max(0, x0), max(0, y0), min(W, x0 + 2 * pad), min(H, y0 + 2 * pad)
    if ix0 < ix1 and iy0 < iy1:
        canvas[iy0:iy1, ix0:ix1] *= 1 - m[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0, None]


def compose_sample(img: np.ndarray, bank: ObjectBank, rng: np.random.Generator, negative: bool = False,
                   config: SynthConfig | None = None) -> SynthSample:
    """Paste roadwork objects (or, `negative`, hard negatives) into an RGB uint8 scene, then light
    and weather the whole scene as `config` draws them."""
    cfg = config or SynthConfig()
    g = estimate_ground(img, rng)
    look = scene_look(img, rng)
    dark_scene = lighting.is_dark(img)
    fx = {"night": dark_scene or rng.random() < cfg.night_p, "rain": rng.random() < cfg.rain_p,
          "fog": rng.random() < cfg.fog_p, "glare": rng.random() < cfg.glare_p,
          "motion_blur": rng.random() < cfg.motion_blur_p}
    fx["lights"] = cfg.hard_negatives and (fx["night"] or rng.random() < cfg.lights_day_p)
    for _ in range(4):  # a positive whose objects all fell outside the frame would be a wrong label
        places = (layout_negative(g, bank, rng, cfg) if negative else
                  layout_positive(g, bank, rng, cfg.max_objects, cfg))
        canvas = img.astype(np.float32) / 255
        mask = np.zeros(img.shape[:2], np.float32)
        depth = weather.ground_depth(g, img.shape[:2]) if fx["fog"] else None
        objects = []
        for p in places:
            box = paste(canvas, p, look, rng, mask, cfg.shadows, depth)
            objects.append({"kind": p.cut.kind, "negative": p.cut.negative, "box": box, "depth_m": round(p.z, 2),
                            "height_px": round(p.h, 1)})
        mask8 = np.round(mask * 255).astype(np.uint8)
        if negative or mask8.max() > 0:
            break
    lights = _scene_effects(canvas, g, rng, fx, dark_scene, mask, depth,
                            [o["depth_m"] for o in objects if not o["negative"] and o["box"]])
    image = np.round(np.clip(canvas, 0, 1) * 255).astype(np.uint8)
    meta = {"kinds": [p.cut.kind for p in places], "objects": objects,
            "effects": [k for k, on in fx.items() if on and not (k == "night" and dark_scene)]
            + (["night_scene"] if dark_scene else []), "lights": lights}
    return SynthSample(image, mask8, int(not negative), meta)


def _scene_effects(canvas: np.ndarray, g, rng: np.random.Generator, fx: dict[str, bool], dark_scene: bool,
                   mask: np.ndarray, depth: np.ndarray | None, object_depths: list[float]) -> list[str]:
    """Night, lights, fog, rain, glare, motion blur and noise over the composite (in place); returns
    the kinds of the light sources added."""
    out = canvas
    relit = fx["night"] and not dark_scene
    if relit:
        out[:] = lighting.relight_night(out, g, rng)
        # retroreflective sheeting shines back in headlights: roadwork stays visible at night
        out *= 1 + mask[..., None] * rng.uniform(1.5, 4.0)
    kinds: list[str] = []
    if fx["lights"]:
        layer = lighting.street_lights(g, rng, fx["night"])
        if fx["night"]:
            lighting.lamp_pools(out, g, [lt for lt in layer.lights if lt.kind == "street_lamp"], rng)
        wet = fx["rain"] or (fx["night"] and rng.random() < 0.35)
        lighting.render_lights(out, g, layer, rng, fx["night"], wet)
        kinds = layer.kinds()
    if fx["fog"] and depth is not None:
        out[:] = weather.fog(out, depth, rng, max(object_depths, default=60.0))
    if fx["rain"]:
        out[:] = weather.rain(out, rng)
    if fx["glare"]:
        out[:] = weather.glare(out, g, rng, fx["night"])
    if fx["motion_blur"]:
        out[:] = weather.motion_blur(out, rng)
    if relit:
        out[:] = weather.sensor_noise(out, rng, rng.uniform(0.008, 0.025))
    return kinds


def compose(img: np.ndarray, bank: ObjectBank, rng: np.random.Generator, negative: bool = False,
            max_objects: int = 8) -> tuple[np.ndarray, list[str]]:
    """Paste roadwork objects (or hard negatives) into an RGB uint8 scene; returns (image, kinds)."""
    s = compose_sample(img, bank, rng, negative, SynthConfig(max_objects=max_objects))
    return s.image, s.meta["kinds"]
