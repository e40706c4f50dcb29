"""`SynthSample`: a synthetic image with the per-pixel mask of the roadwork that was pasted into it.

Synthesis knows every pixel it placed, so each synthetic image carries its truth map: `mask` is
uint8 HxW (the image's size), the visible coverage of roadwork objects in 0..255 (anti-aliased
edges are partial; an object hidden behind a later-pasted hard negative is removed). Hard
negatives, shadows, lights and weather are never in the mask. Written to disk, the mask of
`DIR/images/NAME.jpg` is `DIR/masks/NAME.png` (`mask_path`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


@dataclass
class SynthSample:
    image: np.ndarray  # uint8 HxWx3 RGB
    mask: np.ndarray | None  # uint8 HxW roadwork coverage; None = no pixel truth (a real image passed through)
    label: int  # 1 = roadwork was pasted and is visible, 0 otherwise
    meta: dict[str, Any] = field(default_factory=dict)  # kinds, objects (kind, box, depth, height), effects

    def pil(self) -> Image.Image:
        return Image.fromarray(self.image)


def mask_path(image_path: str | Path) -> Path:
    """Where the writer puts the mask of a synthetic image: `.../images/x.jpg` -> `.../masks/x.png`."""
    p = Path(image_path)
    return p.parent.parent / "masks" / (p.stem + ".png")


def load_mask(image_path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray | None:
    """The mask written beside a synthetic image (uint8 HxW), resized to `size` = (W, H) if given;
    None when the image has none (real images)."""
    p = mask_path(image_path)
    if not p.is_file():
        return None
    m = Image.open(p).convert("L")
    if size is not None and m.size != tuple(size):
        m = m.resize(tuple(size), Image.BILINEAR)
    return np.asarray(m)
