"""Real traffic cones cut out of photos: `objects/` (photos + YOLO boxes) -> RGBA cut-outs.

A box alone pastes a rectangle of background, which teaches the model "a rectangle of other
texture" rather than "a cone"; so each box is cut with GrabCut seeded by the box and a colour prior,
and the result is tidied into a convex, cone-like silhouette. Sloppy boxes (tiny, wrong aspect,
overlapping other cones, little cone colour) are dropped. Everything else (barrels, barricades,
signs, ...) and the hard negatives are drawn on the fly (`roadwork.synth.kinds`), so the bank never
needs frames of the roadwork clips: cutting objects from those would leak the ROADWork camera look
into cross-source experiments.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from roadwork.synth.kinds import Cutout

BOX_COLUMNS = ("image", "x_center", "y_center", "width", "height")
CUTOUT_HEIGHT = 128  # cut-outs are stored this tall at most; pastes at 240-320 px rarely need more


class BankError(ValueError):
    """The objects folder or its boxes.csv cannot be used; the message names the file and line."""


# ---- cone masks -----------------------------------------------------------------------------------
def cone_colour_prior(rgb: np.ndarray) -> np.ndarray:
    """Pixels whose colour says "cone": saturated orange/red/yellow paint (bool mask)."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    h, s, v = hsv[..., 0].astype(int), hsv[..., 1].astype(int), hsv[..., 2].astype(int)
    warm = (h <= 35) | (h >= 165)  # OpenCV hue is 0..179: red wraps around
    return warm & (s >= 110) & (v >= 70)


