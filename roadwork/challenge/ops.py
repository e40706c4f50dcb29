"""The validator's image operations, reproduced to the bit (SN72 release 2.0.4, natix/utils/image_transforms.py).

The validator works on float32 CHW tensors (ToTensor: x / 255) and leaves tensor-land three ways, each a
*truncation* `(t * 255).astype(uint8)`: before every DeeperForensics distortion, and in `ToPILImage` before
the JPEG. In float32, `(u / 255) * 255` truncates back to `u` for every u in 0..255 (checked in the tests),
so once an image has been truncated the first time we can stay in uint8 without changing a single value.
Only the level 1-3 geometry (rotate + antialiased resize) produces genuinely fractional values; that step
returns float32 CHW like the validator's tensor, and `truncate_u8` makes the one lossy conversion.

Everything here is deterministic: randomness (angles, crops, strengths, noise) is the caller's business.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from io import BytesIO

import cv2
import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image

SIZE = 224  # natix.validator.config.TARGET_IMAGE_SIZE = (224, 224)

# DeeperForensics-1.0 parameter table as the validator uses it (get_distortion_parameter); the validator only
# ever draws strengths 1 (levels 2-3) and 2 (level 3), but the table is kept whole so the codes read the same.
PARAMS: dict[str, tuple[float, ...]] = {
    "CS": (0.4, 0.3, 0.2, 0.1, 0.0),       # chroma scale toward neutral
    "CC": (0.85, 0.725, 0.6, 0.475, 0.35),  # multiply all channels
    "JPEG": (2, 3, 4, 5, 6),                # integer down-scale factor (resolution loss, not JPEG!)
    "GNC": (0.001, 0.002, 0.005, 0.01, 0.05),  # noise variance in (pseudo) YCbCr / 255
    "GB": (7, 9, 13, 17, 21),               # Gaussian kernel size, sigma = k / 6
}
CODES = ("CS", "CC", "JPEG", "GNC", "GB")  # the order level 3 applies them in (level 2: the first three)

Noise = Callable[[tuple[int, ...]], np.ndarray]  # shape -> standard normal float64 samples


def param(code: str, strength: int) -> float:
    if code not in PARAMS:
        raise ValueError(f"unknown distortion {code!r} (known: {', '.join(CODES)})")
    if not 1 <= strength <= len(PARAMS[code]):
        raise ValueError(f"{code}: strength must be 1..{len(PARAMS[code])}, got {strength}")
    return PARAMS[code][strength - 1]


# ---- level 0 ------------------------------------------------------------------------------------------
def level0(img: Image.Image) -> Image.Image:
    """ConvertToRGB -> CenterCrop(shorter side) -> Resize((224, 224)) -> ToTensor -> ToPILImage.

    All on the PIL image: torchvision's CenterCrop rounds the offset with Python's round (half to even),
    and Resize on PIL is PIL's BILINEAR, which always antialiases. The ToTensor/ToPILImage round trip is the
    identity (see module doc), so the PIL result is exactly what goes into the JPEG.
    """
    img = img.convert("RGB")
    w, h = img.size
    m = min(w, h)
    top, left = int(round((h - m) / 2.0)), int(round((w - m) / 2.0))
    img = img.crop((left, top, left + m, top + m))
    return img.resize((SIZE, SIZE), Image.BILINEAR)


def letterbox(img: Image.Image) -> Image.Image:
    """2026-04's `ResizeWithPadding((224, 224))` on the RGB image: fit inside 224x224, black padding.

    The validator scales by `s = min(224/W, 224/H)` and truncates the size with int() (722x406 -> 223x125,
    not 224x125), resizes with PIL bilinear (torchvision's F.resize on a PIL image), and pads
    `(224 - n) // 2` left/top, the rest right/bottom, with black. `convert("RGB")` drops alpha without
    compositing, as the validator's ConvertToRGB does.
    """
    img = img.convert("RGB")
    w, h = img.size
    s = min(SIZE / w, SIZE / h)
    # max(1, ...): a 1x2000 strip would truncate to 0 and make the validator raise (it then sends the raw
    # image); we keep a 1-pixel line instead of failing
    nw, nh = max(1, int(w * s)), max(1, int(h * s))
    canvas = Image.new("RGB", (SIZE, SIZE))
    canvas.paste(img.resize((nw, nh), Image.BILINEAR), ((SIZE - nw) // 2, (SIZE - nh) // 2))
    return canvas


# ---- level 1: rotation (nearest, black corners) + resized crop ------------------------------------------
_U8_TO_F32 = np.arange(256, dtype=np.float32) / np.float32(255)  # ToTensor's values, as a lookup table


def rotate_resized_crop(img: Image.Image | np.ndarray, angle: float,
                        crop: tuple[int, int, int, int]) -> np.ndarray:
    """`F.rotate(ToTensor(img), angle)` then `F.resized_crop(t, *crop, (224, 224), BILINEAR, antialias=True)`.

    Returns float32 CHW, the validator's tensor. `crop` is (top, left, height, width) on the rotated image,
    which has the input's size (expand=False).

    The validator asks RandomRotation for BILINEAR, but its `forward` calls `F.rotate(img, angle)` without
    passing it, so torchvision's default NEAREST is used, with zero (black) fill.

    Instead of rotating the whole tensor (grid_sample over every pixel, ~150 ms at 1080p) we compute the
    nearest-neighbour source index of just the crop's pixels, with torchvision's own float32 arithmetic:
    `_gen_affine_grid` (base grid at pixel centres, theta / (w/2, h/2); torch's batched matmul here sums
    x*a + y*b + c in that order, without FMA) and grid_sample's CPU unnormalisation
    `(g + 1) * size/2 - 0.5`, rounded half-to-even, out of range -> 0. Our order is fixed (numpy, no FMA), so
    the result is the same on every CPU; torchvision's own result is not: at an exact .5 tie its nearest
    source pixel depends on the BLAS kernel the CPU gets. The tests check we equal torchvision's full path
    bit for bit on random sizes, angles and crops, except at such ties.
    """
    rot = rotate_nearest(img, angle, crop)
    # gathering through the CHW view yields a contiguous CHW tensor: the antialiased resize is ~2x faster
    # on it than on a channels-last view, with identical values
    t = torch.from_numpy(_U8_TO_F32[rot.transpose(2, 0, 1)])
    out = TF.resize(t, [SIZE, SIZE], TF.InterpolationMode.BILINEAR, antialias=True)
    return out.numpy()


def rotate_nearest(img: Image.Image | np.ndarray, angle: float,
                   crop: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """`F.rotate(ToTensor(img), angle)` (NEAREST, black corners, same canvas) as uint8 HWC RGB, limited to
    `crop` = (top, left, height, width) when given (default: the whole image; 2026-04 rotates the
    224x224 letterboxed tensor). Nearest rotation only copies pixels, so the uint8 result is the
    validator's tensor x 255 exactly; source pixels come from `rotation_sources`."""
    arr = np.asarray(img.convert("RGB") if isinstance(img, Image.Image) else img)
    H, W = arr.shape[:2]
    crop = crop or (0, 0, H, W)
    top, left, h, w = (int(v) for v in crop)
    if not (0 <= top and 0 <= left and 0 < h and 0 < w and top + h <= H and left + w <= W):
        raise ValueError(f"crop {crop} (top, left, height, width) is outside the {W}x{H} image")
    ix, iy = rotation_sources(W, H, angle, crop)
    inside = (ix >= 0) & (ix <= W - 1) & (iy >= 0) & (iy <= H - 1)
    # integer arithmetic for the flat index: float32 is exact only below 2**24 pixels
    src = iy.astype(np.intp)
    src *= W
    src += ix.astype(np.intp)
    src[~inside] = 0
    rot = np.take(arr.reshape(-1, 3), src, axis=0)  # (h, w, 3) uint8
    rot[~inside] = 0  # black corners
    return rot


def rotation_sources(W: int, H: int, angle: float, crop: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The nearest source column and row (float32, may be out of range) of every pixel of `crop` in the
    NEAREST rotation of a W x H image by `angle`, in torchvision's float32 arithmetic."""
    top, left, h, w = (int(v) for v in crop)
    # torchvision: rotate() passes -angle to _get_inverse_affine_matrix (its sign conventions differ)
    m = TF._get_inverse_affine_matrix([0.0, 0.0], -float(angle), [0.0, 0.0], 1.0, [0.0, 0.0])
    theta = np.asarray(m, dtype=np.float32).reshape(2, 3)
    rt = theta.T / np.asarray([0.5 * W, 0.5 * H], dtype=np.float32)  # (3, 2), float32 like torch
    # torch.linspace, sliced to the crop (its float32 values depend on the full range, not on the slice)
    xs = torch.linspace(-W * 0.5 + 0.5, W * 0.5 + 0.5 - 1, steps=W).numpy()[left:left + w][None, :]
    ys = torch.linspace(-H * 0.5 + 0.5, H * 0.5 + 0.5 - 1, steps=H).numpy()[top:top + h][:, None]
    return _nearest_source(xs, ys, rt[:, 0], W), _nearest_source(xs, ys, rt[:, 1], H)


def _nearest_source(xs: np.ndarray, ys: np.ndarray, coef: np.ndarray, size: int) -> np.ndarray:
    """One grid coordinate -> nearest source pixel (float32, may be out of range), torch's float32 ops in
    torch's order, done in place to spare the allocations of a million-pixel crop."""
    g = np.add(xs * coef[0], ys * coef[1])  # (h, w)
    g += coef[2]
    g += np.float32(1)
    g *= np.float32(size) / 2
    g -= np.float32(0.5)
    return np.rint(g, out=g)  # half to even, like Vectorized::round


def truncate_u8(chw: np.ndarray) -> np.ndarray:
    """Float CHW in [0, 1] -> uint8 HWC RGB the validator's way: `(t * 255).astype(uint8)` truncates."""
    return (np.ascontiguousarray(chw.transpose(1, 2, 0)) * 255).astype(np.uint8)


# ---- DeeperForensics distortions, on uint8 BGR HxWx3 ----------------------------------------------------
# The "YCbCr" here is DeeperForensics' own: OpenCV's *float* BGR->YCrCb on 0..255 values (for float input
# OpenCV assumes a 0..1 range and offsets the chroma by 0.5 rather than 128), then a studio-range rescale
# written for 0..1 data: (v * 219 + 16) / 255 for Y, (v * 224 + 16) / 255 for chroma. Nothing about that
# is colorimetrically meaningful, but it is what the validator computes, so we do the same float32 steps
# in the same order.
def _to_ycbcr(bgr: np.ndarray) -> np.ndarray:
    ycrcb = cv2.cvtColor(bgr.astype(np.float32), cv2.COLOR_BGR2YCrCb)
    out = ycrcb[:, :, (0, 2, 1)].astype(np.float32)  # -> Y, Cb, Cr
    out[:, :, 0] = (out[:, :, 0] * 219 + 16) / 255.0
    out[:, :, 1:] = (out[:, :, 1:] * 224 + 16) / 255.0
    return out


def _from_ycbcr(ycbcr: np.ndarray) -> np.ndarray:
    v = ycbcr.astype(np.float32)  # a copy: the caller's array stays untouched
    v[:, :, 0] = (v[:, :, 0] * 255.0 - 16) / 219
    v[:, :, 1:] = (v[:, :, 1:] * 255.0 - 16) / 224
    return cv2.cvtColor(v[:, :, (0, 2, 1)].astype(np.float32), cv2.COLOR_YCrCb2BGR)


def color_saturation(bgr: np.ndarray, p: float) -> np.ndarray:
    ycbcr = _to_ycbcr(bgr)
    ycbcr[:, :, 1:] = 0.5 + (ycbcr[:, :, 1:] - 0.5) * p
    # No clip before the cast (the original has none); values stay within ~1e-3 of 0..255 in practice.
    return _from_ycbcr(ycbcr).astype(np.uint8)


def color_contrast(bgr: np.ndarray, p: float) -> np.ndarray:
    return (bgr.astype(np.float32) * p).astype(np.uint8)  # truncation, not rounding


def resolution_loss(bgr: np.ndarray, factor: int) -> np.ndarray:
    """DeeperForensics calls this 'JPEG compression', but it is cv2.resize (bilinear) down by an integer
    factor (floor of the size) and back up."""
    h, w = bgr.shape[:2]
    small = cv2.resize(bgr, (w // factor, h // factor))
    return cv2.resize(small, (w, h))


def gaussian_noise_color(bgr: np.ndarray, var: float, noise: Noise) -> np.ndarray:
    ycbcr = _to_ycbcr(bgr) / 255
    # float32 + float64 noise promotes to float64, as in the validator; the cast back happens in _from_ycbcr
    b = (ycbcr + math.sqrt(var) * noise(ycbcr.shape)) * 255
    return np.clip(_from_ycbcr(b), 0, 255).astype(np.uint8)


def gaussian_blur(bgr: np.ndarray, k: int) -> np.ndarray:
    return cv2.GaussianBlur(bgr, (k, k), k * 1.0 / 6)


def distort(bgr: np.ndarray, code: str, strength: int, noise: Noise | None = None) -> np.ndarray:
    """One distortion at strength 1..5 on a uint8 BGR image (strength 0 means the caller skips it)."""
    p = param(code, strength)
    bgr = np.ascontiguousarray(bgr)
    if code == "CS":
        return color_saturation(bgr, p)
    if code == "CC":
        return color_contrast(bgr, p)
    if code == "JPEG":
        return resolution_loss(bgr, int(p))
    if code == "GNC":
        if noise is None:
            raise ValueError("GNC needs a noise source (shape -> standard normal samples)")
        return gaussian_noise_color(bgr, p, noise)
    return gaussian_blur(bgr, int(p))


# ---- the wire -----------------------------------------------------------------------------------------
def jpeg_bytes(img: Image.Image) -> bytes:
    """`image.save(buf, format="JPEG")` with PIL's defaults (quality 75, 4:2:0), as prepare_image_synapse
    (and as the cache writer, which re-saves a dataset JPEG with the same defaults)."""
    buf = BytesIO()
    img.save(buf, format="JPEG")
    return buf.getvalue()
