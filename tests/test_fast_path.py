"""The bytes-in fast path on the CPU: header checks of encoded images, the device preprocessor (run on
a CPU device: libjpeg-turbo instead of nvjpeg, same code) against the transformers processor, the CPU
fallback for non-JPEG and corrupt input, batch buckets, and the engine and shells taking bytes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from roadwork.config import TierConfig
from roadwork.decode import ImageError, decode_bytes
from roadwork.fast.encoded import Encoded, as_image, jpeg_header
from roadwork.fast.execution import bucket_plan


def _jpeg(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=75, **kw)
    return buf.getvalue()


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def _corrupt_jpeg(im: Image.Image) -> bytes:
    """A valid header (the size check passes) followed by entropy data that no decoder reads."""
    data = bytearray(_jpeg(im))
    data[600:] = b"\x00" * (len(data) - 600)
    return bytes(data)


# ---- headers ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [{}, {"progressive": True}, {"optimize": True}])
def test_jpeg_header_reads_the_frame_size(street_images, kw):
    im = street_images[0].resize((301, 173))
    assert jpeg_header(_jpeg(im, **kw)) == (173, 301, 3)
    assert jpeg_header(_jpeg(im.convert("L"), **kw)) == (173, 301, 1)


def test_jpeg_header_is_none_for_other_formats_and_cut_headers(street_images):
    data = _jpeg(street_images[0])
    assert jpeg_header(_png(street_images[0])) is None
    assert jpeg_header(data[:20]) is None
    assert jpeg_header(b"\xff\xd8\xff") is None
    assert jpeg_header(b"") is None


def test_encoded_checks_limits_from_the_header(street_images):
    im = street_images[0]
    enc = Encoded.from_bytes(_jpeg(im), "a.jpg")
    assert enc.jpeg and enc.size == im.size
    png = Encoded.from_bytes(_png(im), "b.png")
    assert not png.jpeg and png.size == im.size
    with pytest.raises(ImageError, match="pixel limit"):
        Encoded.from_bytes(_jpeg(im), "big.jpg", max_pixels=1000)
    with pytest.raises(ImageError, match="pixel limit"):
        Encoded.from_bytes(_png(im), "big.png", max_pixels=1000)
    with pytest.raises(ImageError, match="byte limit"):
        Encoded.from_bytes(_jpeg(im), "a.jpg", max_bytes=100)
    with pytest.raises(ImageError, match="empty"):
        Encoded.from_bytes(b"", "e")
    with pytest.raises(ImageError, match="not an image"):
        Encoded.from_bytes(b"<html>hello</html>", "page")


def test_encoded_from_base64_and_cpu_decode_equal_decode_bytes(street_images):
    import base64

    data = _jpeg(street_images[1])
    enc = Encoded.from_base64("data:image/jpeg;base64," + base64.b64encode(data).decode(), "wire")
    assert np.array_equal(np.asarray(enc.image()), np.asarray(decode_bytes(data)))
    assert not enc.broken


def test_corrupt_data_behind_a_valid_header_is_flagged_not_raised(street_images):
    enc = Encoded.from_bytes(_corrupt_jpeg(street_images[0]), "bad.jpg")
    im = as_image(enc)
    assert enc.broken and im.size == street_images[0].size


# ---- device preprocessing (on a CPU device) vs the transformers processor ------------------------
@pytest.fixture(scope="module")
def default_processor():
    from transformers import AutoImageProcessor

    from conftest import REPO

    return AutoImageProcessor.from_pretrained(str(REPO / "models" / "default"))


def test_device_preprocessor_matches_the_processor_and_falls_back_per_item(default_processor, street_images):
    import torch

    from roadwork.fast.gpu_decode import DevicePreprocessor
    from roadwork.fast.preprocess import PreprocessSpec

    a, b, c = street_images
    items = [Encoded.from_bytes(_jpeg(a), "a.jpg"),
             Encoded.from_bytes(_jpeg(b.resize((224, 224))), "b224.jpg"),
             Encoded.from_bytes(_png(c), "c.png"),  # not a JPEG: the CPU decoder
             a,  # already decoded
             Encoded.from_bytes(_jpeg(b, progressive=True), "p.jpg"),
             Encoded.from_bytes(_jpeg(c.convert("L")), "gray.jpg"),
             Encoded.from_bytes(_corrupt_jpeg(a), "bad.jpg")]
    pre = DevicePreprocessor(PreprocessSpec.from_config(default_processor.to_dict()), torch.device("cpu"),
                             torch.float32)
    x, broken = pre(items)
    ref = default_processor(images=[as_image(it) for it in items], return_tensors="pt")["pixel_values"]
    assert x.shape == ref.shape == (7, 3, 224, 224)
    assert broken.tolist() == [False] * 6 + [True]
    assert pre.stats == {"nvjpeg": 4, "cpu": 2, "broken": 1}  # 'nvjpeg': decode_jpeg's batch, here on the CPU
    assert float((x[:6] - ref[:6]).abs().max()) < 1e-4


def test_device_preprocessor_refuses_processors_it_cannot_reproduce():
    import torch

    from roadwork.fast.gpu_decode import DevicePreprocessor
    from roadwork.fast.preprocess import PreprocessSpec

    with pytest.raises(ValueError, match="fixed-size"):
        DevicePreprocessor(PreprocessSpec(height=None, width=None, shortest_edge=224), torch.device("cpu"),
                           torch.float32)


# ---- buckets --------------------------------------------------------------------------------------
BUCKETS = [1, 8, 64, 256, 1024]


@pytest.mark.parametrize("n,expected", [
    (1, [(1, 1)]), (2, [(2, 8)]), (8, [(8, 8)]), (9, [(8, 8), (1, 1)]), (40, [(40, 64)]),
    (300, [(256, 256), (44, 64)]), (1024, [(1024, 1024)]), (1030, [(1024, 1024), (6, 8)]),
    (3000, [(1024, 1024), (1024, 1024), (952, 1024)]),
])
def test_bucket_plan_examples(n, expected):
    assert bucket_plan(n, BUCKETS) == expected


@pytest.mark.parametrize("n", range(0, 2100, 7))
def test_bucket_plan_covers_the_batch_with_little_padding(n):
    plan = bucket_plan(n, BUCKETS)
    assert sum(r for r, _ in plan) == n
    assert all(b in BUCKETS and 0 < r <= b for r, b in plan)
    assert sum(b for _, b in plan) <= max(2 * n, BUCKETS[1])  # at most double the rows (or one small bucket)


def test_bucket_plan_refuses_bad_buckets():
    with pytest.raises(ValueError):
        bucket_plan(3, [0, 4])
    with pytest.raises(ValueError):
        bucket_plan(3, [])


def test_runner_pads_to_buckets_and_keeps_row_order():
    """The bucketed path (what compile/CUDA graphs use on a GPU) with a row-wise function on a CPU."""
    import torch

    from roadwork.fast.execution import Runner
    from roadwork.tiers.kinds import TorchOptions

    shapes = []

    def fn(x):
        shapes.append(x.shape[0])
        return x.flatten(1).sum(1)

    runner = Runner(fn, TorchOptions(buckets=[2, 8]), torch.device("cpu"), (3, 4, 4), torch.float32)
    assert not runner.static and runner.describe()["compile"] is False  # every switch inert on a CPU
    runner.static = True  # the GPU's bucketed path, forced
    x = torch.randn(11, 3, 4, 4)
    out = runner(x)
    assert shapes == [8, 8]  # 8 full, then 3 padded to 8 rather than 2 + 1
    torch.testing.assert_close(out, x.flatten(1).sum(1))


def test_torch_options_validate_buckets():
    from pydantic import ValidationError

    from roadwork.tiers.kinds import TorchOptions

    assert TorchOptions(buckets=[64, 1, 8, 8]).buckets == [1, 8, 64]
    with pytest.raises(ValidationError):
        TorchOptions(buckets=[0, 8])
    with pytest.raises(ValidationError):
        TorchOptions(compiled=True)  # a typo is an error, not a default


# ---- the engine and shells on bytes -------------------------------------------------------------
def test_engine_answers_encoded_like_decoded_on_cpu(tiny_vit_dir, street_images):
    from roadwork.engine import Engine

    engine = Engine.from_pretrained(str(tiny_vit_dir), device="cpu")
    assert engine.takes_encoded is False  # CPU: tiers get PIL images (decoded by the tier base)
    data = [_jpeg(im) for im in street_images]
    decoded = [decode_bytes(d) for d in data]
    enc = [Encoded.from_bytes(d, f"i{k}") for k, d in enumerate(data)]
    bad = Encoded.from_bytes(_corrupt_jpeg(street_images[0]), "bad.jpg")
    got = engine.predict(enc + [bad])
    want = engine.predict(decoded)
    assert [r.prob for r in got[:3]] == pytest.approx([r.prob for r in want], abs=1e-6)
    assert got[3].prob == 0.5


def test_classifier_options_carry_the_execution_switches(tiny_vit_dir):
    from roadwork.tiers import create_tier

    tier = create_tier(TierConfig(model=str(tiny_vit_dir), device="cpu",
                                  options={"compile": True, "cuda_graphs": True, "buckets": [4, 1]}))
    assert tier.takes_encoded is False and tier.device_pre is None  # no CUDA: CPU processor, eager
    assert tier.runner.describe() == {"device": "cpu", "dtype": "float32", "channels_last": False,
                                      "compile": False, "cuda_graphs": False, "buckets": None}
    assert tier.runner.buckets == [1, 4]


def test_http_decode_keeps_refusals_with_encoded_inputs(street_images):
    from roadwork.serve.http import _Refuse, _decode_all

    good = _jpeg(street_images[0])
    out = _decode_all([("a", good)], 10**7, 10**8, encoded=True)
    assert isinstance(out[0], Encoded) and out[0].jpeg
    with pytest.raises(_Refuse) as e:
        _decode_all([("a", good), ("b", b"not an image")], 10**7, 10**8, encoded=True)
    assert [x["index"] for x in e.value.errors] == [1]