def cone_mask(rgb: np.ndarray, box: tuple[int, int, int, int], iters: int = 4) -> np.ndarray:
    """Float alpha (0..1, full image size) of the cone inside `box` = (x0, y0, x1, y1) pixels.

    GrabCut works on a crop around the box (fast, and the box's surroundings are the background
    model); saturated cone paint in the box and dark pixels where the base should be seed the
    foreground. The result is the convex hull of the pieces that survive, which is what an upright
    cone with its base looks like.
    """
    H, W = rgb.shape[:2]
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    px, py = max(4, bw // 5), max(4, bh // 8)
    cx0, cy0, cx1, cy1 = max(0, x0 - px), max(0, y0 - py), min(W, x1 + px), min(H, y1 + py)
    crop = np.ascontiguousarray(rgb[cy0:cy1, cx0:cx1])
    bx0, by0, bx1, by1 = x0 - cx0, y0 - cy0, x1 - cx0, y1 - cy0

    mask = np.full(crop.shape[:2], cv2.GC_BGD, np.uint8)
    mask[by0:by1, bx0:bx1] = cv2.GC_PR_BGD
    prior = cone_colour_prior(crop)
    inbox = np.zeros_like(prior)
    inbox[by0:by1, bx0:bx1] = True
    mask[prior & inbox] = cv2.GC_PR_FGD
    # the cone's axis: a thin central strip of the box is almost surely cone
    ax0, ax1 = bx0 + int(bw * 0.42), bx0 + int(bw * 0.58) + 1
    ay0, ay1 = by0 + int(bh * 0.25), by0 + int(bh * 0.85)
    mask[ay0:ay1, ax0:ax1] = np.where(prior[ay0:ay1, ax0:ax1], cv2.GC_FGD, cv2.GC_PR_FGD)
    # the rubber base: dark pixels in the bottom band
    base = np.zeros_like(prior)
    base[by0 + int(bh * 0.85):by1, bx0 + bw // 10:bx1 - bw // 10] = True
    dark = cv2.cvtColor(crop, cv2.COLOR_RGB2HSV)[..., 2] < 70
    mask[base & dark] = cv2.GC_PR_FGD
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut's k-means draws from OpenCV's global RNG: pin it for reproducibility
    try:
        cv2.grabCut(cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), mask, None, bgd, fgd, iters, cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # degenerate crops (one colour): fall back to the colour prior
        mask = np.where(prior & inbox, cv2.GC_FGD, cv2.GC_BGD).astype(np.uint8)
    fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    fg[~inbox] = 0
    k = max(1, min(bw, bh) // 25)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
    fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, kernel)
    fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, kernel)

    # Stripes split a cone into pieces, and GrabCut cannot tell white stripes from a white backdrop:
    # so the body is the hull of the *painted* foreground pieces lying mostly inside a cone-shaped
    # prior (narrow at the top of the box, full width at the bottom), plus dark pieces of the base.
    shape = np.zeros_like(fg)
    cx = (bx0 + bx1) / 2
    cv2.fillConvexPoly(shape, np.int32([[cx - bw * 0.12, by0], [cx + bw * 0.12, by0], [bx1, by1], [bx0, by1]]), 1)
    pieces = (fg.astype(bool) & (prior | (base & dark))).astype(np.uint8)
    pieces = cv2.morphologyEx(pieces, cv2.MORPH_CLOSE, kernel)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(pieces, connectivity=8)
    area = stats[:, cv2.CC_STAT_AREA].astype(np.float64)
    inside = np.bincount(labels.ravel(), weights=shape.ravel(), minlength=n) / np.maximum(area, 1)
    keep = [i for i in range(1, n) if area[i] >= 0.01 * bw * bh and inside[i] >= 0.6]
    out = np.zeros((H, W), np.float32)
    if not keep:
        return out
    # body and base get a hull each: one hull over both would fill the gap between the cone's
    # sides and the corners of its wider base with backdrop
    # with their bottom and top rows bridged by a third hull (the unpainted foot of the body)
    ys, xs = np.nonzero(np.isin(labels, keep))
    split = by0 + int(bh * 0.85)
    body, base_ = ys < split, ys >= split
    parts = [body, base_]
    if body.any() and base_.any():
        parts.append((body & (ys >= ys[body].max() - 1)) | (base_ & (ys <= ys[base_].min() + 1)))
    hull = np.zeros_like(fg)
    for part in parts:
        if part.sum() >= 3:
            cv2.fillConvexPoly(hull, cv2.convexHull(np.column_stack([xs[part], ys[part]]).astype(np.int32)), 1)
    out[cy0:cy1, cx0:cx1] = hull.astype(np.float32)
    return out


@dataclass
class BoxFilter:
    """What makes a box worth cutting. Cones stand upright: height 1.1-4x width."""

    min_height_px: int = 48
    min_aspect: float = 1.1
    max_aspect: float = 4.0
    max_overlap: float = 0.3  # fraction of the box covered by other boxes (occluded/touching cones)
    min_fill: float = 0.25  # mask area / box area: a hull much smaller than the box is a miss
    max_fill: float = 0.85  # ... and one filling the box is background
    min_paint: float = 0.25  # cone-coloured fraction of the mask


def read_boxes(objects_dir: Path) -> dict[str, list[tuple[float, float, float, float]]]:
    """`boxes.csv` -> {image path relative to objects_dir: [(xc, yc, w, h) fractions]}."""
    path = objects_dir / "boxes.csv"
    if not path.exists():
        raise BankError(f"{path}: not found (expected columns {', '.join(BOX_COLUMNS)})")
    out: dict[str, list[tuple[float, float, float, float]]] = {}
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in BOX_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise BankError(f"{path}: line 1: missing column(s) {', '.join(missing)}")
        for row in reader:
            try:
                box = tuple(float(row[c]) for c in BOX_COLUMNS[1:])
            except (TypeError, ValueError):
                raise BankError(f"{path}: line {reader.line_num}: box values must be numbers") from None
            out.setdefault(row["image"], []).append(box)  # type: ignore[arg-type]
    return out


def _overlap(i: int, boxes: list[tuple[int, int, int, int]]) -> float:
    x0, y0, x1, y1 = boxes[i]
    cover = np.zeros((y1 - y0, x1 - x0), bool)
    for j, (a0, b0, a1, b1) in enumerate(boxes):
        if j != i:
            cover[max(b0, y0) - y0:max(0, min(b1, y1) - y0), max(a0, x0) - x0:max(0, min(a1, x1) - x0)] = True
    return float(cover.mean()) if cover.size else 1.0


def cut_cones(objects_dir: str | Path, limit: int | None = None, flt: BoxFilter | None = None,
              progress=None) -> tuple[list[Cutout], dict[str, int]]:
    """Cut every usable cone out of `objects_dir`; returns the cut-outs and counts of what was dropped.

    `limit` caps the number of photos (tests use a handful); `progress(n_done)` is called per photo.
    """
    objects_dir = Path(objects_dir)
    flt = flt or BoxFilter()
    stats = {"boxes": 0, "kept": 0, "small": 0, "aspect": 0, "edge": 0, "overlap": 0, "mask": 0, "unreadable": 0}
    cutouts: list[Cutout] = []
    for n, (rel, fboxes) in enumerate(sorted(read_boxes(objects_dir).items())[:limit]):
        stats["boxes"] += len(fboxes)
        try:
            rgb = np.asarray(Image.open(objects_dir / rel).convert("RGB"))
        except (OSError, ValueError):
            stats["unreadable"] += len(fboxes)
            continue
        H, W = rgb.shape[:2]
        boxes = [(max(0, round((xc - w / 2) * W)), max(0, round((yc - h / 2) * H)),
                  min(W, round((xc + w / 2) * W)), min(H, round((yc + h / 2) * H))) for xc, yc, w, h in fboxes]
        for i, (x0, y0, x1, y1) in enumerate(boxes):
            bw, bh = x1 - x0, y1 - y0
            if bh < flt.min_height_px or bw < 8:
                stats["small"] += 1
            elif not flt.min_aspect <= bh / bw <= flt.max_aspect:
                stats["aspect"] += 1
            elif min(x0, y0) <= 1 or x1 >= W - 1 or y1 >= H - 1:  # cut off by the photo's edge
                stats["edge"] += 1
            elif _overlap(i, boxes) > flt.max_overlap:
                stats["overlap"] += 1
            else:
                cut = _cut_one(rgb, (x0, y0, x1, y1), flt, f"{rel}#{i}")
                stats["mask" if cut is None else "kept"] += 1
                if cut is not None:
                    cutouts.append(cut)
        if progress:
            progress(n + 1)
    return cutouts, stats


def _cut_one(rgb: np.ndarray, box: tuple[int, int, int, int], flt: BoxFilter, origin: str) -> Cutout | None:
    x0, y0, x1, y1 = box
    # GrabCut time grows with pixels: work at most ~200 px tall around the box
    scale = min(1.0, 200 / (y1 - y0))
    if scale < 1:
        rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        x0, y0, x1, y1 = (round(v * scale) for v in box)
    alpha = cone_mask(rgb, (x0, y0, x1, y1))
    sub = alpha[y0:y1, x0:x1] > 0.5
    fill = float(sub.mean())
    paint = float(cone_colour_prior(rgb[y0:y1, x0:x1])[sub].mean()) if sub.any() else 0.0
    if not (flt.min_fill <= fill <= flt.max_fill and paint >= flt.min_paint):
        return None
    rows, cols = np.nonzero(alpha > 0.5)
    if rows.max() - rows.min() < 0.7 * (y1 - y0):  # a cone spans its box top to bottom
        return None
    widths = (alpha[rows.min():rows.max() + 1] > 0.5).sum(axis=1)
    if widths[:max(1, len(widths) // 5)].mean() > 0.75 * widths.max():  # no taper: not a cone
        return None
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    rgba = np.dstack([rgb[r0:r1, c0:c1], (alpha[r0:r1, c0:c1] * 255).astype(np.uint8)])
    if rgba.shape[0] > CUTOUT_HEIGHT:
        f = CUTOUT_HEIGHT / rgba.shape[0]
        rgba = cv2.resize(rgba, (max(1, round(rgba.shape[1] * f)), CUTOUT_HEIGHT), interpolation=cv2.INTER_AREA)
    return Cutout(rgba, "cone", origin)
