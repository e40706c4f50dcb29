"""Tiles of a large image (roadwork.tiers.tiling) and the classifier tier's max over whole + tiles."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from roadwork.tiers.tiling import pooled, tile_boxes, views


@pytest.mark.parametrize("size,grid,overlap", [((1920, 1080), 2, 0.25), ((640, 480), 3, 0.5), ((101, 37), 4, 0.0),
                                               ((500, 300), 1, 0.3)])
def test_tile_boxes_cover_the_image_in_bounds_with_the_overlap_asked(size, grid, overlap):
    w, h = size
    boxes = tile_boxes(size, grid, overlap)
    assert len(boxes) == grid * grid
    covered = np.zeros((h, w), bool)
    for x0, y0, x1, y1 in boxes:
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    row = boxes[:grid]  # the first row, left to right
    assert row[0][0] == 0 and row[-1][2] == w
    for (a0, _, a1, _), (b0, _, b1, _) in zip(row, row[1:]):
        shared = (a1 - b0) / (a1 - a0)
        assert shared == pytest.approx(overlap, abs=2 / (a1 - a0))


def test_bad_grid_or_overlap_is_one_clear_error():
    with pytest.raises(ValueError, match="grid 0"):
        tile_boxes((10, 10), 0)
    with pytest.raises(ValueError, match="overlap 1"):
        tile_boxes((10, 10), 2, 1.0)


def test_small_images_are_their_only_view_and_the_max_pools_the_views():
    small, large = Image.new("RGB", (32, 20)), Image.new("RGB", (400, 200))
    assert views(small, 224, 2) == [small]
    assert len(views(large, 224, 2)) == 5 and all(v.size == (224, 224) for v in views(large, 224, 2))
    scores = iter([0.1, 0.2, 0.9, 0.3, 0.4, 0.7])  # large: whole + 4 tiles, then small

    probs, per = pooled(lambda vs: [next(scores) for _ in vs], [large, small], 224, 2)
    assert probs == [0.9, 0.7] and per == [[0.1, 0.2, 0.9, 0.3, 0.4], [0.7]]


def test_classifier_tier_scores_a_large_image_as_the_max_of_whole_and_tiles(tiny_vit_dir):
    from roadwork.challenge.ops import letterbox
    from roadwork.tiers.classifier import ClassifierTier

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (64, 96, 3)).astype(np.uint8))
    plain = ClassifierTier(str(tiny_vit_dir), device="cpu")
    tiled = ClassifierTier(str(tiny_vit_dir), device="cpu", tiles=2, tile_overlap=0.25)
    p = tiled.predict_batch([img])
    (per,) = tiled.last_views
    expected = plain.predict_batch([letterbox(img)] + [letterbox(img.crop(b)) for b in tile_boxes(img.size, 2, 0.25)])
    np.testing.assert_allclose(per, expected, atol=1e-6)
    assert p[0] == pytest.approx(max(expected), abs=1e-6)
    assert len(set(np.round(expected, 6))) > 1  # the views differ, so the max is a real choice


def test_tiles_reach_the_tier_from_a_config(tiny_vit_dir):
    from roadwork.config import TierConfig
    from roadwork.tiers import create_tier

    cfg = TierConfig(name="c", kind="classifier", model=str(tiny_vit_dir), device="cpu",
                     options={"tiles": 3, "tile_overlap": 0.1})
    tier = create_tier(cfg)
    assert (tier.tiles, tier.tile_overlap) == (3, 0.1)
    with pytest.raises(Exception, match="tile_overlap"):
        create_tier(TierConfig(name="c", kind="classifier", model=str(tiny_vit_dir), device="cpu",
                               options={"tiles": 2, "tile_overlap": 1.5}))
