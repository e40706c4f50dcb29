"""The model's location map drawn over a captured image, for the review page.

The seam: an engine that can say *where* it sees roadwork exposes `location_map(image)`, a 2-D
array of scores in [0, 1] at any resolution (None when it has nothing to say). Engines without it
give no overlay and the page shows the plain image.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
from PIL import Image

OVERLAY_ALPHA = 0.45  # how much of the heat colour covers the photo at score 1


def engine_overlay(engine: Any) -> Optional[Callable[[Image.Image], Optional[Image.Image]]]:
    """A drawing function for the review app, or None when the engine has no location maps."""
    locate = getattr(engine, "location_map", None)
    if not callable(locate):
        return None

    def draw(image: Image.Image) -> Optional[Image.Image]:
        heat = locate(image)
        return None if heat is None else blend(image, np.asarray(heat, dtype=np.float32))

    return draw


def blend(image: Image.Image, heat: np.ndarray) -> Image.Image:
    """`heat` (H' x W', values in [0, 1]) resized to the image and laid over it in the 'inferno'
    colours, more opaque where the score is higher."""
    from matplotlib import colormaps

    if heat.ndim != 2:
        raise ValueError(f"a location map is 2-D, got shape {heat.shape}")
    h = Image.fromarray(np.clip(np.nan_to_num(heat), 0, 1).astype(np.float32), mode="F")
    h = np.asarray(h.resize(image.size, Image.BILINEAR), dtype=np.float32)
    colour = colormaps["inferno"](h)[..., :3]
    base = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    a = (OVERLAY_ALPHA * h)[..., None]
    return Image.fromarray(np.uint8(np.round((base * (1 - a) + colour * a) * 255)))
