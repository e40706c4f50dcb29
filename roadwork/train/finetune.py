"""The training loop behind `roadwork train`.

    records -> group split (+ whole sources held out) -> augment (camera jitter, challenge simulator)
            -> AdamW + cosine, bf16 + channels_last on GPU -> val MCC each epoch, early stopping
            -> best weights -> merge LoRA -> fit T and threshold on val -> fold into the head
            -> save_pretrained folder + roadwork.json + train_config.yaml + model cards

Runs on one CPU, one GPU, or several GPUs under `torchrun` (DDP when
WORLD_SIZE > 1; rank 0 logs and saves). Imports stay light (torch, transformers, numpy, PIL, yaml;
rich only if present) because the GPU machines have few of our other dependencies.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from roadwork.jsonio import json_safe
from roadwork.metrics import binary_metrics, sigmoid, stream_reward
from roadwork.train import temperature as cal
from roadwork.train import prepare as prep
from roadwork.train import models
from roadwork.train.config import TrainConfig
from roadwork.train.locmap import mask_loss
from roadwork.train.loader import BalancedSampler, RecordImages, ValView, normalize, worker_init
from roadwork.train.progress import Reporter

log = logging.getLogger("roadwork.train")

Callback = Callable[[int, dict[str, Any]], None]


# ---- distributed ---------------------------------------------------------------------------------
def _dist_setup(device: str) -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and (world > 1 or dev.index is None):
        # set_device needs an index on some torch releases ("cuda" alone raises on 2.11)
        dev = torch.device("cuda", local if world > 1 else 0)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return rank, world, dev


# ---- evaluation ----------------------------------------------------------------------------------
@torch.no_grad()
def margins(model: nn.Module, images: torch.Tensor, device: torch.device, mean: torch.Tensor,
            std: torch.Tensor, batch_size: int = 256, bf16: bool = True) -> np.ndarray:
    """z_roadwork - z_none for cached uint8 images (P(roadwork) = sigmoid of it, as the pipeline's softmax).
    `bf16=False` for calibration: the saved model runs in fp32 on the miner."""
    model.eval()
    out = []
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and bf16 else nullcontext()
    for s in range(0, len(images), batch_size):
        x = normalize(images[s:s + batch_size].to(device, non_blocking=True), mean, std, device.type == "cuda")
        with amp:
            z = model(pixel_values=x).logits.float()
        out.append((z[:, 1] - z[:, 0]).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def _metrics(d: np.ndarray, y: np.ndarray) -> dict[str, float]:
    p = sigmoid(d)
    m = binary_metrics(y, p)
    m["mcc_best"] = cal.fit_threshold(p, y, balanced=True)[1]
    return m


# ---- schedule ------------------------------------------------------------------------------------
def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.999))


def _cosine(optim: torch.optim.Optimizer, warmup: int, horizon: dict[str, int]) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then cosine to 1% over horizon["total"] steps (which a time limit may shorten)."""
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, horizon["total"] - warmup)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    return torch.optim.lr_scheduler.LambdaLR(optim, f)


