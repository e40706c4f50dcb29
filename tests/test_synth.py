"""Copy-paste synthesis: object bank, procedural objects, placement, reproducibility, manifest, CLI."""

from __future__ import annotations

import csv
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import SHARED, requires_shared_data
from roadwork.synth import kinds
from roadwork.synth.bank import ObjectBank
from roadwork.synth.compose import compose, compose_sample
from roadwork.synth.config import SynthConfig
from roadwork.synth.cone_cutouts import BankError, cone_mask, cut_cones, read_boxes
from roadwork.synth.ground import estimate_ground
from roadwork.synth.sample import load_mask, mask_path
from roadwork.synth.transform import CopyPaste
from roadwork.synth.writer import fit_max_side, scene_weights, synthesize

OBJECTS = SHARED / "data" / "objects"


def street(seed: int, w: int = 96, h: int = 64) -> np.ndarray:
    """A toy forward-facing street: sky, green verges, a grey road trapezoid from the horizon (40 %)."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.float32)
    hz = int(h * 0.4)
    img[:hz] = (0.55, 0.7, 0.95)
    img[hz:] = (0.25, 0.45, 0.2)
    for y in range(hz, h):
        half = (y - hz) / (h - hz) * w * 0.6 + 2
        img[y, max(0, int(w / 2 - half)):int(w / 2 + half)] = (0.42, 0.42, 0.43)
    img += rng.normal(0, 0.015, img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


@pytest.fixture
def scenes(tmp_path: Path) -> tuple[Path, list[Path]]:
    """Eight toy street scenes in two sources, a manifest with a label-1 row that must be ignored."""
    folder = tmp_path / "scenes"
    folder.mkdir()
    paths, rows = [], []
    for i in range(8):
        p = folder / f"s{i}.png"
        Image.fromarray(street(i, 96 + 8 * (i % 3), 64)).save(p)
        paths.append(p)
        rows.append({"path": f"scenes/{p.name}", "label": 0, "source": "toyA" if i < 5 else "toyB",
                     "group": f"g{i // 2}"})
    rows.append({"path": "scenes/s0.png", "label": 1, "source": "toyA", "group": "pos"})
    manifest = tmp_path / "scenes.csv"
    with manifest.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "label", "source", "group"])
        w.writeheader()
        w.writerows(rows)
    return manifest, paths


def read_manifest(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


# ---- procedural objects -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", [k for k in kinds.NEW_POSITIVE_WEIGHTS if k != "cone"] + list(kinds.NEW_NEGATIVE_WEIGHTS))
def test_every_kind_draws_a_tight_rgba_object(kind: str) -> None:
    a = kinds.draw(kind, np.random.default_rng(0))
    assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 4
    assert 20 <= max(a.shape[:2]) <= 260
    alpha = a[..., 3]
    assert (alpha > 250).mean() > 0.08  # a solid object (or a mesh fence), not a smudge
    # cropped to the alpha: every border row/column touches the object
    for edge in (alpha[0], alpha[-1], alpha[:, 0], alpha[:, -1]):
        assert edge.max() > 5
    assert kind in kinds.GEOMETRY


def test_draw_is_seeded_and_varied() -> None:
    a = kinds.draw("barrel", np.random.default_rng(1))
    assert np.array_equal(a, kinds.draw("barrel", np.random.default_rng(1)))
    b = kinds.draw("barrel", np.random.default_rng(2))
    assert a.shape != b.shape or not np.array_equal(a, b)
    with pytest.raises(ValueError, match="unknown object kind 'unicorn'"):
        kinds.draw("unicorn", np.random.default_rng(0))


# ---- real cones ------------------------------------------------------------------------------------------
@requires_shared_data
@pytest.mark.parametrize("name", ["001", "003", "005", "006", "008"])
def test_cone_masks_of_real_photos(name: str) -> None:
    rel = f"images/99succubus_road_cone_{name}.jpg"  # single upright cones with clean boxes
    rgb = np.asarray(Image.open(OBJECTS / rel).convert("RGB"))
    H, W = rgb.shape[:2]
    xc, yc, w, h = read_boxes(OBJECTS)[rel][0]
    x0, y0, x1, y1 = int((xc - w / 2) * W), int((yc - h / 2) * H), int((xc + w / 2) * W), int((yc + h / 2) * H)
    alpha = cone_mask(rgb, (x0, y0, x1, y1))
    inside = np.zeros((H, W), bool)
    inside[y0:y1, x0:x1] = True
    assert 0.3 < alpha[inside].mean() < 0.85  # the cone, not the whole box
    assert alpha[~inside].max() == 0
    # cone-shaped: narrow near the tip, wide further down
    rows = alpha[y0:y1, x0:x1].sum(axis=1)
    q = (y1 - y0) // 4
    assert rows[:q].mean() < 0.8 * rows[2 * q:3 * q].mean()


@requires_shared_data
def test_cut_cones_from_a_few_photos(tmp_path: Path) -> None:
    cones, stats = cut_cones(OBJECTS, limit=5)
    assert stats["boxes"] == sum(v for k, v in stats.items() if k != "boxes")
    assert 1 <= len(cones) == stats["kept"]
    for c in cones:
        assert c.kind == "cone" and c.rgba.shape[2] == 4 and c.rgba.shape[0] <= 128
        assert c.rgba.shape[0] > c.rgba.shape[1]  # upright
        a = c.rgba[..., 3].astype(float)
        q = len(a) // 4
        assert a[:q].mean() < a[2 * q:].mean()  # narrow tip, wide body and base
    bank = ObjectBank(cones)
    back = ObjectBank.load(bank.save(tmp_path / "bank", source="x"))
    assert ObjectBank.saved_source(tmp_path / "bank") == "x"
    assert len(back.cones) == len(cones) and np.array_equal(back.cones[0].rgba, cones[0].rgba)


def test_read_boxes_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(BankError, match="boxes.csv: not found"):
        read_boxes(tmp_path)
    (tmp_path / "boxes.csv").write_text("image,x_center,y_center,width\na.jpg,0.5,0.5,0.1\n")
    with pytest.raises(BankError, match="missing column.*height"):
        read_boxes(tmp_path)
    (tmp_path / "boxes.csv").write_text("image,x_center,y_center,width,height\na.jpg,0.5,x,0.1,0.2\n")
    with pytest.raises(BankError, match="line 2"):
        read_boxes(tmp_path)
    with pytest.raises(BankError, match="not a saved object bank"):
        ObjectBank.load(tmp_path)


# ---- placement and compositing ------------------------------------------------------------------------
def test_horizon_of_a_toy_street() -> None:
    img = street(0, 160, 100)
    g = estimate_ground(img, np.random.default_rng(0))
    assert abs(g.horizon - 40) <= 6
    assert g.bottom >= 90
    assert abs(g.vx - 80) <= 16
    # perspective: the same object is taller the nearer it stands
    assert g.row(5) > g.row(20) > g.horizon


def test_positives_are_pasted_on_the_road_below_the_horizon() -> None:
    bank = ObjectBank()
    below = total = 0.0
    for seed in range(12):
        img = street(seed, 160, 100)
        sample = compose_sample(img, bank, np.random.default_rng(seed), config=SynthConfig.legacy())
        out, pasted = sample.image, sample.meta["kinds"]
        assert 1 <= len(pasted) <= 8 and all(k in kinds.POSITIVE_WEIGHTS for k in pasted)
        diff = np.abs(out.astype(int) - img.astype(int)).sum(axis=2)
        assert (diff > 30).sum() >= 15  # something visible was pasted
        total += diff.sum()
        below += diff[40:].sum()
    # objects stand on the ground: most changed pixels lie below the horizon row (40)
    assert below / total > 0.75


def test_hard_negatives_are_negative_kinds() -> None:
    out, pasted = compose(street(3, 160, 100), ObjectBank(), np.random.default_rng(3), negative=True)
    assert pasted and all(k in kinds.NEGATIVE_KINDS for k in pasted)
    assert out.shape == (100, 160, 3)


def test_scene_weights_temper_big_sources() -> None:
    w = scene_weights(["big"] * 100 + ["small"] * 4)
    assert w.sum() == pytest.approx(1.0)
    share_small = w[100:].sum()
    assert 4 / 104 < share_small < 0.5  # more than its count share, less than an equal share
    assert w[0] == pytest.approx(w[99])


def test_fit_max_side_only_downscales() -> None:
    assert fit_max_side(Image.new("RGB", (640, 360)), 240).size == (240, 135)
    assert fit_max_side(Image.new("RGB", (100, 50)), 240).size == (100, 50)


# ---- batch synthesis -----------------------------------------------------------------------------------
def test_synthesize_is_byte_reproducible(scenes, tmp_path: Path) -> None:
    _, paths = scenes
    bank = ObjectBank()
    a = synthesize(paths, bank, n=4, seed=7, out_dir=tmp_path / "a", n_neg=2, max_side=80)
    b = synthesize(paths, bank, n=4, seed=7, out_dir=tmp_path / "b", n_neg=2, max_side=80)
    c = synthesize(paths, bank, n=4, seed=8, out_dir=tmp_path / "c", n_neg=2, max_side=80)
    assert a.read_bytes() == b.read_bytes()
    rows = read_manifest(a)
    assert len(rows) == 6
    same = [(a.parent / r["path"]).read_bytes() == (b.parent / r["path"]).read_bytes() for r in rows]
    differ = [(a.parent / r["path"]).read_bytes() != (c.parent / r["path"]).read_bytes() for r in rows]
    assert all(same) and all(differ)
    par = synthesize(paths, bank, n=4, seed=7, out_dir=tmp_path / "p", n_neg=2, max_side=80, workers=2)
    assert par.read_bytes() == a.read_bytes()  # worker processes change nothing, the order neither
    assert all((par.parent / r["path"]).read_bytes() == (a.parent / r["path"]).read_bytes() for r in rows)
    assert all((par.parent / r["mask"]).read_bytes() == (a.parent / r["mask"]).read_bytes() for r in rows)


def test_synthesized_manifest(scenes, tmp_path: Path) -> None:
    from roadwork.data import ManifestSource

    manifest_in, _ = scenes
    recs = [r for r in ManifestSource(manifest_in).records() if r.label == 0]
    out = synthesize(recs, ObjectBank(), n=5, seed=0, out_dir=tmp_path / "syn", n_neg=3, max_side=64,
                     scene_root=manifest_in.parent)
    rows = read_manifest(out)
    by_scene = {Path(r.path).name: r for r in recs}
    for row in rows:
        img = Image.open(out.parent / row["path"])
        scene = by_scene[Path(row["scene_path"]).name]
        assert img.format == "JPEG" and img.size == fit_max_side(scene.load(), 64).size
        assert row["group"] == scene.group and row["scene_source"] == scene.source
        assert row["scene_path"] == f"scenes/{Path(scene.path).name}"  # relative to the scene manifest
        kind = "synth" if row["label"] == "1" else "synth_neg"
        assert row["source"] == f"{kind}:{scene.source}"
        assert row["objects"]
    assert [r["label"] for r in rows] == ["1"] * 5 + ["0"] * 3
    # the manifest is a data source like any other
    loaded = ManifestSource(out).records()
    assert [r.label for r in loaded] == [1] * 5 + [0] * 3
    assert all(Path(r.path).exists() for r in loaded)
    assert loaded[0].load().mode == "RGB"


def test_unreadable_scenes_are_skipped_and_named(scenes, tmp_path: Path) -> None:
    _, paths = scenes
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    out = synthesize([bad] + paths, ObjectBank(), n=12, seed=0, out_dir=tmp_path / "o", max_side=64)
    assert len(read_manifest(out)) == 12
    import json

    unreadable = json.loads((out.parent / "synth.json").read_text())["unreadable"]
    assert unreadable and all("broken.jpg" in u for u in unreadable)
    with pytest.raises(RuntimeError, match="broken.jpg"):
        synthesize([bad], ObjectBank(), n=1, seed=0, out_dir=tmp_path / "o2")


# ---- on the fly --------------------------------------------------------------------------------------------
def test_copy_paste_turns_negatives_into_positives() -> None:
    img = Image.fromarray(street(0, 96, 64))
    cp = CopyPaste(ObjectBank(), p=1.0, seed=0)
    out, label = cp(img, 0)
    assert label == 1 and out.size == img.size
    assert np.abs(np.asarray(out, int) - np.asarray(img, int)).max() > 30
    assert cp(img, 1) == (img, 1)  # positives pass through
    assert CopyPaste(ObjectBank(), p=0.0, seed=0)(img, 0) == (img, 0)
    neg, label = CopyPaste(ObjectBank(), p=0.0, p_neg=1.0, seed=0)(img, 0)
    assert label == 0 and not np.array_equal(np.asarray(neg), np.asarray(img))


def test_copy_paste_is_seeded_and_picklable() -> None:
    img = Image.fromarray(street(1, 96, 64))
    cp = CopyPaste(ObjectBank(), p=1.0, seed=5)
    first = np.asarray(cp(img, 0)[0])
    clone = pickle.loads(pickle.dumps(cp))  # as a DataLoader worker receives it: a fresh stream
    assert np.array_equal(np.asarray(clone(img, 0)[0]), first)
    assert not np.array_equal(np.asarray(cp(img, 0)[0]), first)  # the stream moves on
    rng_out = CopyPaste(ObjectBank(), p=1.0)(img, 0, rng=np.random.default_rng(9))[0]
    assert np.array_equal(np.asarray(rng_out),
                          np.asarray(CopyPaste(ObjectBank(), p=1.0)(img, 0, rng=np.random.default_rng(9))[0]))


# ---- CLI ------------------------------------------------------------------------------------------------
def test_cli_synth(scenes, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from roadwork.cli import app

    manifest, _ = scenes
    out = tmp_path / "cli"
    args = ["synth", "--data", str(manifest), "--objects", "none", "--out", str(out), "--n", "3",
            "--hard-negatives", "2", "--max-side", "64", "--exclude-source", "toyB"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    rows = read_manifest(out / "manifest.csv")
    assert len(rows) == 5 and {r["scene_source"] for r in rows} == {"toyA"}
    res = CliRunner().invoke(app, ["synth", "--data", str(tmp_path / "nope.csv"), "--objects", "none",
                                   "--out", str(out)])
    assert res.exit_code == 2 and "nope.csv" in res.output
    res = CliRunner().invoke(app, args[:-2] + ["--exclude-source", "toyA", "--exclude-source", "toyB"])
    assert res.exit_code == 2 and "no label-0 scenes" in res.output
    res = CliRunner().invoke(app, args[:4] + [str(tmp_path)] + args[5:])
    assert res.exit_code == 2 and "boxes.csv" in res.output


# ---- masks and config -----------------------------------------------------------------------------------
def test_mask_covers_exactly_the_pasted_pixels() -> None:
    """On a flat, noiseless scene without shadows, a pixel changed iff the mask says roadwork."""
    flat = np.full((100, 160, 3), 90, np.uint8)
    for seed in range(6):
        s = compose_sample(flat, ObjectBank(), np.random.default_rng(seed), config=SynthConfig.legacy().with_overrides(
            {"shadows": False, "new_kinds": True, "far_p": 0.5}))
        assert s.mask.shape == flat.shape[:2] and s.mask.dtype == np.uint8 and s.label == 1
        changed = np.abs(s.image.astype(int) - flat).max(axis=2) > 0
        assert changed.sum() >= 15
        assert not (changed & (s.mask == 0)).any()  # nothing outside the mask moved
        assert changed[s.mask >= 3].mean() > 0.97  # (a paint colour can equal the backdrop by chance)
        assert len(s.meta["objects"]) == len(s.meta["kinds"])


def test_hard_negatives_are_not_in_the_mask() -> None:
    s = compose_sample(street(3, 160, 100), ObjectBank(), np.random.default_rng(3), negative=True)
    assert s.label == 0 and s.mask.max() == 0
    assert np.abs(s.image.astype(int) - street(3, 160, 100)).max() > 30  # but something was pasted


def test_config_overrides_are_typed_and_checked() -> None:
    cfg = SynthConfig().with_overrides(["synth.shadows=false", "max_objects=3"])
    assert cfg.shadows is False and cfg.max_objects == 3
    assert SynthConfig().with_overrides({"shadows": "0"}).shadows is False
    with pytest.raises(ValueError, match="unknown synth setting.*nope"):
        SynthConfig().with_overrides(["nope=1"])
    with pytest.raises(ValueError):
        SynthConfig().with_overrides(["max_objects=many"])


def test_copy_paste_sample_carries_the_mask() -> None:
    img = Image.fromarray(street(2, 96, 64))
    s = CopyPaste(ObjectBank(), p=1.0, seed=0).sample(img, 0)
    assert s.label == 1 and s.mask.shape == (64, 96) and s.mask.max() > 200
    real = CopyPaste(ObjectBank(), p=0.0).sample(img, 1, rng=np.random.default_rng(0))
    assert real.mask is None and real.label == 1  # a real positive: no pixel truth
    neg = CopyPaste(ObjectBank(), p=0.0).sample(img, 0, rng=np.random.default_rng(0))
    assert neg.label == 0 and neg.mask.max() == 0


def test_written_masks_match_their_images(scenes, tmp_path: Path) -> None:
    _, paths = scenes
    out = synthesize(paths, ObjectBank(), n=3, seed=1, out_dir=tmp_path / "m", n_neg=1, max_side=80)
    for row in read_manifest(out):
        img = Image.open(out.parent / row["path"])
        mask = load_mask(out.parent / row["path"])
        assert row["mask"] == mask_path(row["path"]).as_posix()
        assert mask is not None and mask.shape == (img.height, img.width)
        assert (mask.max() > 0) == (row["label"] == "1")
    assert load_mask(paths[0]) is None  # a real scene has no mask


def test_cli_synth_switches(scenes, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from roadwork.cli import app

    manifest, _ = scenes
    base = ["synth", "--data", str(manifest), "--objects", "none", "--n", "2", "--max-side", "64"]
    res = CliRunner().invoke(app, base + ["--out", str(tmp_path / "a"), "--set", "shadows=false", "--set", "max_objects=2"])
    assert res.exit_code == 0, res.output
    cfg = json.loads((tmp_path / "a" / "synth.json").read_text())["config"]
    assert cfg["shadows"] is False and cfg["max_objects"] == 2
    assert all(len(r["objects"].split()) <= 2 for r in read_manifest(tmp_path / "a" / "manifest.csv"))
    res = CliRunner().invoke(app, base + ["--out", str(tmp_path / "b"), "--legacy"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "b" / "synth.json").read_text())["config"] == SynthConfig.legacy().model_dump()
    res = CliRunner().invoke(app, base + ["--out", str(tmp_path / "c"), "--set", "nope=1"])
    assert res.exit_code == 2 and "nope" in res.output


# ---- issue 10: whole-scene effects, hard negatives, distances, switches -----------------------------------
OFF = SynthConfig.legacy()


def test_night_relights_the_pasted_objects_too() -> None:
    img = street(4, 160, 100)
    day = compose_sample(img, ObjectBank(), np.random.default_rng(4), config=OFF)
    night = compose_sample(img, ObjectBank(), np.random.default_rng(4), config=OFF.with_overrides({"night_p": 1}))
    assert "night" in night.meta["effects"] and np.array_equal(day.mask, night.mask)
    obj, bg = day.mask > 200, day.mask == 0
    diff = np.abs(day.image.astype(int) - night.image.astype(int)).mean(axis=2)
    assert diff[obj].mean() > 15  # the objects changed with the scene ...
    assert night.image[:30][bg[:30]].mean() < 0.5 * day.image[:30][bg[:30]].mean()  # ... and the sky went dark


def test_switches_really_switch() -> None:
    img = street(5, 160, 100)
    rng = np.random.default_rng
    on = SynthConfig().with_overrides({"night_p": 1, "negatives_in_positives": 1})
    s = compose_sample(img, ObjectBank(), rng(5), config=on)
    assert s.meta["lights"] and any(o["negative"] for o in s.meta["objects"])
    s = compose_sample(img, ObjectBank(), rng(5), config=on.with_overrides({"hard_negatives": False}))
    assert not s.meta["lights"] and not any(o["negative"] for o in s.meta["objects"])
    for key in ("rain_p", "fog_p", "glare_p", "motion_blur_p"):
        name = key[:-2]
        assert name in compose_sample(img, ObjectBank(), rng(1), config=OFF.with_overrides({key: 1})).meta["effects"]
        assert name not in compose_sample(img, ObjectBank(), rng(1), config=OFF).meta["effects"]
    new = {k for i in range(40) for k in compose_sample(img, ObjectBank(), rng(i), config=SynthConfig(
        night_p=0, rain_p=0, fog_p=0, glare_p=0, motion_blur_p=0)).meta["kinds"]}
    assert new & {"worker", "machine", "hoarding", "excavation", "drum", "water_barrier", "arrow_board"}
    old = {k for i in range(40) for k in compose_sample(img, ObjectBank(), rng(i), config=OFF).meta["kinds"]}
    assert old <= set(kinds.POSITIVE_WEIGHTS)


def test_far_objects_are_small() -> None:
    H = 180
    img = street(6, 320, H)
    cfg = OFF.with_overrides({"far_p": 1, "new_kinds": True})
    heights = [o["height_px"] for i in range(20)
               for o in compose_sample(img, ObjectBank(), np.random.default_rng(i), config=cfg).meta["objects"]
               if o["box"]]
    assert heights and np.median(heights) < 0.1 * H and min(heights) >= 0.025 * H - 1e-6
    near = [max(o["height_px"] for o in compose_sample(img, ObjectBank(), np.random.default_rng(i),
                                                        config=OFF).meta["objects"]) for i in range(20)]
    assert np.median(near) > 0.1 * H


def test_full_synthesis_is_deterministic_under_a_seed() -> None:
    img = street(7, 160, 100)
    cfg = SynthConfig(night_p=0.5, rain_p=0.5, fog_p=0.5, glare_p=0.5, motion_blur_p=0.5)
    for seed in range(4):
        a = compose_sample(img, ObjectBank(), np.random.default_rng(seed), config=cfg)
        b = compose_sample(img, ObjectBank(), np.random.default_rng(seed), config=cfg)
        assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
