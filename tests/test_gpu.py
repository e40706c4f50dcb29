"""GPU code paths (bf16, channels-last, training on CUDA). Skipped without CUDA; run on the GPU box:
`python -m pytest tests/test_gpu.py`."""

import numpy as np
import pytest
from PIL import Image

from conftest import requires_cuda
from roadwork.config import TierConfig
from roadwork.tiers import create_tier

pytestmark = requires_cuda


def test_classifier_bf16_on_cuda_agrees_with_cpu_fp32(tiny_vit_dir, street_images):
    cpu = create_tier(TierConfig(model=str(tiny_vit_dir), device="cpu", dtype="float32")).predict(street_images)
    gpu_tier = create_tier(TierConfig(model=str(tiny_vit_dir), device="cuda", dtype="auto"))
    assert next(gpu_tier.model.parameters()).dtype.is_floating_point and gpu_tier.device.type == "cuda"
    gpu = gpu_tier.predict(street_images)
    assert gpu.shape == cpu.shape and np.all((gpu >= 0) & (gpu <= 1))
    np.testing.assert_allclose(gpu, cpu, atol=0.02)  # bf16 has ~3 significant digits


def test_training_on_cuda_learns_and_saves_a_cpu_loadable_folder(tmp_path):
    from test_train import make_dataset, tiny_cfg

    from roadwork.train.finetune import train

    data = make_dataset(tmp_path / "data")
    summary = train(tiny_cfg(data, tmp_path / "m", epochs=6, challenge=False, patience=10, device="cuda"))
    losses = [h["loss"] for h in summary["history"]]
    assert losses[-1] < losses[0]
    assert summary["val"]["auc"] > 0.9, summary["val"]
    probs = create_tier(TierConfig(model=str(tmp_path / "m"), device="cpu")).predict([Image.new("RGB", (32, 32))])
    assert probs.shape == (1,) and 0.0 <= probs[0] <= 1.0


@pytest.mark.parametrize("batch", [1, 17])
def test_engine_on_cuda_answers_every_image(tiny_vit_dir, street_images, batch):
    from roadwork.engine import Engine

    engine = Engine.from_pretrained(str(tiny_vit_dir), device="cuda")
    images = (street_images * batch)[:batch]
    results = engine.predict(images)
    assert len(results) == batch and all(0.0 <= r.prob <= 1.0 for r in results)


# ---- the bytes-in fast path (roadwork.fast): nvjpeg + device preprocessing + execution switches ----
def _default_model():
    from conftest import REPO

    return str(REPO / "models" / "default")


def _challenge_jpegs(street_images, n=24, protocol="2026-05"):
    from roadwork.challenge import make_challenge

    rng = np.random.default_rng(0)
    return [make_challenge(street_images[i % len(street_images)], rng, protocol=protocol).jpeg for i in range(n)]


@pytest.mark.parametrize("protocol", ["2026-04", "2026-05"])  # 224x224 letterboxed, and native size
@pytest.mark.parametrize("dtype,bound", [("float32", 0.01), ("bfloat16", 0.03)])
def test_gpu_path_from_bytes_agrees_with_the_cpu_path(street_images, protocol, dtype, bound):
    from roadwork.decode import decode_bytes
    from roadwork.fast.encoded import Encoded

    jpegs = _challenge_jpegs(street_images, protocol=protocol)
    cpu = create_tier(TierConfig(model=_default_model(), device="cpu", dtype="float32",
                                 options={"backend": "torch"}))
    want = cpu.predict([decode_bytes(j) for j in jpegs])
    gpu = create_tier(TierConfig(model=_default_model(), device="cuda", dtype=dtype))
    assert gpu.takes_encoded and gpu.device_pre is not None
    got = gpu.predict([Encoded.from_bytes(j, f"c{i}") for i, j in enumerate(jpegs)])
    assert gpu.device_pre.stats["nvjpeg"] == len(jpegs)  # really decoded on the device
    assert want.std() > 0.05, "the check images give too flat probabilities to compare"
    assert np.abs(got - want).max() < bound, np.abs(got - want).max()


def test_gpu_batch_with_png_and_corrupt_jpeg_falls_back_per_image(street_images):
    import io

    from roadwork.fast.encoded import Encoded

    jpegs = _challenge_jpegs(street_images, n=6)
    buf = io.BytesIO()
    street_images[0].save(buf, "PNG")
    bad = bytearray(jpegs[0])
    bad[600:] = b"\x00" * (len(bad) - 600)
    items = [Encoded.from_bytes(j) for j in jpegs] + [Encoded.from_bytes(buf.getvalue()), Encoded.from_bytes(bytes(bad))]
    tier = create_tier(TierConfig(model=_default_model(), device="cuda", dtype="float32"))
    probs = tier.predict(items)
    ref = tier.predict([Encoded.from_bytes(j) for j in jpegs])
    assert probs.shape == (8,) and np.all((probs >= 0) & (probs <= 1))
    np.testing.assert_allclose(probs[:6], ref, atol=1e-4)  # the bad ones cost the others nothing
    assert tier.device_pre.stats["cpu"] >= 1  # the PNG went through the CPU decoder


@pytest.mark.parametrize("opts", [{"cuda_graphs": True}, {"compile": True, "cuda_graphs": True}])
def test_compile_and_cuda_graphs_match_eager_at_any_batch_size(street_images, opts):
    from roadwork.fast.encoded import Encoded

    items = [Encoded.from_bytes(j) for j in _challenge_jpegs(street_images, n=19, protocol="2026-04")]
    eager = create_tier(TierConfig(model=_default_model(), device="cuda", dtype="bfloat16"))
    fast = create_tier(TierConfig(model=_default_model(), device="cuda", dtype="bfloat16",
                                  options={**opts, "buckets": [1, 8]}))
    fast.warmup()
    assert fast.runner.static
    for n in (1, 3, 8, 19):  # 19 = 8 + 8 + 3 padded to 8
        np.testing.assert_allclose(fast.predict(items[:n]), eager.predict(items[:n]), atol=0.02)
    assert set(fast.runner._graphs) <= {1, 8}


def test_engine_on_cuda_takes_encoded_and_eval_uses_it(tmp_path, street_images):
    from roadwork.engine import Engine
    from roadwork.evaluate import evaluate

    engine = Engine.from_pretrained(_default_model(), device="cuda")
    assert engine.takes_encoded
    for i, im in enumerate(street_images):
        im.save(tmp_path / f"{'roadwork' if i else 'none'}_{i}.jpg", quality=90)
    import csv

    with open(tmp_path / "m.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "source", "group"])
        for i in range(len(street_images)):
            w.writerow([f"{'roadwork' if i else 'none'}_{i}.jpg", int(i > 0), "ex", str(i)])
    rep = evaluate(engine, str(tmp_path / "m.csv"), progress=False)
    assert rep.n == 3 and not rep.errors
    assert engine.tiers[0].device_pre.stats["nvjpeg"] >= 3
