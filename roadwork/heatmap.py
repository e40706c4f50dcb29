"""Drawing a model's location map over an image: the one overlay used by `roadwork predict --heatmap`
and by the review page (`roadwork.review.overlay`).

A location map is a 2-D array of P(roadwork at this location) in [0, 1] at any resolution (a locmap
classifier's feature grid, 7x7 at 224 px); it is stretched over the image the way the classifier's
processor stretched the image into its square input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

OVERLAY_ALPHA = 0.45  # how much of the heat colour covers the photo at score 1
COLORMAP = "inferno"


def blend(image: Image.Image, heat: np.ndarray) -> Image.Image:
    """`heat` (H' x W', values in [0, 1]) resized to the image and laid over it in the 'inferno'
    colours, more opaque where the score is higher."""
    from matplotlib import colormaps

    heat = np.asarray(heat, dtype=np.float32)
    if heat.ndim != 2:
        raise ValueError(f"a location map is 2-D, got shape {heat.shape}")
    h = Image.fromarray(np.clip(np.nan_to_num(heat), 0, 1).astype(np.float32), mode="F")
    h = np.asarray(h.resize(image.size, Image.BILINEAR), dtype=np.float32)
    colour = colormaps[COLORMAP](h)[..., :3]
    base = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    a = (OVERLAY_ALPHA * h)[..., None]
    return Image.fromarray(np.uint8(np.round((base * (1 - a) + colour * a) * 255)))


def heatmap_path(out_dir: str | Path, source: str | Path, taken: set[str]) -> Path:
    """`OUT/NAME.png` for an input image; `NAME-2.png`, ... when several inputs share a name."""
    stem = Path(source).stem or "image"
    name, k = stem, 1
    while name in taken:
        k += 1
        name = f"{stem}-{k}"
    taken.add(name)
    return Path(out_dir) / f"{name}.png"
