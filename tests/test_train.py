"""Training: LoRA/DoRA steps, calibration maths and folding, the full `train()` run on a tiny data set
(pipeline compatibility, resume), samplers, splits, synth filtering and the CLI (the ablation: test_ablation.py)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image, ImageDraw

from roadwork.train import temperature as cal
from roadwork.train import models
from roadwork.train.config import TrainConfig

SOURCES = {"roadwork_clips": (90, 90, 110), "idd_lite": (150, 120, 80), "camvid": (60, 110, 60)}


def make_dataset(root: Path, per_group: int = 3, groups: int = 4, size=(48, 40)) -> Path:
    """Three sources with their own 'camera' tint; positives carry an orange cone-ish triangle."""
    rng = np.random.default_rng(0)
    rows = []
    for source, tint in SOURCES.items():
        for g in range(groups):
            for k in range(per_group):
                label = int(source != "camvid" and (g % 2 == 0))
                arr = np.clip(np.array(tint) + rng.integers(-30, 31, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
                img = Image.fromarray(arr)
                if label:
                    x = int(rng.integers(8, size[0] - 16))
                    ImageDraw.Draw(img).polygon([(x, 34), (x + 12, 34), (x + 6, 14)], fill=(255, 110, 0))
                rel = f"{source}/g{g}/{k}.jpg"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                img.save(root / rel, quality=90)
                rows.append({"path": rel, "label": label, "source": source, "group": f"{source}:{g}",
                             "license": f"{source} test license"})
    with (root / "manifest.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root / "manifest.csv"


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"))


def tiny_cfg(data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(data=[str(data)], out=str(out), arch="resnet-tiny", epochs=2, batch_size=8, image_size=32,
                workers=0, val_fraction=0.3, camera_jitter=False, patience=5, device="cpu", lr=3e-3)
    base.update(kw)
    return TrainConfig(**base)


# ---- LoRA / DoRA -----------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["vit-micro", "resnet-tiny"])
@pytest.mark.parametrize("mode", ["lora", "dora"])
def test_adapter_steps_reduce_loss_and_merge_to_plain_model(arch, mode, tmp_path):
    torch.manual_seed(0)
    model = models.apply_peft(models.build_model(arch, image_size=32), mode, rank=4, alpha=8, dropout=0.0)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(("lora_" in n) or ("modules_to_save" in n) for n in trainable)
    assert any("modules_to_save" in n for n in trainable)  # the head trains fully
    if mode == "dora":
        assert any("lora_magnitude_vector" in n for n in trainable)
    x = torch.randn(8, 3, 32, 32)
    y = torch.tensor([0, 1] * 4)
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    model.train()
    for _ in range(15):
        loss = torch.nn.functional.cross_entropy(model(pixel_values=x).logits, y)
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0], losses
    model.eval()
    with torch.no_grad():
        before = model(pixel_values=x).logits
    plain = models.unwrap(model)
    assert not any("lora" in n for n, _ in plain.named_parameters())
    plain.save_pretrained(tmp_path / "merged")
    from transformers import AutoModelForImageClassification

    again = AutoModelForImageClassification.from_pretrained(tmp_path / "merged").eval()  # no peft needed
    with torch.no_grad():
        torch.testing.assert_close(again(pixel_values=x).logits, before, atol=1e-4, rtol=1e-4)


# ---- calibration -----------------------------------------------------------------------------------
def test_fit_temperature_recovers_known_temperature():
    rng = np.random.default_rng(0)
    true_margin = rng.normal(0, 3, 40_000)
    labels = (rng.random(len(true_margin)) < 1 / (1 + np.exp(-true_margin))).astype(int)
    for T in (0.4, 2.5):
        assert cal.fit_temperature(true_margin * T, labels) == pytest.approx(T, rel=0.05)


def test_fit_threshold_finds_the_gap_and_balances_classes():
    from sklearn.metrics import matthews_corrcoef

    p = np.array([0.1, 0.2, 0.3, 0.35, 0.6, 0.7, 0.8, 0.9])
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    t, best = cal.fit_threshold(p, y)
    assert 0.35 < t < 0.6 and best == pytest.approx(1.0)
    # one positive amid many negatives: the balanced fit trades some false alarms for the positive
    p = np.r_[np.linspace(0.0, 0.5, 50), [0.45]]
    y = np.r_[np.zeros(50, int), [1]]
    t_plain, _ = cal.fit_threshold(p, y)
    t_bal, _ = cal.fit_threshold(p, y, balanced=True)
    assert t_bal <= t_plain
    # a positive scored lowest: nothing separates, and no threshold may invert every decision
    t, best = cal.fit_threshold(np.array([0.1, 0.6, 0.7, 0.8]), np.array([1, 0, 0, 0]))
    assert (t, best) == (0.5, 0.0)
    # two separate best plateaus: the answer lies inside one of them
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    y = np.array([0, 0, 1, 0, 1, 1, 0, 1])
    t, best = cal.fit_threshold(p, y)
    assert matthews_corrcoef(y, p > t) == pytest.approx(best)


def test_folding_keeps_decisions_and_equals_calibrated_probability():
    torch.manual_seed(0)
    model = models.build_model("resnet-tiny").eval()
    with torch.no_grad():
        cal.head_linear(model).weight.normal_(0, 0.5)
    x = torch.randn(64, 3, 32, 32)
    with torch.no_grad():
        z = model(pixel_values=x).logits.double()
    d = (z[:, 1] - z[:, 0]).numpy()
    T, t = 1.7, float(np.quantile(1 / (1 + np.exp(-d / 1.7)), 0.6))
    cal.fold_into_head(model, T, t)
    with torch.no_grad():
        p = torch.softmax(model(pixel_values=x).logits.double(), -1)[:, 1].numpy()
    np.testing.assert_allclose(p, cal.calibrated_prob(d, T, t), atol=1e-6)
    q = 1 / (1 + np.exp(-d / T))
    np.testing.assert_array_equal(p > 0.5, q > t)
    assert 0 < (p > 0.5).sum() < len(p)


# ---- the full run ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    from roadwork.train.finetune import train

    out = tmp_path_factory.mktemp("run") / "model"
    summary = train(tiny_cfg(tiny_data, out, holdout_source=["idd_lite"], challenge=True, epochs=2))
    return out, summary


def test_train_writes_a_pipeline_folder_whose_score_is_the_tier_probability(trained, street_images):
    from transformers import pipeline

    from roadwork.tiers.classifier import ClassifierTier

    out, summary = trained
    for f in ("config.json", "model.safetensors", "preprocessor_config.json", "roadwork.json",
              "train_config.yaml", "model_card.json", "README.md"):
        assert (out / f).is_file(), f
    assert not (out / "checkpoints").exists()
    meta = json.loads((out / "roadwork.json").read_text())
    assert meta["folded"] is True and meta["temperature"] > 0 and 0 < meta["threshold"] < 1
    assert meta["split"]["holdout_sources"] == ["idd_lite"] and meta["cross"]["n"] == 12
    assert meta["val"]["n"] > 0 and len(meta["history"]) == meta["epochs_run"] == 2
    assert meta["licenses"]["camvid"] == ["camvid test license"]
    cfg = yaml.safe_load((out / "train_config.yaml").read_text())
    assert cfg["command"].startswith("roadwork train ") and cfg["config"]["holdout_source"] == ["idd_lite"]
    images = street_images + [Image.new("RGB", (50, 40), (255, 120, 0))]
    tier = ClassifierTier(str(out), device="cpu")
    clf = pipeline("image-classification", model=str(out), device="cpu")
    ours = tier.predict(images)
    theirs = np.array([{d["label"]: d["score"] for d in clf(im)}["Roadwork"] for im in images])
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_train_learns_the_tiny_task(tiny_data, tmp_path):
    """Without the simulator the toy task (orange triangle) is easy: validation must get it."""
    from roadwork.train.finetune import train

    summary = train(tiny_cfg(tiny_data, tmp_path / "m", epochs=6, challenge=False, patience=10))
    assert summary["val"]["auc"] > 0.9, summary["val"]
    losses = [h["loss"] for h in summary["history"]]
    assert losses[-1] < losses[0]


def test_resume_continues_exactly_where_a_crash_left_off(tiny_data, tmp_path):
    from safetensors.torch import load_file

    from roadwork.train.finetune import train

    straight = tiny_cfg(tiny_data, tmp_path / "a", epochs=2, challenge=False, keep_checkpoints=True)
    train(straight)

    class Crash(RuntimeError):
        pass

    def crash_after_first(epoch, row):
        if epoch == 1:
            raise Crash

    crashed = straight.model_copy(update={"out": str(tmp_path / "b")})
    with pytest.raises(Crash):
        train(crashed, callbacks=[crash_after_first])
    assert (tmp_path / "b" / "checkpoints" / "last.pt").is_file()
    assert not (tmp_path / "b" / "model.safetensors").exists()
    summary = train(crashed.model_copy(update={"resume": True}))
    assert [h["epoch"] for h in summary["history"]] == [1, 2]
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5)


def test_time_limit_shrinks_the_schedule_to_what_fits():
    from roadwork.train.finetune import _fit_schedule
    from roadwork.train.progress import Reporter

    cfg = TrainConfig(data=["d"], epochs=30, time_limit=0.5)  # 30 s
    state = {"epoch": 3, "planned": 30, "history": [{"seconds": 10.0}, {"seconds": 5.0}, {"seconds": 5.0}]}
    horizon = {"total": 30 * 7}
    _fit_schedule(state, cfg, 22.0, horizon, 7, Reporter(enabled=False))
    assert state["planned"] == 4 and horizon["total"] == 28  # 8 s left: one more 5 s epoch
    _fit_schedule(state, cfg, 40.0, horizon, 7, Reporter(enabled=False))
    assert state["planned"] == 3  # over time: stop now, never plan below the epochs done


def test_time_limited_run_stops_and_still_saves(tiny_data, tmp_path):
    from roadwork.train.finetune import train

    summary = train(tiny_cfg(tiny_data, tmp_path / "t", epochs=5, challenge=False, time_limit=1e-4))
    assert summary["epochs_run"] == 1 and (tmp_path / "t" / "model.safetensors").is_file()


@pytest.mark.parametrize("mode", ["lora", "dora"])
def test_adapter_run_saves_a_merged_folder_that_loads_without_peft(mode, tiny_data, tiny_vit_dir, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModelForImageClassification

    from roadwork.train.finetune import train

    out = tmp_path / mode
    summary = train(tiny_cfg(tiny_data, out, arch=None, init=str(tiny_vit_dir), mode=mode, epochs=1, challenge=False))
    assert summary["mode"] == mode and summary["init"] == str(tiny_vit_dir)
    assert not any("lora" in k or "base_layer" in k for k in load_file(out / "model.safetensors"))
    model = AutoModelForImageClassification.from_pretrained(out)
    assert type(model).__name__ == "ViTForImageClassification" and model.config.id2label[1] == "Roadwork"


def test_resume_without_checkpoint_is_a_clear_error(tiny_data, tmp_path):
    from roadwork.train.finetune import train

    with pytest.raises(FileNotFoundError, match="last.pt"):
        train(tiny_cfg(tiny_data, tmp_path / "none", resume=True))


@pytest.mark.slow
def test_ddp_two_cpu_processes_train_and_rank0_saves(tiny_data, tmp_path):
    """The torchrun path: WORLD_SIZE=2 on CPU (gloo), sharded sampler, rank 0 writes the folder."""
    import os
    import subprocess
    import sys

    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "roadwork.train", "--data", str(tiny_data), "--out", str(out), "--arch", "resnet-tiny", "--epochs", "2",
           "--batch-size", "4", "--image-size", "32", "--workers", "0", "--device", "cpu", "--no-challenge",
           "--no-camera-jitter", "--val-fraction", "0.3", "--holdout-source", "idd_lite"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=Path(__file__).parent.parent)
    assert res.returncode == 0, res.stderr[-3000:]
    meta = json.loads((out / "roadwork.json").read_text())
    assert meta["epochs_run"] == 2 and meta["cross"]["n"] == 12
    assert res.stderr.count("device cpu x2") == 1  # only rank 0 reports


# ---- pieces ----------------------------------------------------------------------------------------
def test_balanced_sampler_draws_half_positives_and_shards_across_ranks():
    from roadwork.train.loader import BalancedSampler

    labels = [1] * 13 + [0] * 87
    s = BalancedSampler(labels, 0.5, num_samples=4000, seed=3)
    s.set_epoch(1)
    assert list(s)[:3] == [(i, 1) for i in s.indices()[:3]]
    idx = s.indices()
    assert abs(np.mean([labels[i] for i in idx]) - 0.5) < 0.04
    s.set_epoch(2)
    assert s.indices() != idx  # a new draw each epoch
    shards = []
    for rank in range(2):
        r = BalancedSampler(labels, 0.5, num_samples=4000, seed=3, rank=rank, world=2)
        r.set_epoch(1)
        shards.append(r.indices())
    assert len(shards[0]) == len(shards[1]) == 2000
    assert sorted(shards[0] + shards[1]) == sorted(idx)


def test_persistent_workers_see_a_new_augmentation_each_epoch(tiny_data):
    """Workers keep their own dataset copy: the epoch has to come with the index, not set_epoch()."""
    from torch.utils.data import DataLoader

    from roadwork.data import open_source
    from roadwork.train.loader import Augment, BalancedSampler, RecordImages

    recs = open_source(tiny_data).records()[:4]
    sampler = BalancedSampler([0, 0, 0, 0], None, seed=0)
    loader = DataLoader(RecordImages(recs, Augment(32, challenge_p=0.0), seed=0), sampler=sampler, batch_size=4,
                        num_workers=1, persistent_workers=True)
    seen = []
    for epoch in (1, 2):
        sampler.set_epoch(epoch)
        x, _, idx = next(iter(loader))
        seen.append(dict(zip(idx.tolist(), x)))
    assert not all(torch.equal(seen[0][i], seen[1][i]) for i in range(4))
    # and in-process the same (index, epoch) gives the same pixels
    ds = RecordImages(recs, Augment(32, challenge_p=0.0), seed=0)
    assert torch.equal(ds[(2, 2)][0], seen[1][2])


def test_validation_view_is_the_same_every_time(tiny_data):
    from roadwork.data import open_source
    from roadwork.train.loader import RecordImages, ValView

    recs = open_source(tiny_data).records()[:4]
    x1 = RecordImages(recs, ValView(32, challenge=True, protocol="2026-04"), seed=5)[2][0]
    x2 = RecordImages(recs, ValView(32, challenge=True, protocol="2026-04"), seed=5)[2][0]
    assert torch.equal(x1, x2) and x1.shape == (3, 32, 32) and x1.dtype == torch.uint8
    assert not torch.equal(x1, RecordImages(recs, ValView(32, challenge=True, protocol="2026-04"), seed=6)[2][0])
    # 2026-05 draws nothing: the native image as JPEG q75, whatever the seed
    n5, n6 = (RecordImages(recs, ValView(32, challenge=True), seed=s)[2][0] for s in (5, 6))
    assert torch.equal(n5, n6) and n5.shape == (3, 32, 32)


def test_train_protocol_flag_is_checked():
    from roadwork.challenge.protocols import DEFAULT_PROTOCOL
    from roadwork.train.config import TrainConfig

    assert TrainConfig(data=["x"]).resolved().protocol == DEFAULT_PROTOCOL
    assert "--protocol 2026-04" in TrainConfig(data=["x"], protocol="2026-04").command()
    with pytest.raises(ValueError, match="--protocol 2025"):
        TrainConfig(data=["x"], protocol="2025").resolved()


def test_synth_records_on_held_out_scenes_are_dropped(tmp_path):
    from roadwork.train.prepare import load_synth

    rows = [("a.jpg", "idd_lite", "idd_lite/x/1.jpg"), ("b.jpg", "camvid", "camvid/s/2.jpg"),
            ("c.jpg", "camvid", "camvid/s/3.jpg")]
    for name, _, _ in rows:
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    with (tmp_path / "manifest.csv").open("w") as f:
        f.write("path,label,source,group,scene_source,scene_path\n")
        for name, src, scene in rows:
            f.write(f"{name},1,synth,{name},{src},{scene}\n")
    kept, dropped = load_synth([str(tmp_path)], {"idd_lite"}, {"/data/root/camvid/s/3.jpg"})
    assert [Path(r.path).name for r in kept] == ["b.jpg"] and dropped == 2


def test_synth_on_a_shallow_val_scene_is_dropped(tmp_path):
    """IDD scene paths are two components deep (`idd_lite/x.jpg`): they must still match a val record
    whose path has another root, and a same-named file in another folder must not."""
    from roadwork.train.prepare import load_synth

    rows = [("a.jpg", "idd_lite", "idd_lite/x.jpg"), ("b.jpg", "camvid", "camvid/x.jpg")]
    for name, _, _ in rows:
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    with (tmp_path / "manifest.csv").open("w") as f:
        f.write("path,label,source,group,scene_source,scene_path\n")
        for name, src, scene in rows:
            f.write(f"{name},1,synth,{name},{src},{scene}\n")
    kept, dropped = load_synth([str(tmp_path)], set(), {"/work/devpack/idd_lite/x.jpg"})
    assert [Path(r.path).name for r in kept] == ["b.jpg"] and dropped == 1


def test_subsample_keeps_every_source_and_both_labels(tiny_data):
    from roadwork.data import open_source
    from roadwork.train.prepare import subsample

    recs = open_source(tiny_data).records()
    sub = subsample(recs, 16, seed=0)
    assert len(sub) <= 20 and {r.source for r in sub} == set(SOURCES) and {r.label for r in sub} == {0, 1}


def test_build_model_errors_name_the_architecture():
    with pytest.raises(ValueError, match="resnet-tiny"):
        models.build_model("resnet-tinyy")
    with pytest.raises(ValueError, match="timm/no_such_net"):
        models.build_model("timm/no_such_net")
    m = models.build_model("resnet-tiny")
    assert m.config.id2label == {0: "None", 1: "Roadwork"} and m.config.num_labels == 2


def test_init_of_a_dinov3_checkpoint_points_to_timm(tmp_path):
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    DINOv3ViTModel(DINOv3ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1,
                                   num_attention_heads=2, intermediate_size=64)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="timm/vit_small_patch16_dinov3"):
        models.build_model(init=str(tmp_path))


def test_init_reheads_a_checkpoint_with_other_labels(tmp_path):
    from transformers import ViTConfig, ViTForImageClassification

    ViTForImageClassification(ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, intermediate_size=64, num_labels=5)).save_pretrained(tmp_path)
    m = models.build_model(init=str(tmp_path))
    assert m.classifier.out_features == 2 and m.config.id2label == {0: "None", 1: "Roadwork"}


def test_command_round_trips_through_argparse():
    import argparse

    from roadwork.train.config import add_arguments, from_namespace

    cfg = TrainConfig(data=["a.csv", "b"], out="o", arch="convnext-atto", holdout_source=["idd_lite"],
                      camera_jitter=False, lr=1e-3, epochs=3)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    argv = cfg.command().split()[2:]
    assert from_namespace(parser.parse_args(argv)) == cfg


def test_cli_train_smoke_runs(tiny_data, tmp_path):
    from typer.testing import CliRunner

    from roadwork.cli import app

    out = tmp_path / "smoke"
    result = CliRunner().invoke(app, ["train", "--data", str(tiny_data), "--out", str(out), "--smoke",
                                      "--no-camera-jitter", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "roadwork.json").read_text())
    assert meta["arch"] == "resnet-tiny" and meta["epochs_run"] == 1 and math.isfinite(meta["temperature"])


def test_degenerate_calibration_is_named():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    flat = rng.normal(0, 0.05, 400)  # margins with no signal: T runs to its bound, outputs sit near 0.5
    calib = cal.calibrate(flat, y)
    why = cal.degenerate(calib, flat)
    assert why and "constant" in why
    good = np.where(y == 1, 2.0, -2.0) + rng.normal(0, 1, 400)
    assert cal.degenerate(cal.calibrate(good, y), good) is None
