"""The whole cascade on CPU with tiny tiers: routing, escalation, stacking, deadline, views, video."""

from __future__ import annotations

import time

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from conftest import make_tiny_vit
from roadwork.router_bands import escalation_depth, fit_bands
from roadwork.cli import app
from roadwork.config import Config, ConfigError, TierConfig
from roadwork.engine import Engine
from roadwork.sequence import Hysteresis, combine_views, predict_video, predict_views
from roadwork.stacker import Stacker
from roadwork.tiers import create_tier
from roadwork.tiers.calibrator import fit_calibrator
from tiny_models import tiny_dir


def photos(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)) for _ in range(n)]


def solid(rgb, n=1) -> list[Image.Image]:
    return [Image.new("RGB", (64, 48), rgb) for _ in range(n)]


@pytest.fixture(scope="module")
def tier_cfgs(tmp_path_factory):
    vit = make_tiny_vit(tmp_path_factory.mktemp("vit"))
    return [
        TierConfig(name="classifier", model=str(vit), device="cpu", cost=1.0),
        TierConfig(name="clip", kind="zeroshot", model=str(tiny_dir("clip")), device="cpu", cost=5.0),
        TierConfig(name="detr", kind="detector", model=str(tiny_dir("detr")), device="cpu", cost=10.0,
                   options={"min_score": 0.0}),
        TierConfig(name="vlm", kind="vlm", model=str(tiny_dir("qwen25_vl")), device="cpu", cost=100.0),
    ]


def _band_around(p: np.ndarray, inside: list[int]) -> tuple[float, float]:
    """A band that contains exactly the images `inside` (their values must be contiguous in rank)."""
    lo, hi = p[inside].min(), p[inside].max()
    assert sum((p >= lo) & (p <= hi)) == len(inside)
    return float(lo), float(hi)


def test_cascade_routes_uncertain_images_and_counts_escalations(tier_cfgs):
    batch = photos(6)
    direct = {c.name: create_tier(c).predict(batch) for c in tier_cfgs}
    order = np.argsort(direct["classifier"])
    esc0 = sorted(order[1:5].tolist())  # the 4 middle-ranked images escalate past the classifier
    p1 = direct["clip"]
    esc1 = sorted(np.array(esc0)[np.argsort(p1[esc0])[1:3]].tolist())  # 2 of them escalate past clip
    p2 = direct["detr"]
    esc2 = [esc1[int(np.argmax(p2[esc1]))]]  # and 1 past the detector
    assert p2[esc1[0]] != p2[esc1[1]]
    bands = [_band_around(direct["classifier"], esc0), (float(p1[esc1].min()), float(p1[esc1].max())),
             (float(p2[esc2[0]]), 1.0), (0.0, 1.0)]
    cfg = Config(tiers=[c.model_copy(update={"band": b}) for c, b in zip(tier_cfgs, bands)])
    engine = Engine.from_config(cfg)
    res = engine.predict(batch)
    counts = {n: sum(n in r.escalations for r in res) for n in ("classifier", "clip", "detr", "vlm")}
    assert counts == {"classifier": 4, "clip": 2, "detr": 1, "vlm": 0}
    depth = {j: 0 for j in range(6)} | {j: 1 for j in esc0} | {j: 2 for j in esc1} | {j: 3 for j in esc2}
    names = [c.name for c in tier_cfgs]
    for j, r in enumerate(res):
        assert list(r.per_tier) == names[:depth[j] + 1]
        assert r.tier == names[depth[j]] and not r.timed_out
        assert set(r.times_ms) == set(r.per_tier)
        for name, p in r.per_tier.items():
            assert p == pytest.approx(direct[name][j], abs=1e-5)
        assert r.prob == pytest.approx(direct[r.tier][j], abs=1e-5)