# ---- the run -------------------------------------------------------------------------------------
def train(config: TrainConfig, callbacks: Sequence[Callback] = (), targets: Any = None) -> dict[str, Any]:
    """Train, calibrate and save a model folder at `config.out`; returns what roadwork.json holds.
    `targets` (a roadwork.train.distill.Targets) swaps the training set and the loss for distillation."""
    cfg = config.resolved()
    rank, world, device = _dist_setup(cfg.device)
    main = rank == 0
    out = Path(cfg.out)
    ckpt_dir = out / "checkpoints"
    rep = Reporter(enabled=main)
    t_start = time.monotonic()
    torch.manual_seed(cfg.seed)

    split = prep.make_split(cfg)
    rep.info(prep.describe(split))

    model = models.build_model(cfg.arch, cfg.init, cfg.image_size)
    processor = models.make_processor(cfg.image_size, cfg.init)
    model = models.apply_peft(model, cfg.mode, rank=cfg.lora_rank, alpha=2 * cfg.lora_rank)
    if cfg.head == "locmap":  # the map decides; saved as the same standard model (roadwork/train/locmap.py)
        from roadwork.train.locmap import LocMapModel

        model = LocMapModel(model, cfg.pool)
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    mean = torch.tensor(processor.image_mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(processor.image_std, device=device).view(1, 3, 1, 1)
    n_params = models.param_count(model)
    rep.info(f"model: {cfg.init or cfg.arch} ({cfg.mode}), {n_params / 1e6:.2f}M params, "
             f"{sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6:.2f}M trainable; device {device}"
             + (f" x{world}" if world > 1 else ""))

    augment = prep.train_augment(cfg)
    if targets is None:
        masks = None
        if cfg.head == "locmap" and cfg.mask_weight > 0:
            from roadwork.train.locmap import mask_grid

            masks = prep.mask_paths(split)
            rep.info(f"locmap: {sum(m is not None for m in masks)} training images with object masks "
                     f"(pool {cfg.pool}, mask weight {cfg.mask_weight:g})")
        train_set = RecordImages(split.train, augment, seed=cfg.seed, masks=masks,
                                 mask_grid=mask_grid(cfg.image_size) if masks is not None else 28)
        labels = [r.label for r in split.train]
    else:  # distillation: teacher-scored views of the training set (and its unlabelled pool)
        train_set, labels = targets.train_set(split, cfg, augment, rank, world)
    sampler = BalancedSampler(labels, 0.5 if cfg.balance == "sampler" else None, seed=cfg.seed, rank=rank,
                              world=world)
    loader_kw: dict[str, Any] = {"num_workers": cfg.workers, "pin_memory": device.type == "cuda",
                                 "worker_init_fn": worker_init}
    if cfg.workers > 0:
        loader_kw.update(persistent_workers=True, prefetch_factor=4)
    loader = DataLoader(train_set, batch_size=cfg.batch_size, sampler=sampler, drop_last=len(sampler) > cfg.batch_size,
                        **loader_kw)

    val_view = ValView(cfg.image_size, cfg.challenge, protocol=cfg.protocol)
    rep.info("preparing validation images" + (" (challenge simulator, fixed seed)" if cfg.challenge else ""))
    val_x, val_y = prep.cache_images(split.val, val_view, cfg.seed, cfg.workers)
    cross_x, cross_y = prep.cache_images(split.cross, val_view, cfg.seed, cfg.workers)

    weight = None
    if cfg.balance == "loss":
        n1 = max(1, sum(labels))
        n0 = max(1, len(labels) - n1)
        weight = torch.tensor([len(labels) / (2 * n0), len(labels) / (2 * n1)], device=device)
    loss_fn = nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)
    optim = _optimizer(model, cfg)
    steps = max(1, len(loader))
    state = {"epoch": 0, "best": -math.inf, "best_epoch": 0, "bad": 0, "history": [], "planned": cfg.epochs}
    horizon = {"total": cfg.epochs * steps}
    sched = _cosine(optim, int(cfg.warmup_epochs * steps), horizon)
    last_ckpt = ckpt_dir / "last.pt"
    if cfg.resume:
        if not last_ckpt.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {last_ckpt}")
        ck = torch.load(last_ckpt, map_location=device, weights_only=False)
        model.load_state_dict(ck["model"])
        optim.load_state_dict(ck["optim"])
        sched.load_state_dict(ck["sched"])
        state = ck["state"]
        horizon["total"] = state.get("planned", cfg.epochs) * steps
        rep.info(f"resumed from {last_ckpt} after epoch {state['epoch']}")

    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    if main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        prep.save_config(out / "train_config.yaml", cfg, split)

    rep.header(cross=len(cross_y) > 0)
    stopped = ""
    for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
        t0 = time.monotonic()
        sampler.set_epoch(epoch)  # the epoch reaches the augmentation through the sampler's (index, epoch)
        net.train()
        total, seen = 0.0, 0
        with rep.bar(f"epoch {epoch}/{cfg.epochs}", len(loader)) as advance:
            for x, y, extra, *mask in loader:
                x = normalize(x.to(device, non_blocking=True), mean, std, device.type == "cuda")
                y = y.to(device, non_blocking=True)
                with amp:
                    output = net(pixel_values=x)
                    logits = output.logits.float()
                    loss = loss_fn(logits, y) if targets is None else targets.loss(logits, y, extra.to(device))
                    if mask:  # locmap: synthetic images' object masks supervise the map
                        loss = loss + cfg.mask_weight * mask_loss(output.map_logits, mask[0].to(device),
                                                                  mask[1].to(device))
                optim.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 2.0)
                optim.step()
                sched.step()
                total += float(loss.detach()) * len(y)
                seen += len(y)
                advance(float(loss.detach()))
        row = {"epoch": epoch, "loss": total / max(seen, 1), "lr": optim.param_groups[0]["lr"]}
        row.update({f"val_{k}": v for k, v in _metrics(margins(model, val_x, device, mean, std), val_y).items()})
        if len(cross_y):
            row.update({f"cross_{k}": v for k, v in
                        _metrics(margins(model, cross_x, device, mean, std), cross_y).items()})
        row["seconds"] = time.monotonic() - t0
        # the MCC after threshold fitting is what the saved model will get; AUC breaks ties
        score = row["val_mcc_best"] + 1e-3 * (0.0 if math.isnan(row["val_auc"]) else row["val_auc"])
        state["history"].append(row)
        state["epoch"] = epoch
        if score > state["best"]:
            state.update(best=score, best_epoch=epoch, bad=0)
            if main:
                _atomic_save(model.state_dict(), ckpt_dir / "best.pt")
        else:
            state["bad"] += 1
        if main:
            _atomic_save({"model": model.state_dict(), "optim": optim.state_dict(), "sched": sched.state_dict(),
                          "state": state}, last_ckpt)
        rep.row(row, best=state["best_epoch"] == epoch)
        for cb in callbacks:
            cb(epoch, row)
        if cfg.time_limit is not None:
            _fit_schedule(state, cfg, time.monotonic() - t_start, horizon, steps, rep, world, device)
        if state["bad"] >= cfg.patience:
            stopped = f"early stop: no better val MCC for {cfg.patience} epochs"
        elif epoch >= state["planned"] and state["planned"] < cfg.epochs:
            stopped = f"time limit: the {state['planned']} epochs that fit in {cfg.time_limit} min are done"
        if _agree(bool(stopped), world, device):  # ranks' clocks differ: stop together or not at all
            stopped = stopped or "another rank reached its limit"
            break
    if stopped:
        rep.info(stopped)

    if world > 1:
        torch.distributed.barrier()
    summary: dict[str, Any] = {}
    if main:
        summary = _finish(model, processor, cfg, split, state, (val_x, val_y), (cross_x, cross_y), device, mean, std,
                          time.monotonic() - t_start, rep)
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return summary


