"""Colour/stripe-cue tier: features on drawn scenes, fitting, json round trip, the tier in a cascade."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from roadwork.cli import app
from roadwork.config import REPO_ROOT, TierConfig
from roadwork.data import open_source
from roadwork.engine import Engine
from roadwork.metrics import roc_auc
from roadwork.tiers import create_tier
from roadwork.tiers.color import (FEATURES, ColorModel, ColorTier, color_features, color_features_batch,
                                  resolve_model_path)
from roadwork.train.color import fit_color_model, fit_color_tier, record_features

SIZE = 96  # small working size keeps the tests fast; the features are defined at any size
F = {name: i for i, name in enumerate(FEATURES)}


def scene(rng: np.random.Generator, cones: int = 0, decoys: int = 0, h: int = 96, w: int = 128) -> Image.Image:
    """A street-like frame: sky, grey road, noise; `cones` orange cones with a white collar, and
    `decoys` non-work-zone blobs (blue, green, grey cars and signs)."""
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2] = rng.integers(120, 200, 3)  # sky / facades, any tint
    img[h // 2:] = rng.integers(70, 130)  # grey asphalt
    for _ in range(decoys):
        x, y = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 16))
        color = [(40, 60, 200), (40, 150, 60), (90, 90, 90), (200, 200, 210)][int(rng.integers(4))]
        cv2.rectangle(img, (x, y), (x + int(rng.integers(8, 20)), y + int(rng.integers(6, 16))), color, -1)
    for _ in range(cones):
        ch = int(rng.integers(14, 30))
        cx, base = int(rng.integers(10, w - 10)), int(rng.integers(h // 2 + ch, h))
        half = ch // 3
        tri = np.array([[cx, base - ch], [cx - half, base], [cx + half, base]], np.int32)
        cv2.fillPoly(img, [tri], (250, 110, 10))
        band = base - ch // 2
        cv2.line(img, (cx - half // 2, band), (cx + half // 2, band), (245, 245, 245), max(1, ch // 8))
    noise = rng.normal(0, 4, img.shape)
    return Image.fromarray(np.clip(img + noise, 0, 255).astype(np.uint8))


def synthetic_set(n: int, seed: int) -> tuple[list[Image.Image], np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.array([i % 2 for i in range(n)])
    imgs = [scene(rng, cones=int(rng.integers(1, 4)) if label else 0, decoys=int(rng.integers(0, 3))) for label in y]
    return imgs, y


def test_orange_cone_scores_above_grey_road():
    rng = np.random.default_rng(0)
    road = Image.new("RGB", (128, 96), (100, 100, 100))
    cone = scene(rng, cones=2)
    fr, fc = color_features(road, SIZE), color_features(cone, SIZE)
    assert fr.shape == fc.shape == (len(FEATURES),) and np.all(np.isfinite(fc)) and np.all(np.isfinite(fr))
    assert fc[F["orange"]] > fr[F["orange"]] + 0.1
    assert fc[F["orange_low"]] > fc[F["orange_high"]]  # the cones stand on the road, below the horizon
    assert fr[F["orange"]] == 0.0 and fr[F["blobs"]] == 0.0
    assert fc[F["cone_blobs"]] > 0  # taller than wide, wider at the base
    assert fc[F["stripe_cols"]] > 0  # white collar between orange bands, along the columns


def test_desaturated_challenge_keeps_the_orange():
    """The validator's CS distortion scales all chroma toward grey (x0.3-0.4 at levels 2-3): fixed HSV
    thresholds then lose the cone; the normalisation (chroma stretched to a typical level) keeps it.
    A realistic frame: coloured sky, grey road, one cone well under 1% of the pixels."""
    from roadwork.challenge.ops import color_saturation
    from roadwork.tiers.color import _ORANGE, _mask

    img = np.zeros((96, 128, 3), np.uint8)
    img[:48], img[48:] = (110, 150, 220), (100, 100, 100)
    cv2.fillPoly(img, [np.array([[60, 69], [55, 85], [65, 85]], np.int32)], (225, 115, 45))  # a sunlit cone
    clean = color_features(Image.fromarray(img), SIZE)
    for p in (0.4, 0.3):
        faded = np.ascontiguousarray(color_saturation(np.ascontiguousarray(img[:, :, ::-1]), p)[:, :, ::-1])
        raw = _mask(cv2.cvtColor(faded, cv2.COLOR_RGB2HSV), _ORANGE).mean()
        f = color_features(Image.fromarray(faded), SIZE)
        assert f[F["orange"]] > 0.8 * clean[F["orange"]] > 0
        assert raw == 0.0  # fixed thresholds alone lose the cone
        assert f[F["cone_blobs"]] == clean[F["cone_blobs"]] > 0


def test_fit_separates_synthetic_classes_on_fresh_images():
    imgs, y = synthetic_set(60, seed=0)
    model = fit_color_model(color_features_batch(imgs, SIZE), y, size=SIZE)
    test_imgs, ty = synthetic_set(40, seed=1)
    p = model.predict_proba(color_features_batch(test_imgs, SIZE))
    assert roc_auc(ty, p) > 0.9
    assert p.dtype == np.float64 and np.all((p >= 0) & (p <= 1))


def test_fit_refuses_one_class_and_wrong_shapes():
    imgs, y = synthetic_set(6, seed=0)
    x = color_features_batch(imgs, SIZE)
    with pytest.raises(ValueError, match="both classes"):
        fit_color_model(x, np.zeros(6, int))
    with pytest.raises(ValueError, match="expected"):
        fit_color_model(x[:, :5], y)


def test_json_round_trip_gives_identical_probabilities(tmp_path):
    imgs, y = synthetic_set(30, seed=2)
    x = color_features_batch(imgs, SIZE)
    model = fit_color_model(x, y, size=SIZE)
    path = model.save(tmp_path / "color.json")
    d = json.loads(path.read_text())
    assert d["features"] == FEATURES and d["version"] == model.version and d["size"] == SIZE
    again = ColorModel.load(path)
    np.testing.assert_array_equal(again.predict_proba(x), model.predict_proba(x))
    tier = ColorTier(path)
    np.testing.assert_array_equal(tier.predict(imgs), model.predict_proba(x))
    # the folded calibrator equals the standardised model
    z = (x - np.array(model.mean)) / np.array(model.scale)
    direct = 1 / (1 + np.exp(-(z @ np.array(model.coef) + model.intercept)))
    np.testing.assert_allclose(tier.predict(imgs), direct, rtol=1e-10, atol=1e-12)


def test_stale_or_missing_model_json_is_a_clear_error(tmp_path):
    imgs, y = synthetic_set(20, seed=3)
    d = fit_color_model(color_features_batch(imgs, SIZE), y).to_dict()
    stale = tmp_path / "stale.json"
    stale.write_text(json.dumps({**d, "version": d["version"] + 1}))
    with pytest.raises(ValueError, match="stale.json.*refit"):
        ColorModel.load(stale)
    with pytest.raises(ValueError, match="color tier 'c'.*nothing.json"):
        ColorTier(tmp_path / "nothing.json", name="c")


def test_shipped_model_loads_from_any_working_directory(monkeypatch, tmp_path):
    """configs name `models/color/color.json` relative to the repository; the shipped json must
    match this code's features (a feature change without a refit fails here)."""
    monkeypatch.chdir(tmp_path)
    assert resolve_model_path("models/color/color.json") == REPO_ROOT / "models" / "color" / "color.json"
    tier = create_tier(TierConfig(name="color", kind="color", model="models/color/color.json"))
    assert tier.model.features == FEATURES and tier.cost > 0
    p = tier.predict([scene(np.random.default_rng(0), cones=3), Image.new("RGB", (224, 224), (90, 90, 90))])
    assert p.shape == (2,) and np.all((p >= 0) & (p <= 1))