def test_stacker_combines_the_tiers_that_ran(tier_cfgs, tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 600)
    # two tiers with independent noise: together they beat either alone
    z = np.stack([np.where(y == 1, 1.0, -1.0) + rng.normal(0, 1.2, 600) for _ in range(3)], 1)
    probs = 1 / (1 + np.exp(-z))
    names = ["classifier", "clip", "detr"]
    st = Stacker.fit(names, probs, y)
    assert sorted(st.models) == ["classifier+clip", "classifier+clip+detr"]
    rows = [dict(zip(names[:k], p[:k])) for p, k in zip(probs, rng.integers(1, 4, 600))]
    out = st.combine_batch(rows)
    for r, o in zip(rows[:20], out[:20]):
        assert o == pytest.approx(st.combine(r))
        if len(r) == 1:
            assert o == r["classifier"]  # one tier ran: it decides
    both = st.combine_batch([dict(zip(names[:2], p[:2])) for p in probs])
    acc = lambda p: ((p > 0.5) == y).mean()  # noqa: E731
    assert acc(both) > max(acc(probs[:, 0]), acc(probs[:, 1])) + 0.02
    assert st.models["classifier+clip"].coef[0] > 0.3 and st.models["classifier+clip"].coef[1] > 0.3
    back = Stacker.load(st.save(tmp_path / "st.json"))
    np.testing.assert_allclose(back.combine_batch(rows), out)
    # prefix with no model falls back to the longest fitted prefix it contains
    partial = Stacker(names, {"classifier+clip": st.models["classifier+clip"]})
    three = dict(zip(names, probs[0]))
    assert partial.combine(three) == pytest.approx(st.combine(dict(zip(names[:2], probs[0][:2]))))

    # in the engine: images that ran two tiers are answered by the stacker
    cfg = Config(tiers=[tier_cfgs[0].model_copy(update={"band": (0.0, 1.0)}),
                        tier_cfgs[1].model_copy(update={"band": (0.0, 1.0)})],
                 router={"stacker": str(tmp_path / "st.json")})
    engine = Engine.from_config(cfg)
    for r in engine.predict(photos(3)):
        assert r.tier == "stacker" and list(r.per_tier) == ["classifier", "clip"]
        assert r.prob == pytest.approx(st.combine(r.per_tier))


def test_deadline_answers_with_best_calibrated_tier_so_far(tier_cfgs):
    # classifier -> uncalibrated detector -> a VLM too slow for the deadline: images cut before the
    # VLM are answered by the classifier, not by the detector's raw score
    slow_vlm = tier_cfgs[3].model_copy(update={"cost": 1e9})
    cfg = Config(tiers=[tier_cfgs[0].model_copy(update={"band": (0.0, 1.0)}),
                        tier_cfgs[2].model_copy(update={"band": (0.0, 1.0)}), slow_vlm])
    engine = Engine.from_config(cfg)
    assert not engine.tiers[1].calibrated
    res = engine.predict(photos(3), deadline=time.monotonic() + 60)
    for r in res:
        assert r.timed_out and list(r.per_tier) == ["classifier", "detr"]
        assert r.tier == "classifier" and r.prob == r.per_tier["classifier"]
    # a calibrated detector is the better answer, and is used
    fit_calibrator(engine.tiers[1], [], [0, 1, 0, 1], features=np.array([[0.0] * 13, [1.0] * 13] * 2))
    for r in engine.predict(photos(2), deadline=time.monotonic() + 60):
        assert r.timed_out and r.tier == "detr"


def test_failing_later_tier_falls_back(tier_cfgs):
    dead = TierConfig(name="remote", kind="remote_vlm", model="m", cost=1.0,
                      options={"base_url": "http://127.0.0.1:9/v1", "timeout_s": 2.0})  # discard port: refused
    cfg = Config(tiers=[tier_cfgs[0].model_copy(update={"band": (0.0, 1.0)}), dead])
    res = Engine.from_config(cfg).predict(photos(2))
    assert [r.tier for r in res] == ["classifier", "classifier"] and all(len(r.per_tier) == 1 for r in res)


