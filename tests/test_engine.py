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


# ---- routing, results and the deadline, on model-free tiers ------------------------------------
def _engine(*tiers, bands=None):
    from roadwork.config import RouterConfig

    return Engine(list(tiers), bands or [(0.2, 0.8)] * len(tiers), RouterConfig())


def test_results_carry_depth_and_escalations():
    from fake_tiers import FakeTier, image_with_prob

    a, b, c = FakeTier("a"), FakeTier("b"), FakeTier("c")
    engine = _engine(a, b, c, bands=[(0.2, 0.8), (0.4, 0.6), (0.0, 1.0)])
    res = engine.predict([image_with_prob(p) for p in (0.1, 0.5, 0.7)])
    assert [r.depth for r in res] == [1, 3, 2]
    assert [r.escalations for r in res] == [[], ["a", "b"], ["a"]]
    assert [r.tier for r in res] == ["a", "c", "b"] and not any(r.provisional or r.timed_out for r in res)


def test_deadline_runs_a_later_tier_on_only_the_images_it_has_time_for():
    # 10 uncertain images; the second tier needs 150 ms each and there is ~1 s: it must not run on all
    # ten (1.5 s) but on the ones it has time for, most uncertain first; the rest keep tier a's answer
    import time

    from fake_tiers import FakeTier, image_with_prob

    fast, slow = FakeTier("fast"), FakeTier("slow", cost=150.0, delay_s=0.15)
    engine = _engine(fast, slow, bands=[(0.0, 1.0), (0.0, 1.0)])
    probs = [0.30, 0.49, 0.70, 0.52, 0.35, 0.60, 0.45, 0.25, 0.65, 0.55]
    t0 = time.monotonic()
    res = engine.predict([image_with_prob(p) for p in probs], deadline=t0 + 1.0)
    assert time.monotonic() - t0 < 1.0
    ran = [j for j, r in enumerate(res) if "slow" in r.per_tier]
    assert 4 <= len(ran) <= 6
    nearest = sorted(range(10), key=lambda j: abs(probs[j] - 0.5))[:len(ran)]
    assert sorted(ran) == sorted(nearest)
    for j, r in enumerate(res):
        if j in ran:
            assert r.tier == "slow" and not r.timed_out
        else:  # the known answer, not a fallback: tier fast's probability, flagged as cut by the deadline
            assert r.tier == "fast" and r.timed_out and r.prob == pytest.approx(probs[j], abs=0.003)
            assert r.escalations == ["fast"] and r.depth == 1


def test_answers_are_handed_out_as_soon_as_they_are_known():
    from fake_tiers import FakeTier, image_with_prob

    events: list[tuple] = []

    class Watched(FakeTier):
        def predict_batch(self, images):
            events.append(("run", self.name))
            return super().predict_batch(images)

    engine = _engine(Watched("a"), Watched("b"), bands=[(0.2, 0.8), (0.0, 1.0)])
    res = engine.predict([image_with_prob(p) for p in (0.1, 0.5)],
                         on_result=lambda j, r: events.append((j, r.tier, r.provisional)))
    # image 0 is final before tier b starts; image 1 is handed out provisionally (tier a's answer), then final
    assert events == [("run", "a"), (0, "a", False), (1, "a", True), ("run", "b"), (1, "b", False)]
    assert [r.tier for r in res] == ["a", "b"]


def test_a_provisional_answer_uses_the_deadline_fallback():
    from fake_tiers import FakeTier, image_with_prob

    got = {}
    engine = _engine(FakeTier("a"), FakeTier("det", calibrated=False), FakeTier("c"),
                     bands=[(0.0, 1.0), (0.0, 1.0), (0.0, 1.0)])
    engine.predict([image_with_prob(0.6)], on_result=lambda j, r: got.setdefault(r.depth, r))
    assert got[2].provisional and got[2].timed_out and got[2].tier == "a"  # not the uncalibrated det
    assert got[3].tier == "c" and not got[3].provisional


def test_stream_keeps_order_batches_images_and_passes_the_rest_through():
    from fake_tiers import FakeTier, image_with_prob
    from roadwork.stream import stream

    calls: list[int] = []

    class Counting(Engine):
        def predict(self, images, deadline=None, on_result=None):
            calls.append(len(images))
            return super().predict(images, deadline, on_result)

    engine = Counting([FakeTier("a")], [(0.5, 0.5)])
    items = [(k, None if k % 3 == 0 else image_with_prob(k / 10)) for k in range(8)]
    out = list(stream(engine, iter(items), batch_size=2))
    assert [k for k, _ in out] == list(range(8))
    assert all((r is None) == (k % 3 == 0) for k, r in out)
    assert [round(r.prob, 2) for _, r in out if r is not None] == [0.1, 0.2, 0.4, 0.5, 0.7]
    assert calls == [2, 2, 1]  # pass-through items never cut a batch short
