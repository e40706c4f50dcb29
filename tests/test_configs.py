"""Every shipped config in configs/ parses, validates and names registered tier kinds; a tiny-model
twin of each (same kinds, same order, bands, options, router and sequence settings; only the model
weights are swapped for tiny random ones) runs end to end through `Engine.from_config`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_tiny_vit
from roadwork.config import REPO_ROOT, Config, TierConfig
from roadwork.engine import Engine
from roadwork.tiers import available_tiers, create_tier
from tiny_models import start_server, tiny_dir

CONFIGS = sorted((REPO_ROOT / "configs").glob("*.yaml"))


def test_configs_folder_is_not_empty():
    assert len(CONFIGS) >= 4


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_parses_and_names_known_kinds(path: Path):
    cfg = Config.from_yaml(path)
    assert {t.kind for t in cfg.tiers} <= set(available_tiers())
    assert Config.from_dict(cfg.model_dump(mode="json")) == cfg  # YAML out and in again is the same config


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from openai_vlm import create_app

    vlm = create_tier(TierConfig(name="served", kind="vlm", model=str(tiny_dir("qwen25_vl")), device="cpu"))
    url, stop = start_server(create_app(vlm, "tiny"))
    yield {"classifier": str(make_tiny_vit(tmp_path_factory.mktemp("vit"))), "zeroshot": str(tiny_dir("siglip")),
           "detector": str(tiny_dir("detr")), "vlm": str(tiny_dir("qwen25_vl")), "remote_vlm": "tiny"}, url
    stop()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_tiny_twin_of_config_runs_end_to_end(path: Path, tiny_models):
    models, url = tiny_models
    cfg = Config.from_yaml(path)
    for t in cfg.tiers:
        t.device = "cpu"
        if t.kind in models:  # the colour tier keeps its shipped json: it is tiny already
            t.model = models[t.kind]
        if t.kind == "remote_vlm":
            t.options = {**t.options, "base_url": url}
    engine = Engine.from_config(cfg)
    assert [t.name for t in engine.tiers] == [t.name for t in cfg.tiers]
    rng = np.random.default_rng(0)
    batch = [Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)) for _ in range(3)]
    results = engine.predict(batch)
    assert len(results) == 3
    names = {t.name for t in cfg.tiers} | {"stacker"}
    for r in results:
        assert 0.0 <= r.prob <= 1.0 and r.tier in names and r.label in (0, 1)