# ---- band calibration ----------------------------------------------------------------------------
def _synthetic_cascade(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.where(y == 1, 1.0, -1.0)
    cheap = 1 / (1 + np.exp(-(1.5 * s + rng.normal(0, 1.5, n))))
    good = 1 / (1 + np.exp(-(4.0 * s + rng.normal(0, 1.5, n))))
    return np.stack([cheap, good], 1), y


def test_fit_bands_budget_and_target_accuracy():
    probs, y = _synthetic_cascade()
    costs = [1.0, 50.0]
    acc_cheap = ((probs[:, 0] > 0.5) == y).mean()
    acc_good = ((probs[:, 1] > 0.5) == y).mean()
    rich = fit_bands(probs, y, costs, budget_ms=100.0)
    assert rich.outcome.mcc > 0.9 and rich.outcome.accuracy >= acc_good - 0.01
    tight = fit_bands(probs, y, costs, budget_ms=20.0)
    assert tight.outcome.mean_cost <= 20.0 and tight.outcome.accuracy > acc_cheap + 0.05
    # escalation only from the classifier's uncertain middle
    lo, hi = tight.bands[0]
    assert 0.0 < lo < 0.5 < hi < 1.0
    target = fit_bands(probs, y, costs, target_accuracy=0.95)
    assert target.outcome.accuracy >= 0.95 and target.outcome.mean_cost < 51.0
    cheaper = fit_bands(probs, y, costs, target_accuracy=acc_cheap - 0.01)
    assert cheaper.outcome.mean_cost == 1.0  # no escalation needed
    depth = escalation_depth(probs, tight.bands)
    assert tight.table[0]["answered"] == int((depth == 0).sum()) and tight.table[1]["reached"] == int((depth == 1).sum())


def test_calibrate_cascade_cli_writes_a_loadable_config(tier_cfgs, tmp_path):
    data = tmp_path / "data"
    for label, colors in (("roadwork", [(250, 120, 0), (240, 100, 20), (255, 140, 0)]),
                          ("none", [(90, 90, 90), (60, 120, 200), (40, 160, 60)])):
        (data / label).mkdir(parents=True)
        for i, c in enumerate(colors * 3):
            Image.new("RGB", (40 + i, 32), c).save(data / label / f"{i}.png")
    cfg = Config(tiers=tier_cfgs[:3])
    cfg.to_yaml(tmp_path / "in.yaml")
    out = tmp_path / "out" / "cascade.yaml"
    r = CliRunner().invoke(app, ["calibrate-cascade", "--data", str(data), "--config", str(tmp_path / "in.yaml"),
                                 "--out", str(out), "--budget", "8", "--probs", str(tmp_path / "p.npz")])
    assert r.exit_code == 0, r.output
    written = yaml.safe_load(out.read_text())
    assert written["router"]["stacker"].endswith("cascade.stacker.json")
    det = written["tiers"][2]
    assert det["options"]["calibrator"].endswith("cascade.detr.calibrator.json")
    assert written["tiers"][1]["options"]["calibrator"].endswith("cascade.clip.calibrator.json")
    assert all(0 <= t["band"][0] <= t["band"][1] <= 1 for t in written["tiers"])
    engine = Engine.from_config(Config.from_yaml(out))
    assert engine.tiers[1].calibrated and engine.tiers[2].calibrated and engine.stacker is not None
    assert len(engine.predict(solid((250, 120, 0), 2))) == 2
    # second run reads the cached tier outputs and writes the same config: bands, costs, stacker
    # and the tier calibrators the cached probabilities were computed with
    out2 = tmp_path / "out2" / "cascade.yaml"
    r = CliRunner().invoke(app, ["calibrate-cascade", "--data", str(data), "--config", str(tmp_path / "in.yaml"),
                                 "--out", str(out2), "--budget", "8", "--probs", str(tmp_path / "p.npz")])
    assert r.exit_code == 0 and "read tier outputs" in r.output
    again = yaml.safe_load(out2.read_text().replace(str(out2.parent), str(out.parent)))
    assert again == written
    for name in ("clip", "detr"):
        assert (out2.parent / f"cascade.{name}.calibrator.json").read_text() == \
            (out.parent / f"cascade.{name}.calibrator.json").read_text()
    # measured costs replace the configured ones (the one precedence the config documents)
    assert [t["cost"] for t in written["tiers"]] != [c.cost for c in tier_cfgs[:3]]


# ---- views and video --------------------------------------------------------------------------
def test_combine_views():
    p = [0.2, 0.5, 0.9]
    assert combine_views(p, "noisy_or") == pytest.approx(1 - 0.8 * 0.5 * 0.1)
    assert combine_views(p, "max") == 0.9
    assert combine_views(p, "mean") == pytest.approx(1.6 / 3)
    z = np.log(np.array(p) / (1 - np.array(p))).mean()
    assert combine_views(p, "mean_logit") == pytest.approx(1 / (1 + np.exp(-z)))
    with pytest.raises(ValueError, match="unknown view combination"):
        combine_views(p, "vote")


def test_predict_views_uses_the_engine(tier_cfgs):
    engine = Engine.from_config(Config(tiers=[tier_cfgs[0]], sequence={"views": "max"}))
    views = photos(3)
    r = predict_views(views, engine, engine.sequence.views)
    per = [x.prob for x in engine.predict(views)]
    assert r.views == pytest.approx(per) and r.prob == pytest.approx(max(per)) and r.method == "max"


def test_hysteresis_intervals_on_a_synthetic_sequence():
    t = np.arange(30) * 0.5
    p = np.full(30, 0.1)
    p[4:12] = 0.9       # zone: 2.0 s -> 6.0 s
    p[7] = 0.5          # dips between exit and enter: stays on
    p[14] = 0.95        # a single-frame blip (0.5 s): shorter than min_duration, dropped
    p[20:23] = 0.8      # 10.0 -> 11.5 s ...
    p[23] = 0.2         # ... a 0.5 s gap, bridged ...
    p[24:30] = 0.7      # ... 12.0 s to the end (15.0 s)
    h = Hysteresis(enter=0.6, exit=0.4, min_duration_s=1.0, max_gap_s=1.0)
    assert h.intervals(t, p) == [(2.0, 6.0), (10.0, 15.0)]
    assert h.states([0.5, 0.7, 0.5, 0.3, 0.5]).tolist() == [False, True, True, False, False]
    assert Hysteresis(0.6, 0.6, 0.0, 0.0).intervals(t, p)[:2] == [(2.0, 3.5), (4.0, 6.0)]  # no hysteresis: p[7] splits
    with pytest.raises(ValueError, match="exit <= enter"):
        Hysteresis(enter=0.3, exit=0.5, min_duration_s=0.0, max_gap_s=0.0)
    with pytest.raises(ConfigError, match="sequence"):
        Config.from_dict({"sequence": {"enter": 0.3, "exit": 0.5}})


def _write_video(path, seconds_red: float, seconds_blue: float, fps: int = 10) -> None:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(int((seconds_red + seconds_blue) * fps)):
            color = (230, 30, 30) if i < seconds_red * fps else (30, 30, 230)
            frame = av.VideoFrame.from_image(Image.new("RGB", (64, 48), color))
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def test_video_work_zone_intervals(tmp_path):
    # a zero-shot tier whose Platt calibrator is fitted to call red frames roadwork
    zs = TierConfig(name="clip", kind="zeroshot", model=str(tiny_dir("clip")), device="cpu")
    tier = create_tier(zs)
    train = solid((230, 30, 30), 4) + solid((30, 30, 230), 4)
    cal = fit_calibrator(tier, train, [1] * 4 + [0] * 4, c=1e6, path=tmp_path / "cal.json")
    assert cal.meta["n"] == 8
    cfg = Config(tiers=[zs.model_copy(update={"options": {"calibrator": str(tmp_path / "cal.json")}})],
                 sequence={"enter": 0.7, "exit": 0.3, "min_duration_s": 0.5, "max_gap_s": 0.5})
    engine = Engine.from_config(cfg)
    video = tmp_path / "clip.mp4"
    _write_video(video, seconds_red=2.0, seconds_blue=2.0)
    report = predict_video(video, engine, fps=2.0)
    assert report.times == pytest.approx([0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5])
    assert all(p > 0.9 for p in report.probs[:4]) and all(p < 0.1 for p in report.probs[4:])
    assert report.intervals == [(0.0, 2.0)]
    d = report.to_dict()
    assert d["intervals"] == [{"entry_s": 0.0, "exit_s": 2.0}] and d["frames"] == 8
    assert "1 work zone(s)" in report.summary("clip.mp4") and "00:00.00 -> 00:02.00" in report.summary("x")
    # and through `roadwork predict`
    cfg.to_yaml(tmp_path / "c.yaml")
    r = CliRunner().invoke(app, ["predict", str(video), "--config", str(tmp_path / "c.yaml"), "--fps", "2"])
    assert r.exit_code == 0, r.output
    assert "work zone 1: 00:00.00 -> 00:02.00" in r.stdout


@pytest.mark.parametrize("load, what", [("roadwork.tiers.calibrator:LogisticCalibrator", "calibrator file"),
                                        ("roadwork.stacker:Stacker", "stacker file"),
                                        ("roadwork.tiers.color:ColorModel", "colour model")])
def test_fitted_model_files_fail_in_one_line_naming_the_file(load, what, tmp_path):
    import importlib

    module, name = load.split(":")
    cls = getattr(importlib.import_module(module), name)
    with pytest.raises(FileNotFoundError, match=f"{what} not found: .*missing.json"):
        cls.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        cls.load(bad)
    bad.write_text("[1, 2]")  # JSON, but not this kind of model
    with pytest.raises(ValueError, match="bad.json"):
        cls.load(bad)
