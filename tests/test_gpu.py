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
