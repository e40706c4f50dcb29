"""Camera-look randomization: make every training image look like it came from another camera.

Our roadwork positives come from two cameras, so a model can score well by recognising the camera
(its bonnet, colour rendering, sharpness, compression) instead of the roadwork. `CameraJitter`
re-renders an image as a random other camera would: crops that remove bonnet and dashboard or
change the aspect ratio, lens vignetting, white balance and colour cast, tone curve, sensor noise,
a different resolution (down- and up-sampling with random filters) and JPEG re-compression. It
runs before the validator's own augmentation levels, which it does not replace.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from roadwork.synth.seeding import worker_rng

RESAMPLERS = (Image.NEAREST, Image.BILINEAR, Image.BICUBIC, Image.BOX, Image.LANCZOS, Image.HAMMING)
ASPECTS = (1.0, 4 / 3, 3 / 2, 16 / 9, 2.0)  # width / height of common sensors and crops


class CameraJitter:
    """PIL -> PIL. With probability `p` the image is re-rendered through a random camera.

    Each stage has its own probability. Output size rules: the image is only ever cropped, each
    side keeps at least `min_keep` of the input, and resampling returns to the cropped size.
    Call with `rng=` for explicit control (the trainer does); otherwise a per-worker stream from
    `seed` is used, so `CameraJitter(seed=s)` gives the same outputs for the same calls.
    """

    def __init__(self, p: float = 1.0, seed: int | None = None, crop: float = 0.7, aspect: float = 0.3,
                 colour: float = 0.8, tone: float = 0.7, vignette: float = 0.3, noise: float = 0.4,
                 resample: float = 0.5, jpeg: float = 0.6, min_keep: float = 0.5):
        self.p, self.seed = p, seed
        self.probs = {"crop": crop, "aspect": aspect, "colour": colour, "tone": tone, "vignette": vignette,
                      "noise": noise, "resample": resample, "jpeg": jpeg}
        self.min_keep = min_keep
        self._rng: np.random.Generator | None = None
        self._pid = 0

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_rng": None}

    def __repr__(self) -> str:
        return f"CameraJitter(p={self.p}, seed={self.seed}, " + ", ".join(f"{k}={v}" for k, v in self.probs.items()) + ")"

    def __call__(self, img: Image.Image, rng: np.random.Generator | None = None) -> Image.Image:
        if rng is None:
            self._rng, self._pid = worker_rng(self.seed, self._rng, self._pid)
            rng = self._rng
        if rng.random() >= self.p:
            return img
        on = {k: rng.random() < v for k, v in self.probs.items()}
        img = self._crop(img.convert("RGB"), rng, on["crop"], on["aspect"])
        x = np.asarray(img, np.float32) / 255
        if on["vignette"]:
            x = _vignette(x, rng)
        if on["colour"]:
            x = _white_balance(x, rng)
        if on["tone"]:
            x = _tone(x, rng)
        if on["noise"]:
            s = rng.uniform(0.003, 0.03)
            x = x + rng.normal(0, s, x.shape[:2] + (1,)) + rng.normal(0, s / 2, x.shape)
        out = Image.fromarray(np.round(np.clip(x, 0, 1) * 255).astype(np.uint8))
        if on["resample"]:
            out = _resample(out, rng)
        if on["jpeg"]:
            buf = io.BytesIO()
            out.save(buf, format="JPEG", quality=int(rng.integers(20, 96)))
            out = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
        return out

    def _crop(self, img: Image.Image, rng: np.random.Generator, crop: bool, aspect: bool) -> Image.Image:
        W, H = img.size
        top = bottom = left = right = 0.0
        if crop:  # bonnet / dashboard at the bottom, sky or mount at the top
            bottom, top = rng.uniform(0, 0.25) * H, rng.uniform(0, 0.12) * H
        if aspect:
            want = ASPECTS[rng.integers(len(ASPECTS))]
            h = H - top - bottom
            if W / h > want:  # too wide: trim the sides
                cut = W - want * h
                left = rng.uniform(0, cut)
                right = cut - left
            else:  # too tall: trim more of the bottom (where the bonnet is) than the top
                cut = h - W / want
                extra = rng.uniform(0.5, 1.0) * cut
                bottom, top = bottom + extra, top + cut - extra
        # never keep less than min_keep of a side
        sx = min(1.0, (1 - self.min_keep) * W / max(left + right, 1e-9))
        sy = min(1.0, (1 - self.min_keep) * H / max(top + bottom, 1e-9))
        box = (round(left * sx), round(top * sy), W - round(right * sx), H - round(bottom * sy))
        return img if box == (0, 0, W, H) else img.crop(box)


def _vignette(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    H, W = x.shape[:2]
    cy, cx = H / 2 * (1 + rng.uniform(-0.15, 0.15)), W / 2 * (1 + rng.uniform(-0.15, 0.15))
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    r2 = ((yy - cy) / (H / 2)) ** 2 + ((xx - cx) / (W / 2)) ** 2
    return x * (1 - rng.uniform(0.1, 0.45) * np.clip(r2 / 2, 0, 1))[..., None]


def _white_balance(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Colour temperature (red vs blue), tint (green vs magenta), a cast, and saturation."""
    t, m = rng.normal(0, 0.1), rng.normal(0, 0.04)
    gains = np.array([1 + t, 1 + m, 1 - t], np.float32) * rng.uniform(0.96, 1.04, 3).astype(np.float32)
    x = x * gains + rng.uniform(-0.03, 0.03, 3).astype(np.float32)
    grey = x.mean(axis=2, keepdims=True)
    return grey + (x - grey) * rng.uniform(0.6, 1.35)


def _tone(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = np.clip(x * rng.uniform(0.8, 1.2), 0, 1) ** np.exp(rng.uniform(np.log(0.7), np.log(1.45)))
    mean = x.mean()
    return mean + (x - mean) * rng.uniform(0.7, 1.3)


def _resample(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    W, H = img.size
    f = float(np.exp(rng.uniform(np.log(0.25), np.log(0.85))))
    small = img.resize((max(8, round(W * f)), max(8, round(H * f))), RESAMPLERS[rng.integers(len(RESAMPLERS))])
    return small.resize((W, H), RESAMPLERS[rng.integers(len(RESAMPLERS))])
