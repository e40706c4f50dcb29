"""`roadwork predict --heatmap DIR` on a tiny locmap folder: one overlay per input at the input's size,
coloured where the map is high; a model without a map or a bad folder is one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from roadwork.cli import app
from roadwork.heatmap import blend, heatmap_path
from roadwork.train import models
from roadwork.train.locmap import LocMapModel

SIZE = 64
runner = CliRunner()


@pytest.fixture(scope="module")
def locmap_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A resnet-tiny exported through the locmap head (as `roadwork train --head locmap` saves it)."""
    torch.manual_seed(0)
    wrapper = LocMapModel(models.build_model("resnet-tiny", image_size=SIZE), "mean")
    processor = models.make_processor(SIZE)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)) for _ in range(2)]
    wrapper.eval()
    plain, info = wrapper.export([processor(images=images, return_tensors="pt")["pixel_values"]])
    out = tmp_path_factory.mktemp("locmap")
    plain.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "roadwork.json").write_text(json.dumps({"locmap": {"channel": 0, "export": info}}))
    return out


def _inputs(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(1)
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    paths = [a / "street.jpg", b / "street.jpg", a / "wide.png"]  # two share a name
    for p, size in zip(paths, [(80, 60), (50, 70), (120, 40)]):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(p)
    return paths


def test_predict_heatmap_writes_one_overlay_per_input_at_its_size(locmap_dir, tmp_path):
    paths = _inputs(tmp_path)
    out = tmp_path / "maps"
    res = runner.invoke(app, ["predict", *map(str, paths), "--model", str(locmap_dir), "--json",
                              "--heatmap", str(out)])
    assert res.exit_code == 0, res.output
    written = sorted(p.name for p in out.iterdir())
    assert written == ["street-2.png", "street.png", "wide.png"]
    for src, name in zip(paths, ["street.png", "street-2.png", "wide.png"]):
        drawn = Image.open(out / name)
        assert drawn.size == Image.open(src).size
        assert not np.array_equal(np.asarray(drawn.convert("RGB")), np.asarray(Image.open(src).convert("RGB")))


def test_blend_colours_only_where_the_map_is_high():
    image = Image.new("RGB", (40, 20), (128, 128, 128))
    heat = np.zeros((2, 4), np.float32)
    heat[:, 3] = 1.0  # the right quarter
    drawn = np.asarray(blend(image, heat), dtype=np.int16)
    base = np.asarray(image, dtype=np.int16)
    assert drawn.shape == base.shape
    assert np.abs(drawn[:, :5] - base[:, :5]).max() == 0  # map 0: the photo as it is
    assert np.abs(drawn[:, -5:] - base[:, -5:]).max() > 20  # map 1: visibly coloured


def test_heatmap_path_numbers_names_that_collide(tmp_path):
    taken: set[str] = set()
    assert [heatmap_path(tmp_path, f"{d}/x.jpg", taken).name for d in "abc"] == ["x.png", "x-2.png", "x-3.png"]


def test_predict_heatmap_without_a_map_is_one_line(tiny_vit_dir, tmp_path):
    paths = _inputs(tmp_path)
    res = runner.invoke(app, ["predict", str(paths[0]), "--model", str(tiny_vit_dir), "--heatmap", str(tmp_path / "m")])
    assert res.exit_code == 2
    assert "no location map" in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_predict_heatmap_into_a_file_is_one_line(locmap_dir, tmp_path):
    paths = _inputs(tmp_path)
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    res = runner.invoke(app, ["predict", str(paths[0]), "--model", str(locmap_dir), "--heatmap", str(blocker)])
    assert res.exit_code == 2 and "cannot write there" in res.output and "Traceback" not in res.output
