"""Encoded images to model input on the device: batched nvjpeg decode, then the processor's resize,
crop and normalization as torch ops (`PreprocessSpec.to_torch`), one call per distinct input size.

JPEGs are decoded together by `torchvision.io.decode_jpeg` (a list in, one nvjpeg batch on CUDA;
libjpeg-turbo on a CPU device, which is how the CPU tests run this module). If the batch call fails,
the JPEGs are decoded one by one so one bad file cannot cost the others; whatever nvjpeg cannot
decode, every other format, and PIL images go through the CPU decoder (`Encoded.image`) one by one.
Data that no decoder reads (corrupt behind a valid header) comes back flagged in `broken`.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import TYPE_CHECKING, Sequence

import numpy as np

from roadwork.fast.encoded import Encoded, ImageInput, as_image
from roadwork.fast.preprocess import PreprocessSpec

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


class DevicePreprocessor:
    """`__call__(items) -> (pixels (N, 3, H, W) in `dtype` on `device`, broken (N,) bool)`."""

    def __init__(self, spec: PreprocessSpec, device: "torch.device", dtype: "torch.dtype"):
        if not spec.supported or spec.out_size is None:
            raise ValueError("the device preprocessor needs a fixed-size resize/crop/normalize processor")
        self.spec, self.device, self.dtype = spec, device, dtype
        self.stats = {"nvjpeg": 0, "cpu": 0, "broken": 0}  # images per decoder, for benchmarks and tests

    def decode(self, items: Sequence[ImageInput]) -> tuple[list["torch.Tensor"], np.ndarray]:
        """uint8 CHW RGB tensors on the device, one per item, and which items were corrupt."""
        import warnings

        import torch

        with warnings.catch_warnings():  # torchvision >= 0.29 points to torchcodec; nvjpeg here is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            from torchvision.io import ImageReadMode, decode_jpeg

        out: list[torch.Tensor | None] = [None] * len(items)
        broken = np.zeros(len(items), dtype=bool)
        jpegs = [i for i, it in enumerate(items) if isinstance(it, Encoded) and it.jpeg]
        if jpegs:
            data = [torch.frombuffer(bytearray(items[i].data), dtype=torch.uint8) for i in jpegs]
            try:
                decoded = decode_jpeg(data, mode=ImageReadMode.RGB, device=self.device)
            except RuntimeError as e:  # one bad file fails the batch call: find it, keep the others
                log.info("batched JPEG decode failed (%s); decoding %d one by one", e, len(jpegs))
                decoded = []
                for d in data:
                    try:
                        decoded.append(decode_jpeg(d, mode=ImageReadMode.RGB, device=self.device))
                    except RuntimeError:
                        decoded.append(None)
            for i, t in zip(jpegs, decoded):
                if t is not None and tuple(t.shape[-2:]) == (items[i].height, items[i].width):
                    out[i] = t
                    self.stats["nvjpeg"] += 1
        for i, it in enumerate(items):
            if out[i] is not None:
                continue
            im = as_image(it)  # PIL input, another format, or what nvjpeg refused: the CPU decoder
            broken[i] = bool(getattr(it, "broken", False))
            self.stats["broken" if broken[i] else "cpu"] += 1
            out[i] = torch.from_numpy(np.array(im)).permute(2, 0, 1).to(self.device, non_blocking=True)
        return out, broken  # type: ignore[return-value]

    def __call__(self, items: Sequence[ImageInput]) -> tuple["torch.Tensor", np.ndarray]:
        import torch

        frames, broken = self.decode(items)
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, f in enumerate(frames):
            groups[tuple(f.shape[-2:])].append(i)
        if len(groups) == 1:  # the usual batch: one size (the validator's 224x224 or one camera's frames)
            return self.spec.to_torch(torch.stack(frames), self.dtype), broken
        h, w = self.spec.out_size  # type: ignore[misc]
        x = torch.empty((len(items), 3, h, w), device=self.device, dtype=self.dtype)
        for idx in groups.values():  # one resize + normalize per input size, not per image
            batch = torch.stack([frames[i] for i in idx])
            x[torch.as_tensor(idx, device=self.device)] = self.spec.to_torch(batch, self.dtype)
        return x, broken


__all__ = ["DevicePreprocessor"]
