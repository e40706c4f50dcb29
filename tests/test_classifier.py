"""Classifier tier: loads transformers folders of several families and answers exactly what the
subnet base miner's pipeline answers on the same folder."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from roadwork.tiers.classifier import ClassifierTier, roadwork_index
from roadwork.train import models


def _save(model, path, size=32, head_std=1.0):
    from roadwork.train.temperature import head_linear

    with torch.no_grad():  # timm's test nets start with ~1e-5 activations and a zero head
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.fill_(1.0)
            elif isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight)
        head_linear(model).weight.normal_(0, head_std)
        head_linear(model).bias.normal_(0, 0.5)
    model.save_pretrained(path)
    models.make_processor(size).save_pretrained(path)
    return path


def _images(n=5, seed=0):
    rng = np.random.default_rng(seed)
    # odd sizes on purpose: the processor must resize them the same way for tier and pipeline
    # and different mean colours: globally pooled random nets barely tell apart i.i.d. noise images
    out = []
    for i in range(n):
        base = rng.integers(0, 256, 3)
        noise = rng.integers(-40, 41, (40 + 7 * i, 56 - 3 * i, 3))
        out.append(Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)))
    return out


def pipeline_scores(folder, images):
    from transformers import pipeline

    clf = pipeline("image-classification", model=str(folder), device="cpu")
    return np.array([{d["label"]: d["score"] for d in clf(im)}["Roadwork"] for im in images])


def _hub_like(family: str, path):
    """A tiny checkpoint of another family with a 1000-class head, as found on the hub."""
    from transformers import Dinov2Config, Dinov2ForImageClassification, SwinConfig, SwinForImageClassification

    if family == "dinov2":
        m = Dinov2ForImageClassification(Dinov2Config(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                                      num_attention_heads=2, intermediate_size=64, num_labels=1000))
    else:
        m = SwinForImageClassification(SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1],
                                                  num_heads=[1, 2], window_size=4, num_labels=1000))
    m.save_pretrained(path)
    return str(path)


@pytest.mark.parametrize("arch", ["vit-micro", "resnet-tiny", "convnext-atto", "timm/test_resnet", "timm/test_vit",
                                  "init:dinov2", "init:swin"])
def test_folder_loads_and_matches_base_miner_pipeline(arch, tmp_path):
    torch.manual_seed(0)
    size = 224 if arch == "timm/test_vit" else 32  # timm's test_vit has a fixed grid: read below
    if arch.startswith("init:"):  # re-headed to {None, Roadwork} the way `roadwork train --init` does it
        model = models.build_model(init=_hub_like(arch[5:], tmp_path / "hub"))
    else:
        model = models.build_model(arch, image_size=size)
    if arch == "timm/test_vit":
        size = model.timm_model.pretrained_cfg["input_size"][-1]
    folder = _save(model, tmp_path / "m", size)
    images = _images()
    tier = ClassifierTier(str(folder), device="cpu")
    p = tier.predict(images)
    assert p.shape == (len(images),) and p.dtype == np.float64
    assert np.all((p >= 0) & (p <= 1))
    assert tier.model.config.id2label == {0: "None", 1: "Roadwork"}
    np.testing.assert_allclose(p, pipeline_scores(folder, images), atol=1e-5)
    # random heads give varied answers: a constant would make the comparison above vacuous
    assert np.ptp(p) > 1e-4


def test_batching_does_not_change_answers(tiny_vit_dir):
    images = _images(7)
    a = ClassifierTier(str(tiny_vit_dir), device="cpu", batch_size=3).predict(images)
    b = ClassifierTier(str(tiny_vit_dir), device="cpu", batch_size=32).predict(images)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_roadwork_index_follows_label_names(tmp_path):
    assert roadwork_index({0: "None", 1: "Roadwork"}) == 1
    assert roadwork_index({0: "roadwork", 1: "none"}) == 0
    assert roadwork_index({0: "LABEL_0", 1: "LABEL_1"}) == 1
    # a checkpoint with the classes the other way round: the tier must read class 0
    torch.manual_seed(1)
    model = models.build_model("resnet-tiny")
    model.config.id2label, model.config.label2id = {0: "Roadwork", 1: "None"}, {"Roadwork": 0, "None": 1}
    folder = _save(model, tmp_path / "rev")
    tier = ClassifierTier(str(folder), device="cpu")
    assert tier.index == 0
    np.testing.assert_allclose(tier.predict(_images()), pipeline_scores(folder, _images()), atol=1e-5)


def test_unfolded_calibration_in_roadwork_json_is_applied(tmp_path):
    torch.manual_seed(2)
    folder = _save(models.build_model("resnet-tiny"), tmp_path / "m", head_std=0.05)
    images = _images()
    tier = ClassifierTier(str(folder), device="cpu")
    raw = tier.predict(images)
    with torch.no_grad():
        z = tier.model(**tier.processor(images=images, return_tensors="pt")).logits.double().numpy()
    margin = z[:, 1] - z[:, 0]
    assert np.abs(margin).max() < 20 and np.ptp(margin) > 0.01  # not saturated, not constant
    T, t = 2.0, 0.3
    (folder / "roadwork.json").write_text(json.dumps({"folded": False, "temperature": T, "threshold": t}))
    calibrated = ClassifierTier(str(folder), device="cpu").predict(images)
    expected = 1 / (1 + np.exp(-(margin / T - math.log(t / (1 - t)))))
    np.testing.assert_allclose(calibrated, expected, atol=1e-5)
    # a folded model (what `roadwork train` writes) is used as it is
    (folder / "roadwork.json").write_text(json.dumps({"folded": True, "temperature": T, "threshold": t}))
    np.testing.assert_allclose(ClassifierTier(str(folder), device="cpu").predict(images), raw, atol=1e-7)


def test_missing_model_names_the_path(tmp_path):
    with pytest.raises(ValueError, match="nope"):
        ClassifierTier(str(tmp_path / "nope"), device="cpu")
