"""The location-map head: exact export into a pipeline-loadable folder, masks that follow the
augmentations, mask supervision that puts the map where the objects are, and a full `train()` run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from roadwork.train import models
from roadwork.train.locmap import LocMapModel, location_maps, mask_loss, view_with_mask

SIZE = 64


def _images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)) for _ in range(n)]


def _pipeline_roadwork(folder: Path, images: list[Image.Image]) -> np.ndarray:
    from transformers import pipeline

    clf = pipeline("image-classification", model=str(folder), device="cpu")
    return np.array([{d["label"]: d["score"] for d in clf(im)}["Roadwork"] for im in images])


@pytest.mark.parametrize("pool", ["mean", "lse"])
def test_export_is_a_plain_folder_the_pipeline_loads(pool, tmp_path):
    """pool=mean: the saved standard model computes the training head exactly; lse: approximated
    (mean is the only pooling a transformers ResNet has), and the gap is measured, not hidden."""
    torch.manual_seed(0)
    model = models.build_model("resnet-tiny", image_size=SIZE)
    processor = models.make_processor(SIZE)
    wrapper = LocMapModel(model, pool)
    with torch.no_grad():  # a head that does something: random column 0, a visible bias
        wrapper.head.weight[:, 0] = torch.tensor([-3.0, 3.0])
    images = _images(6)
    x = processor(images=images, return_tensors="pt")["pixel_values"]
    wrapper.eval()
    with torch.no_grad():
        p_train = torch.softmax(wrapper(pixel_values=x).logits, -1)[:, 1].numpy()
    plain, info = wrapper.export([x])
    assert type(plain).__name__ == "ResNetForImageClassification"
    assert info["exact"] is (pool == "mean") and info["export_pool"] == "mean" and info["n_val"] == 6
    plain.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    theirs = _pipeline_roadwork(tmp_path, images)
    if pool == "mean":
        np.testing.assert_allclose(theirs, p_train, atol=1e-5)
        assert info["val_max_abs_prob_diff"] < 1e-5
    else:  # the measured gap is the one the saved folder really has
        assert abs(np.abs(theirs - p_train).max() - info["val_max_abs_prob_diff"]) < 1e-5
    assert not (tmp_path / "roadwork_locmap.py").exists()
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert "auto_map" not in cfg  # no remote code
    maps = location_maps(plain, x)
    assert maps.shape == (6, 2, 2) and float(maps.min()) >= 0 and float(maps.max()) <= 1


def test_map_rejects_architectures_without_a_site():
    model = models.build_model("vit-micro", image_size=32)
    with pytest.raises(ValueError, match="--head locmap"):
        LocMapModel(model, "mean")


def _square_batch(n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Grey noise with one bright square each (the 'object'), and its mask at 1/8 resolution."""
    x = rng.normal(0, 0.3, (n, 3, SIZE, SIZE)).astype(np.float32)
    masks = np.zeros((n, SIZE // 8, SIZE // 8), np.uint8)
    for i in range(n):
        cy, cx = rng.integers(0, 2, 2) * 32  # one cell of the 2x2 map grid
        x[i, :, cy:cy + 32, cx:cx + 32] += 1.5
        masks[i, cy // 8:(cy + 32) // 8, cx // 8:(cx + 32) // 8] = 255
    return torch.from_numpy(x), torch.from_numpy(masks)


def test_mask_supervision_puts_the_map_on_the_objects():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    wrapper = LocMapModel(models.build_model("resnet-tiny", image_size=SIZE), "lse")
    optim = torch.optim.Adam(wrapper.parameters(), lr=5e-3)
    has = torch.ones(8, dtype=torch.bool)
    losses = []
    for _ in range(30):
        x, m = _square_batch(8, rng)
        loss = mask_loss(wrapper(pixel_values=x).map_logits, m, has)
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses
    wrapper.eval()
    x, m = _square_batch(32, np.random.default_rng(1))
    with torch.no_grad():
        p = torch.sigmoid(wrapper(pixel_values=x).map_logits)
    on = torch.nn.functional.adaptive_avg_pool2d(m.float()[:, None] / 255, p.shape[-2:])[:, 0] > 0.5
    assert float(p[on].mean()) > 0.7 and float(p[~on].mean()) < 0.3
    # images without a mask contribute nothing (and do not break the graph)
    none = mask_loss(wrapper(pixel_values=x[:2]).map_logits, m[:2], torch.zeros(2, dtype=torch.bool))
    assert float(none.detach()) == 0.0 and none.requires_grad


@pytest.mark.parametrize("protocol", ["2026-01", "2026-04"])
def test_masks_follow_every_augmentation(protocol):
    """Crops, rotations, letterboxes, camera crops and flips: the replayed mask covers the bright square."""
    from roadwork.train.loader import Augment
    from roadwork.train.prepare import camera_transform

    view = Augment(SIZE, challenge_p=0.7, camera_p=0.5, camera=camera_transform(), protocol=protocol)
    base = np.zeros((120, 200, 3), np.uint8)
    base[50:90, 120:160] = 255
    mask = np.zeros((120, 200), np.uint8)
    mask[50:90, 120:160] = 255
    ious = []
    for seed in range(12):
        out, small = view_with_mask(view, Image.fromarray(base), mask, np.random.default_rng(seed), SIZE // 8)
        bright = np.asarray(out.convert("L").resize((SIZE // 8, SIZE // 8), Image.BOX)) > 127
        on = small > 127
        if bright.sum() + on.sum() == 0:
            continue  # the crop missed the square: nothing to compare
        ious.append((bright & on).sum() / max(1, (bright | on).sum()))
    assert len(ious) >= 6 and np.mean(ious) > 0.7, ious


def test_letterbox_p_one_letterboxes_the_whole_frame_and_the_mask_follows():
    """letterbox_p=1: every view is the 2026-04 letterbox of the whole frame (maybe flipped), the
    square near the right edge stays in view, and the replayed mask sits on it."""
    from roadwork.challenge.ops import letterbox
    from roadwork.train.loader import Augment

    view = Augment(224, challenge_p=1.0, letterbox_p=1.0)
    base = np.zeros((120, 240, 3), np.uint8)
    base[50:90, 200:236] = 255
    mask = np.zeros((120, 240), np.uint8)
    mask[50:90, 200:236] = 255
    whole = np.asarray(letterbox(Image.fromarray(base)))
    for seed in range(6):
        out, small = view_with_mask(view, Image.fromarray(base), mask, np.random.default_rng(seed), 28)
        got = np.asarray(out)
        assert np.array_equal(got, whole) or np.array_equal(got, whole[:, ::-1])
        assert got[:56].max() == 0 and got[-56:].max() == 0  # the 2:1 frame's black bars
        bright = np.asarray(out.convert("L").resize((28, 28), Image.BOX)) > 127
        on = small > 127
        assert on.any() and (bright & on).sum() / (bright | on).sum() > 0.7


def _synth_folder(root: Path, n: int = 8) -> Path:
    """What `roadwork synth` writes: images/, masks/ (same stem, PNG), manifest.csv with scene columns."""
    from roadwork.synth.sample import mask_path

    rng = np.random.default_rng(3)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = []
    for i in range(n):
        arr = rng.integers(40, 120, (40, 48, 3)).astype(np.uint8)
        m = np.zeros((40, 48), np.uint8)
        x = int(rng.integers(4, 30))
        arr[16:34, x:x + 12] = (255, 110, 0)
        m[16:34, x:x + 12] = 255
        name = f"images/pos_{i:06d}.jpg"
        Image.fromarray(arr).save(root / name, quality=92)
        Image.fromarray(m).save(root / mask_path(name))
        rows.append({"path": name, "label": 1, "source": "synth:camvid", "group": f"s{i}", "license": "test",
                     "scene_source": "camvid", "scene_path": f"camvid/g0/{i}.jpg", "objects": "cone",
                     "mask": mask_path(name).as_posix()})
    with (root / "manifest.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def test_train_with_locmap_saves_a_pipeline_folder_with_its_map(tmp_path, street_images):
    from test_train import make_dataset, tiny_cfg

    from roadwork.tiers.classifier import ClassifierTier
    from roadwork.train.finetune import train
    from roadwork.train.prepare import make_split, mask_paths

    data = make_dataset(tmp_path / "data")
    synth = _synth_folder(tmp_path / "synth")
    cfg = tiny_cfg(data, tmp_path / "m", head="locmap", pool="mean", synth=[str(synth)], image_size=SIZE,
                   challenge=True)
    masks = mask_paths(make_split(cfg.resolved()))
    assert sum(m is not None for m in masks) == 8 and all(Path(m).is_file() for m in masks if m)
    summary = train(cfg)
    meta = json.loads((tmp_path / "m" / "roadwork.json").read_text())
    assert meta["locmap"]["export"]["exact"] is True and meta["locmap"]["pool"] == "mean"
    assert summary["locmap"]["export"]["val_max_abs_prob_diff"] < 1e-5
    assert "--head locmap" in meta["command"]
    tier = ClassifierTier(str(tmp_path / "m"), device="cpu")
    np.testing.assert_allclose(tier.predict(street_images), _pipeline_roadwork(tmp_path / "m", street_images),
                               atol=1e-5)