def _fit_schedule(state: dict[str, Any], cfg: TrainConfig, elapsed: float, horizon: dict[str, int], steps: int,
                  rep: Reporter, world: int = 1, device: torch.device | None = None) -> None:
    """Shrink the planned epochs (and the cosine horizon with them) to what fits in --time-limit, so
    a time-limited run still ends with a decayed learning rate instead of being cut mid-schedule.
    Epoch times come from the history (the first epoch, with worker start-up, only when alone)."""
    times = [h["seconds"] for h in state["history"]]
    per_epoch = float(np.mean(times[1:] if len(times) > 1 else times))
    left = cfg.time_limit * 60 - elapsed
    if len(times) < 2 and left > 2 * per_epoch:
        # the first epoch carries worker start-up (4-5x a steady epoch on the GPU box); planning from
        # it alone once cut a 7-minute budget to 2 minutes, and plans only ever shrink
        return
    fit = state["epoch"] + max(0, int(left / max(per_epoch, 1e-6)))
    if world > 1:  # every rank must plan the same schedule: take the most cautious clock
        t = torch.tensor([fit], device=device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)
        fit = int(t.item())
    if fit < state["planned"]:
        state["planned"] = max(state["epoch"], fit)
        horizon["total"] = state["planned"] * steps
        rep.info(f"time limit: planning {state['planned']} epochs ({per_epoch:.1f} s each)")


def _agree(flag: bool, world: int, device: torch.device) -> bool:
    """True on every rank if it is true on any (a no-op for one process)."""
    if world == 1:
        return flag
    t = torch.tensor([int(flag)], device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item())


