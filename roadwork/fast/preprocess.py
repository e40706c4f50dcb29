"""The classifier's image processor as a plain spec, applied without transformers.

`roadwork.tiers.classifier` preprocesses with the folder's transformers image processor (in
transformers 5 a torchvision backend: antialiased resize of uint8 CHW tensors, optional centre crop,
then one fused rescale+normalize in float32). The fast paths need the same arithmetic without that
stack: `to_numpy` (PIL + numpy, for the onnxruntime CPU tier, which must not import torch) and
`to_torch` (torchvision ops on any device, for the GPU path). The spec is read from
`preprocessor_config.json`; configurations it does not cover (padding, longest_edge limits, crop_pct)
set `supported=False` and the callers keep the transformers processor.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_RESAMPLE_NAMES = {0: "nearest", 2: "bilinear", 3: "bicubic"}  # PIL codes transformers stores
_KEYS_COVERED = {"do_resize", "size", "resample", "do_center_crop", "crop_size", "do_rescale", "rescale_factor",
                 "do_normalize", "image_mean", "image_std", "image_processor_type", "processor_class",
                 "do_convert_rgb", "default_to_square", "data_format", "input_data_format", "return_tensors",
                 "device", "disable_grouping", "do_pad", "pad_size", "backend"}


@dataclass(frozen=True)
class PreprocessSpec:
    """What the processor does: resize (to height x width, or shortest edge), centre crop, normalize."""

    height: int | None = 224  # resize to exactly height x width ...
    width: int | None = 224
    shortest_edge: int | None = None  # ... or the shorter side to this, keeping the aspect ratio
    resample: int = 2  # PIL code: 0 nearest, 2 bilinear, 3 bicubic
    crop: tuple[int, int] | None = None  # centre crop (height, width) after the resize
    rescale_factor: float | None = 1 / 255
    mean: tuple[float, float, float] | None = IMAGENET_MEAN
    std: tuple[float, float, float] | None = IMAGENET_STD
    supported: bool = True

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "PreprocessSpec":
        size = cfg.get("size") or {"height": 224, "width": 224}
        if isinstance(size, int):
            size = {"height": size, "width": size}
        supported = (set(cfg) <= _KEYS_COVERED and not cfg.get("do_pad") and "longest_edge" not in size
                     and int(cfg.get("resample", 2)) in _RESAMPLE_NAMES and cfg.get("do_resize", True)
                     and ("shortest_edge" in size or ("height" in size and "width" in size)))
        crop = None
        if cfg.get("do_center_crop"):
            cs = cfg.get("crop_size") or {}
            crop = (int(cs["height"]), int(cs["width"])) if "height" in cs else None
            supported = supported and crop is not None
        mean = tuple(cfg.get("image_mean", IMAGENET_MEAN)) if cfg.get("do_normalize", True) else None
        std = tuple(cfg.get("image_std", IMAGENET_STD)) if cfg.get("do_normalize", True) else None
        scale = float(cfg.get("rescale_factor", 1 / 255)) if cfg.get("do_rescale", True) else None
        return cls(height=size.get("height"), width=size.get("width"), shortest_edge=size.get("shortest_edge"),
                   resample=int(cfg.get("resample", 2)), crop=crop, rescale_factor=scale, mean=mean, std=std,
                   supported=bool(supported))

    @classmethod
    def from_folder(cls, folder: str | Path, image_size: int | None = None) -> "PreprocessSpec":
        """The folder's `preprocessor_config.json`; without one, the classifier tier's own fallback
        (a square resize to `image_size` with ImageNet statistics)."""
        path = Path(folder) / "preprocessor_config.json"
        if path.is_file():
            return cls.from_config(json.loads(path.read_text()))
        s = image_size or 224
        return cls(height=s, width=s)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PreprocessSpec":
        d = dict(d)
        for k in ("crop", "mean", "std"):
            if d.get(k) is not None:
                d[k] = tuple(d[k])
        return cls(**d)

    # ---- geometry -------------------------------------------------------------------------------
    def resized_size(self, h: int, w: int) -> tuple[int, int]:
        """(height, width) after the resize, as transformers computes it."""
        if self.shortest_edge is None:
            return int(self.height), int(self.width)
        s = int(self.shortest_edge)
        if w <= h:
            return int(s * h / w), s
        return s, int(s * w / h)

    @property
    def out_size(self) -> tuple[int, int] | None:
        """The fixed (height, width) of every output, or None where it depends on the input."""
        if self.crop is not None:
            return self.crop
        if self.shortest_edge is None:
            return int(self.height), int(self.width)
        return None

    def _crop_box(self, h: int, w: int) -> tuple[int, int, int, int]:
        ch, cw = self.crop
        top, left = int((h - ch) / 2.0), int((w - cw) / 2.0)
        return top, left, ch, cw

    def _affine(self) -> tuple[np.ndarray, np.ndarray]:
        """x_uint8 * a + b == the fused rescale + normalize, per channel."""
        scale = self.rescale_factor if self.rescale_factor is not None else 1.0
        mean = np.array(self.mean if self.mean is not None else (0, 0, 0), dtype=np.float64)
        std = np.array(self.std if self.std is not None else (1, 1, 1), dtype=np.float64)
        return (scale / std).astype(np.float32), (-mean / std).astype(np.float32)

    # ---- CPU: PIL + numpy (no torch) --------------------------------------------------------------
    def to_numpy(self, images: Sequence[Image.Image]) -> np.ndarray:
        """float32 (N, 3, H, W) pixel values for a batch of RGB images."""
        arrays = []
        for im in images:
            im = im if im.mode == "RGB" else im.convert("RGB")
            th, tw = self.resized_size(im.height, im.width)
            if (im.height, im.width) != (th, tw):
                im = im.resize((tw, th), resample=self.resample, reducing_gap=None)
            a = np.asarray(im)
            if self.crop is not None:
                a = _pad_to(a, *self.crop)
                top, left, ch, cw = self._crop_box(a.shape[0], a.shape[1])
                a = a[top:top + ch, left:left + cw]
            arrays.append(a)
        x = np.stack(arrays).transpose(0, 3, 1, 2).astype(np.float32)
        a, b = self._affine()
        x *= a[None, :, None, None]
        x += b[None, :, None, None]
        return np.ascontiguousarray(x)

    # ---- any torch device: torchvision ops, same order as the processor ---------------------------
    def to_torch(self, batch: "Any", dtype: "Any" = None) -> "Any":
        """uint8 (N, 3, h, w) tensor of one input size -> normalized (N, 3, H, W) on its device."""
        import torch
        from torchvision.transforms.v2 import functional as tvF

        modes = {0: tvF.InterpolationMode.NEAREST, 2: tvF.InterpolationMode.BILINEAR,
                 3: tvF.InterpolationMode.BICUBIC}
        h, w = batch.shape[-2:]
        th, tw = self.resized_size(h, w)
        if (h, w) != (th, tw):
            batch = tvF.resize(batch, [th, tw], interpolation=modes[self.resample], antialias=True)
        if self.crop is not None:
            batch = tvF.center_crop(batch, list(self.crop))
        a, b = self._affine()
        a = torch.as_tensor(a, device=batch.device).view(1, 3, 1, 1)
        b = torch.as_tensor(b, device=batch.device).view(1, 3, 1, 1)
        x = torch.addcmul(b, batch.float(), a)
        return x if dtype is None else x.to(dtype)


def _pad_to(a: np.ndarray, ch: int, cw: int) -> np.ndarray:
    """Zero-pad symmetrically up to the crop size, as the processor's centre crop does."""
    h, w = a.shape[:2]
    if h >= ch and w >= cw:
        return a
    top, left = max(ch - h, 0) // 2, max(cw - w, 0) // 2
    out = np.zeros((max(h, ch), max(w, cw), a.shape[2]), dtype=a.dtype)
    out[top:top + h, left:left + w] = a
    return out
