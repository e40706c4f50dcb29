import numpy as np
import pytest

from roadwork.config import Config, ConfigError, load_config
from roadwork.engine import Engine
from roadwork.tiers import create_tier


def test_engine_one_tier_matches_tier(tiny_vit_dir, street_images):
    cfg = load_config(overrides={"tiers": [{"model": str(tiny_vit_dir)}]})
    engine = Engine.from_config(cfg)
    results = engine.predict(street_images)
    direct = create_tier(cfg.tiers[0]).predict(street_images)
    assert [r.tier for r in results] == ["classifier"] * 3
    np.testing.assert_allclose([r.prob for r in results], direct, atol=1e-6)
    assert all(0.0 <= r.prob <= 1.0 and r.label == int(r.prob > 0.5) for r in results)


def test_config_names_bad_field():
    with pytest.raises(ConfigError, match=r"serve.max_batch_sise: unknown field \(did you mean 'max_batch_size'\?\)"):
        Config.from_dict({"serve": {"max_batch_sise": 4}})
    with pytest.raises(ConfigError, match=r"tiers.0.band"):
        Config.from_dict({"tiers": [{"band": [0.9, 0.1]}]})
