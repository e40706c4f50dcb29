"""Every registered tier kind, built from a config on a tiny random model, answers a batch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_tiny_vit
from roadwork.config import TierConfig
from roadwork.tiers import available_tiers, create_tier
from roadwork.metrics import logit
from roadwork.tiers.calibrator import LogisticCalibrator, fit_calibrator
from roadwork.tiers.detector import detection_features, resolve_class_map
from roadwork.tiers.vlm import yes_no_logit
from tiny_models import DETECTOR_LABELS, start_server, tiny_dir


def images(n: int = 4, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (40 + 8 * i, 56, 3), dtype=np.uint8)) for i in range(n)]


def _remote_cfg():
    from openai_vlm import create_app

    vlm = create_tier(TierConfig(name="v", kind="vlm", model=str(tiny_dir("qwen25_vl")), device="cpu"))
    url, stop = start_server(create_app(vlm, "tiny"))
    return TierConfig(name="remote", kind="remote_vlm", model="tiny", options={"base_url": url}), stop


# kind -> list of config factories; each returns (TierConfig, cleanup or None)
CASES = {
    "classifier": [lambda tmp: (TierConfig(model=str(make_tiny_vit(tmp / "vit")), device="cpu"), None)],
    "zeroshot": [lambda tmp: (TierConfig(name="clip", kind="zeroshot", model=str(tiny_dir("clip")), device="cpu"), None),
                 lambda tmp: (TierConfig(name="siglip", kind="zeroshot", model=str(tiny_dir("siglip")),
                                         device="cpu", options={"positive": ["road work"], "negative": ["a street"]}),
                              None)],
    "detector": [lambda tmp: (TierConfig(name="detr", kind="detector", model=str(tiny_dir("detr")), device="cpu"), None),
                 lambda tmp: (TierConfig(name="rtdetr", kind="detector", model=str(tiny_dir("rtdetr")), device="cpu"),
                              None)],
    "vlm": [lambda tmp: (TierConfig(name="vlm", kind="vlm", model=str(tiny_dir("qwen25_vl")), device="cpu",
                                    batch_size=3), None)],
    "remote_vlm": [lambda tmp: _remote_cfg()],
    "color": [lambda tmp: (TierConfig(name="color", kind="color"), None)],  # the shipped models/color json
    "onnx": [lambda tmp: (TierConfig(kind="onnx", model=str(_exported(tmp))), None)],
}


def _exported(tmp):
    from roadwork.fast.onnx_export import export_onnx
    from test_fast_onnx import make_tiny_resnet

    export_onnx(make_tiny_resnet(tmp / "cnn"), int8=False, n_calib=8, log_fn=lambda _: None)
    return tmp / "cnn"


def test_every_registered_kind_has_a_case():
    assert set(available_tiers()) <= set(CASES), "add a tiny-model case for the new tier kind"
    assert all(CASES[k] for k in available_tiers()), "every registered kind needs at least one case"


@pytest.mark.parametrize("kind,i", [(k, i) for k, fs in CASES.items() for i in range(len(fs))])
def test_tier_answers_a_batch(kind, i, tmp_path):
    cfg, cleanup = CASES[kind][i](tmp_path)
    try:
        tier = create_tier(cfg)
        assert tier.kind == kind and tier.name == cfg.name and tier.cost > 0
        batch = images(5)
        p = tier.predict(batch)
        assert p.dtype == np.float64 and p.shape == (5,)
        assert np.all((p >= 0) & (p <= 1)) and np.all(np.isfinite(p))
        # batch composition must not change an image's answer (padding, batching bugs)
        np.testing.assert_allclose(tier.predict(batch[2:4]), p[2:4], atol=1e-5)
        assert tier.predict([]).shape == (0,)
        tier.warmup()
    finally:
        if cleanup:
            cleanup()


# ---- zero-shot --------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_zeroshot_logits_match_model_forward(family):
    tier = create_tier(TierConfig(name="zs", kind="zeroshot", model=str(tiny_dir(family)), device="cpu"))
    assert tier.family == family
    batch = images(3)
    z = tier.prompt_logits(batch)
    prompts = tier.positive + tier.negative
    pad = dict(padding="max_length", max_length=64) if family == "siglip" else dict(padding=True)
    enc = tier.processor(text=prompts, images=batch, return_tensors="pt", truncation=True, **pad)
    with torch.no_grad():
        ref = tier.model(**enc).logits_per_image.double().numpy()
    np.testing.assert_allclose(z, ref, atol=1e-4)
    pos, neg = ref[:, :len(tier.positive)], ref[:, len(tier.positive):]
    if family == "clip":  # softmax over all prompts, mass on the roadwork ones
        soft = np.exp(ref - ref.max(1, keepdims=True))
        expect = soft[:, :len(tier.positive)].sum(1) / soft.sum(1)
    else:  # best roadwork prompt against best none prompt
        expect = 1 / (1 + np.exp(-(pos.max(1) - neg.max(1))))
    np.testing.assert_allclose(tier.predict(batch), expect, atol=1e-5)


def test_zeroshot_platt_from_options_and_json_beside(tmp_path):
    base = TierConfig(name="zs", kind="zeroshot", model=str(tiny_dir("clip")), device="cpu")
    raw = create_tier(base)
    x = raw.features(images(3))[:, 0]
    inline = create_tier(base.model_copy(update={"options": {"calibrator": {"a": 2.0, "b": -0.5}}}))
    np.testing.assert_allclose(inline.predict(images(3)), 1 / (1 + np.exp(-(2.0 * x - 0.5))), atol=1e-6)
    path = LogisticCalibrator.platt(-1.0, 0.25).save(tmp_path / "cal.json")
    from_file = create_tier(base.model_copy(update={"options": {"calibrator": str(path)}}))
    np.testing.assert_allclose(from_file.predict(images(3)), 1 / (1 + np.exp(x - 0.25)), atol=1e-6)
    with pytest.raises(ValueError, match=r"options.positives: unknown field \(did you mean 'positive'\?\)"):
        create_tier(base.model_copy(update={"options": {"positives": ["x"]}}))


# ---- calibrator -------------------------------------------------------------------------------
def test_logistic_calibrator_fits_separable_scores_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    x = np.where(y == 1, 1.5, -1.5) + rng.normal(0, 1, 400)
    cal = LogisticCalibrator.fit(x[:, None], y, ["logit"], c=100.0)
    assert cal.coef[0] > 1.0 and abs(cal.intercept) < 0.5
    p = cal.predict_proba(x[:, None])
    assert ((p > 0.5) == y).mean() > 0.85
    back = LogisticCalibrator.load(cal.save(tmp_path / "c.json"))
    np.testing.assert_array_equal(back.predict_proba(x[:, None]), p)
    with pytest.raises(ValueError, match="both classes"):
        LogisticCalibrator.fit(x[:5, None], [1] * 5, ["logit"])
    np.testing.assert_allclose(logit(np.array([0.5, 0.9])), [0.0, np.log(9)], atol=1e-9)


# ---- detector ---------------------------------------------------------------------------------
def test_class_map_and_detection_features():
    cmap = {"cone": ["traffic cone"], "barrel": ["BARREL/BUCKET"], "machine": ["machinery vehicle", 2]}
    lg = resolve_class_map(cmap, DETECTOR_LABELS, "t")
    assert lg == {1: 0, 3: 1, 4: 2, 2: 2}
    dets = [
        (np.array([0.9, 0.4, 0.2, 0.8]), np.array([1, 1, 3, 0]),  # two cones, a weak barrel, a person
         np.array([[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1]])),
        (np.zeros(0), np.zeros(0, int), np.zeros((0, 4))),
    ]
    x = detection_features(dets, lg, 3, count_threshold=0.3)
    np.testing.assert_allclose(x[0], [0.9, 0.2, 0.0, np.log1p(2), 0.0, 0.0, 0.5])
    np.testing.assert_array_equal(x[1], np.zeros(7))
    with pytest.raises(ValueError, match="no class of the class map"):
        resolve_class_map({"cone": ["cone"]}, {0: "person"}, "t")


@pytest.mark.parametrize("name", ["detr", "rtdetr"])
def test_detector_calibrator_fit_save_load(name, tmp_path):
    cfg = TierConfig(name=name, kind="detector", model=str(tiny_dir(name)), device="cpu",
                     options={"min_score": 0.0, "count_threshold": 0.0})
    tier = create_tier(cfg)
    assert tier.feature_names[0] == "cone_max" and tier.feature_names[-1] == "area"
    batch = images(8)
    x = tier.features(batch)
    assert x.shape == (8, 2 * len(tier.groups) + 1)
    np.testing.assert_allclose(tier.predict(batch), x[:, :len(tier.groups)].max(1))  # uncalibrated: best score
    labels = [0, 1] * 4
    cal = fit_calibrator(tier, batch, labels, path=tmp_path / "cal.json", features=x)
    assert tier.calibrated and json.loads((tmp_path / "cal.json").read_text())["features"] == tier.feature_names
    p = tier.predict(batch)
    np.testing.assert_allclose(p, cal.predict_proba(x))
    again = create_tier(cfg.model_copy(update={"options": {**cfg.options, "calibrator": str(tmp_path / "cal.json")}}))
    np.testing.assert_allclose(again.predict(batch), p, atol=1e-9)


# ---- VLM --------------------------------------------------------------------------------------
def test_vlm_p_yes_from_next_token_logits():
    tier = create_tier(TierConfig(name="vlm", kind="vlm", model=str(tiny_dir("qwen25_vl")), device="cpu"))
    tok = tier.tokenizer
    # word-level tokenizer: "yes"/" yes" are one token, "YES" is unknown and must be dropped
    assert sorted(tier.yes_ids) == sorted({tok.convert_tokens_to_ids("yes"), tok.convert_tokens_to_ids("Yes")})
    batch = images(2)
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": tier.question}]}]
    text = tier.processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    for im, p in zip(batch, tier.predict(batch)):
        enc = tier.processor(text=[text], images=[[im]], return_tensors="pt")
        with torch.no_grad():
            probs = torch.softmax(tier.model(**enc).logits[0, -1].double(), -1)
        py, pn = probs[tier.yes_ids].sum().item(), probs[tier.no_ids].sum().item()
        assert p == pytest.approx(py / (py + pn), abs=1e-5)
    with pytest.raises(ValueError, match="yes_tokens"):
        create_tier(TierConfig(name="v", kind="vlm", model=str(tiny_dir("qwen25_vl")), device="cpu",
                               options={"yes_tokens": ["YES"]}))


def test_yes_no_logit_from_partial_top_logprobs():
    assert yes_no_logit([(" Yes", -0.1), ("yes", -3.0), ("No", -2.5)]) == pytest.approx(
        np.logaddexp(-0.1, -3.0) + 2.5)
    # "no" missing from the top-k: bounded by the smallest logprob shown
    assert yes_no_logit([("Yes", -0.2), ("maybe", -4.0)]) == pytest.approx(-0.2 + 4.0)
    assert yes_no_logit([("maybe", -0.1)]) is None


# ---- the tier contract ------------------------------------------------------------------------
def test_every_kind_in_the_table_loads_and_names_itself():
    from roadwork.tiers import KINDS

    for kind, row in KINDS.items():
        assert row.load().kind == kind


def test_option_typo_in_a_yaml_config_is_one_line_naming_the_field(tmp_path):
    from roadwork.config import Config, ConfigError

    path = tmp_path / "bad.yaml"
    path.write_text("tiers:\n  - kind: classifier\n  - name: det\n    kind: detector\n    options:\n"
                    "      min_scor: 0.1\n")
    with pytest.raises(ConfigError) as e:
        Config.from_yaml(path)
    assert str(e.value) == f"{path}: tiers.1.options.min_scor: unknown field (did you mean 'min_score'?)"
    with pytest.raises(ConfigError, match=r"tiers.0.options.min_score: Input should be less than or equal to 1"):
        Config.from_dict({"tiers": [{"kind": "detector", "options": {"min_score": 2}}]})


def test_option_defaults_are_filled_in_and_shown_by_to_yaml():
    from roadwork.config import Config
    from roadwork.tiers.kinds import DEFAULT_POSITIVE, ZeroShotOptions

    cfg = Config.from_dict({"tiers": [{"kind": "zeroshot", "model": "m", "options": {"family": "clip"}}]})
    assert cfg.tiers[0].options == ZeroShotOptions(family="clip").model_dump(mode="json")
    text = cfg.to_yaml()
    assert "text_max_length: 64" in text and DEFAULT_POSITIVE[0] in text and "family: clip" in text


def test_base_class_batches_converts_and_cleans():
    from roadwork.tiers.base import Tier

    class Fake(Tier):
        kind = "fake"
        seen: list[tuple[int, set[str]]] = []

        @classmethod
        def build(cls, cfg, options):
            return cls()

        def predict_batch(self, ims):
            self.seen.append((len(ims), {im.mode for im in ims}))
            return np.array([np.nan if im.width == 1 else 2.0 for im in ims])

    tier = Fake()
    tier.configure("f", batch_size=3, cost=None)
    assert tier.cost == Fake.default_cost and tier.calibrated
    ims = [Image.new("L", (1 + i, 4)) for i in range(7)]
    p = tier.predict(ims)
    assert [n for n, _ in tier.seen] == [3, 3, 1] and all(m == {"RGB"} for _, m in tier.seen)
    np.testing.assert_array_equal(p, [0.5] + [1.0] * 6)  # NaN -> 0.5, out of range clipped
    assert tier.predict([]).shape == (0,)
