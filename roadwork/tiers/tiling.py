"""Tiles of a large image: the geometry (pure functions) and max-pooling a tier's scores over views.

Since May 2026 the validator sends the native-resolution frame, so a distant cone that letterboxing
shrinks to 3 px is still ~15 px in one tile of a 2x2 grid. An image larger than the model input is
scored as its letterboxed whole plus `grid x grid` overlapping tiles (each letterboxed too, keeping
its aspect), and the image's P(roadwork) is the max over those views: roadwork in any one view is
roadwork in the frame, and max needs no calibration of its own (a locmap model's map pooling would,
so it is left to the model: each view's probability already pools its own map).

Imports nothing heavy: `roadwork.tiers.kinds` takes its default from here.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

DEFAULT_OVERLAP = 0.25  # share of a tile's side shared with its neighbour: an object on a seam is whole in one


def tile_boxes(size: tuple[int, int], grid: int, overlap: float = DEFAULT_OVERLAP) -> list[tuple[int, int, int, int]]:
    """(left, top, right, bottom) boxes of a `grid` x `grid` tiling of an image of `size` (w, h), row
    by row; neighbours share `overlap` of a tile's side, the outer tiles touch the image's edges."""
    if grid < 1 or not 0 <= overlap < 1:
        raise ValueError(f"tiles: grid {grid} must be >= 1 and overlap {overlap} in [0, 1)")
    w, h = size

    def spans(n: int) -> list[tuple[int, int]]:
        side = n / (grid - (grid - 1) * overlap)  # grid tiles, each sharing `overlap` with the next, span n
        step = side * (1 - overlap)
        return [(int(round(i * step)), n if i == grid - 1 else int(round(i * step + side))) for i in range(grid)]

    return [(x0, y0, x1, y1) for (y0, y1) in spans(h) for (x0, x1) in spans(w)]


def views(img: Any, input_size: int, grid: int, overlap: float = DEFAULT_OVERLAP) -> list[Any]:
    """The views of a PIL image: the letterboxed whole, then its tiles (letterboxed) when the image is
    larger than `input_size` on a side; an image that small is its only view."""
    from roadwork.challenge.ops import letterbox

    if grid < 1 or max(img.size) <= input_size:
        return [img]
    return [letterbox(img)] + [letterbox(img.crop(box)) for box in tile_boxes(img.size, grid, overlap)]


def pooled(predict: Callable[[list[Any]], Sequence[float]], images: list[Any], input_size: int, grid: int,
           overlap: float = DEFAULT_OVERLAP) -> tuple[list[float], list[list[float]]]:
    """P(roadwork) per image as the max over its views' scores (one `predict` call for all views),
    and every image's per-view scores (whole first, then the tiles row by row)."""
    per = [views(img, input_size, grid, overlap) for img in images]
    flat = list(predict([v for vs in per for v in vs]))
    out, at = [], 0
    for vs in per:
        out.append(flat[at:at + len(vs)])
        at += len(vs)
    return [max(s) for s in out], out