def _write_manifest(root: Path, n: int, seed: int) -> Path:
    imgs, y = synthetic_set(n, seed)
    rows = []
    for i, (img, label) in enumerate(zip(imgs, y)):
        img.save(root / f"{i:03d}.png")
        rows.append({"path": f"{i:03d}.png", "label": int(label), "group": f"g{i // 4}", "source": "synthetic"})
    with (root / "manifest.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "label", "group", "source"])
        w.writeheader()
        w.writerows(rows)
    return root / "manifest.csv"


def test_record_features_are_per_image_challenges_and_cached(tmp_path):
    recs = open_source(_write_manifest(tmp_path, 8, seed=4)).records()
    cache = tmp_path / "feat.npz"
    x, y, errors, ms = record_features(recs, challenge=True, seed=5, size=SIZE, cache=cache)
    assert x.shape == (8, len(FEATURES)) and not errors and ms > 0 and cache.is_file()
    assert y.tolist() == [r.label for r in recs]
    # same challenge per image whatever the order; a second run reads every row from the cache
    xr, _, _, ms_cached = record_features(recs[::-1], challenge=True, seed=5, size=SIZE, cache=cache)
    np.testing.assert_array_equal(xr[::-1], x)
    assert np.isnan(ms_cached)
    fresh = record_features(recs[::-1], challenge=True, seed=5, size=SIZE)[0]
    np.testing.assert_array_equal(fresh[::-1], x)
    other = record_features(recs, challenge=True, seed=6, size=SIZE, protocol="2026-01")[0]
    assert not np.array_equal(other, record_features(recs, challenge=True, seed=5, size=SIZE, protocol="2026-01")[0])
    # another seed draws other challenges (2026-01's levels; the default 2026-05 draws nothing)


def test_fit_color_tier_and_cli(tmp_path):
    data = _write_manifest(tmp_path, 48, seed=6)
    recs = open_source(data).records()
    out = tmp_path / "color.json"
    res = fit_color_tier(recs[:32], out, val=recs[32:], challenge=False, size=SIZE)
    assert res["val"]["n"] == 16 and res["train"]["auc"] > 0.9 and res["val"]["auc"] > 0.8
    meta = json.loads(out.read_text())["meta"]
    assert meta["cost_ms"] > 0 and meta["val_metrics"]["n"] == 16
    r = CliRunner().invoke(app, ["fit-color", "--data", str(data), "--out", str(tmp_path / "cli.json"),
                                 "--no-challenge", "--val-fraction", "0.25"])
    assert r.exit_code == 0, r.output
    assert "val" in r.output and ColorModel.load(tmp_path / "cli.json").meta["n"] < 48
    r = CliRunner().invoke(app, ["fit-color", "--data", str(data), "--out", str(tmp_path / "x.json"),
                                 "--holdout-source", "nowhere"])
    assert r.exit_code == 2 and "nowhere" in r.output


def test_color_tier_behind_a_tiny_classifier_in_the_engine(tiny_vit_dir, tmp_path):
    imgs, y = synthetic_set(30, seed=7)
    path = fit_color_model(color_features_batch(imgs, SIZE), y, size=SIZE).save(tmp_path / "color.json")
    cfgs = [TierConfig(name="classifier", model=str(tiny_vit_dir), device="cpu", cost=1.0),
            TierConfig(name="color", kind="color", model=str(path))]
    batch, _ = synthetic_set(6, seed=8)
    direct = {c.name: create_tier(c).predict(batch) for c in cfgs}
    p0 = direct["classifier"]
    mid = np.sort(p0)[1:5]  # the 4 middle-ranked images fall inside the classifier's band
    engine = Engine([create_tier(c) for c in cfgs], bands=[(float(mid[0]), float(mid[-1])), (0.0, 1.0)])
    res = engine.predict(batch)
    escalated = [i for i, p in enumerate(p0) if mid[0] <= p <= mid[-1]]
    assert len(escalated) == 4 and sum(r.escalations == ["classifier"] for r in res) == 4
    for i, r in enumerate(res):
        if i in escalated:
            assert r.tier == "color" and r.prob == pytest.approx(direct["color"][i])
            assert set(r.per_tier) == {"classifier", "color"}
        else:
            assert r.tier == "classifier" and r.prob == pytest.approx(p0[i]) and set(r.per_tier) == {"classifier"}


def test_cascade_cpu_config_and_its_files_load(monkeypatch):
    """configs/cascade_cpu.yaml names its stacker relative to the repository root (run from there);
    the classifier (models/default) is not built here: tests never depend on it."""
    from roadwork.config import load_config
    from roadwork.stacker import Stacker

    monkeypatch.chdir(REPO_ROOT)
    cfg = load_config("configs/cascade_cpu.yaml")
    assert [t.kind for t in cfg.tiers] == ["classifier", "color"]
    stacker = Stacker.load(cfg.router.stacker)
    assert stacker.tiers == [t.name for t in cfg.tiers] and "classifier+color" in stacker.models
    color = create_tier(cfg.tiers[1])
    lo, hi = cfg.tiers[0].band
    assert 0 < lo < hi < 1
    # a band image gets the stacker's answer, which rises with either tier's probability
    p = color.predict([scene(np.random.default_rng(0), cones=3)])[0]
    low, high = (stacker.combine({"classifier": c, "color": p}) for c in (lo, hi))
    assert 0 < low < high < 1
    assert stacker.combine({"classifier": 0.6, "color": 0.9}) > stacker.combine({"classifier": 0.6, "color": 0.1})
