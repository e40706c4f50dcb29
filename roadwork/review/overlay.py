"""The model's location map drawn over a captured image, for the review page.

The seam: an engine that can say *where* it sees roadwork exposes `location_map(image)`, a 2-D
array of scores in [0, 1] at any resolution (None when it has nothing to say). Engines without it
give no overlay and the page shows the plain image. The drawing itself is `roadwork.heatmap.blend`,
the same as `roadwork predict --heatmap`.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from PIL import Image

from roadwork.heatmap import blend


def engine_overlay(engine: Any) -> Optional[Callable[[Image.Image], Optional[Image.Image]]]:
    """A drawing function for the review app, or None when the engine has no location maps."""
    locate = getattr(engine, "location_map", None)
    if not callable(locate):
        return None

    def draw(image: Image.Image) -> Optional[Image.Image]:
        heat = locate(image)
        return None if heat is None else blend(image, heat)

    return draw