def _batches(images: torch.Tensor, device: torch.device, mean: torch.Tensor, std: torch.Tensor,
             batch_size: int = 256):
    """Normalized fp32 batches of cached uint8 images (what the saved model sees)."""
    for s in range(0, len(images), batch_size):
        yield normalize(images[s:s + batch_size].to(device), mean, std, False)


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def _finish(model: nn.Module, processor: Any, cfg: TrainConfig, split: "prep.Split", state: dict[str, Any],
            val: tuple[torch.Tensor, np.ndarray], cross: tuple[torch.Tensor, np.ndarray], device: torch.device,
            mean: torch.Tensor, std: torch.Tensor, seconds: float, rep: Reporter) -> dict[str, Any]:
    """Best weights -> merged plain model -> calibration folded in -> the saved folder."""
    from roadwork import publish

    out = Path(cfg.out)
    best = out / "checkpoints" / "best.pt"
    if best.is_file():
        model.load_state_dict(torch.load(best, map_location=device, weights_only=True))
    locmap_info = None
    if hasattr(model, "export"):  # locmap: the map head becomes the standard head (exactly, or refit)
        model.float().to(memory_format=torch.contiguous_format)
        model, locmap_info = model.export(_batches(val[0], device, mean, std))
        rep.info("locmap export: " + ("exact" if locmap_info["exact"] else
                                      f"{locmap_info['train_pool']} approximated by {locmap_info['export_pool']}")
                 + (f", validation max |p_train - p_saved| {locmap_info['val_max_abs_prob_diff']:.2g}"
                    if "val_max_abs_prob_diff" in locmap_info else ""))
    model = models.unwrap(model).float().to(memory_format=torch.contiguous_format)
    d_val = margins(model, val[0], device, mean, std, bf16=False)
    calib = cal.calibrate(d_val, val[1])
    warning = cal.degenerate(calib, d_val)
    if warning:  # loud, and in roadwork.json and the cards: a constant answer must not pass as a model
        rep.info(f"WARNING: degenerate calibration: {warning}")
    cal.fold_into_head(model, calib["temperature"], calib["threshold"])
    # from here on the model's own softmax is the calibrated probability, decided at 0.5
    summary: dict[str, Any] = {
        "format": 1, "labels": dict(models.LABELS), "folded": True,
        "temperature": calib["temperature"], "threshold": calib["threshold"],
        "decision": "P(roadwork) > 0.5 (temperature and threshold are folded into the head)",
        "arch": cfg.arch, "init": cfg.init, "mode": cfg.mode, "image_size": cfg.image_size,
        "params": models.param_count(model), "size_mb": round(models.size_mb(model), 2),
        "val": binary_metrics(val[1], sigmoid(margins(model, val[0], device, mean, std, bf16=False))),
        "best_epoch": state["best_epoch"], "epochs_run": state["epoch"], "train_seconds": round(seconds, 1),
        "challenge": cfg.challenge, "protocol": cfg.protocol, "seed": cfg.seed, "data": cfg.data, "synth": cfg.synth,
        "split": prep.split_info(cfg, split), "command": cfg.command(), "history": state["history"],
        "licenses": publish.data_licenses(cfg.data + cfg.synth),
    }
    if warning:
        summary["warning"] = f"degenerate calibration: {warning}"
    if locmap_info is not None:
        from roadwork.train.locmap import map_meta

        summary["locmap"] = {**map_meta(model, cfg), "export": locmap_info}
    if len(cross[1]):
        p_cross = sigmoid(margins(model, cross[0], device, mean, std, bf16=False))
        summary["cross"] = binary_metrics(cross[1], p_cross)
        summary["cross"]["reward"] = stream_reward(p_cross, cross[1], cfg.seed)["mean_reward"]
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "roadwork.json").write_text(json.dumps(json_safe(summary), indent=2) + "\n")
    publish.write_cards(out, model_name=cfg.model_name, version=cfg.version)
    if not cfg.keep_checkpoints:
        for f in (out / "checkpoints").glob("*"):
            f.unlink()
        (out / "checkpoints").rmdir()
    rep.final(summary)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m roadwork.train`: the same run without typer (argparse over TrainConfig's fields)."""
    import argparse

    from roadwork.train.config import add_arguments, from_namespace

    parser = argparse.ArgumentParser(prog="python -m roadwork.train", description=__doc__.splitlines()[0])
    add_arguments(parser)
    try:
        train(from_namespace(parser.parse_args(argv)))
    except ValueError as e:  # a setting the config refuses, or unusable data: one line
        print(f"{parser.prog}: {e}", file=sys.stderr)
        return 2
    return 0


__all__ = ["TrainConfig", "main", "margins", "train"]
