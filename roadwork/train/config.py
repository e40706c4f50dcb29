"""`TrainConfig`: every setting of a training run, saved as `train_config.yaml` beside its outputs.

A plain dataclass (no pydantic) so the training path imports nothing beyond torch, transformers,
numpy, PIL and PyYAML. `roadwork train` (typer) and `python -m roadwork.train` (argparse, for
machines without typer) both fill it; `command()` renders the canonical `roadwork train` line that
model cards quote.
"""

from __future__ import annotations

import shlex
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from roadwork.challenge.protocols import DEFAULT_PROTOCOL, PROTOCOLS


def _f(default: Any, help: str) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    data: list[str] = _f([], "Data sources (manifest CSV, folder, parquet, videos); repeat for several.")
    out: str = _f("runs/train", "Output folder: a save_pretrained model folder plus cards.")
    arch: str | None = _f(None, "Architecture from scratch (resnet10, convnext-atto, timm/<name>, ...).")
    init: str | None = _f(None, "Start from this image-classification checkpoint (hub id or folder).")
    mode: str = _f("full", "full fine-tuning, or lora / dora adapters (merged before saving).")
    epochs: int = _f(30, "Most epochs (early stopping may end sooner).")
    batch_size: int = _f(128, "Images per step (per GPU under DDP).")
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
    protocol: str = _f(DEFAULT_PROTOCOL, f"Validator version the challenges follow: {' | '.join(PROTOCOLS)}.")
    camera_p: float = _f(0.5, "Share of training images that get camera jitter.")
    balance: str = _f("sampler", "Class balance: sampler (50/50 draws), loss (class weights) or none.")
    patience: int = _f(8, "Stop after this many epochs without a better validation MCC.")
    resume: bool = _f(False, "Continue from OUT/checkpoints/last.pt.")
    seed: int = _f(0, "Seed for the model, the split, the augmentations and the challenged val set.")
    workers: int = _f(8, "DataLoader worker processes.")
    device: str = _f("auto", "auto, cpu, cuda or cuda:N (DDP picks LOCAL_RANK).")
    lora_rank: int = _f(16, "LoRA/DoRA rank (alpha = 2 x rank).")
    time_limit: float | None = _f(None, "Stop training after this many minutes (then calibrate and save).")
    limit: int | None = _f(None, "Use at most this many records (quick runs).")
    keep_checkpoints: bool = _f(False, "Keep OUT/checkpoints after a successful run.")
    smoke: bool = _f(False, "Tiny CPU check: 64 records, resnet-tiny, 64 px, 1 epoch, 0 workers.")
    model_name: str | None = _f(None, "Name for the model cards (default: the output folder's name).")
    version: str = _f("0.1.0", "Model version X.Y.Z for model_card.json.")

    def resolved(self) -> "TrainConfig":
        """A copy with defaults that depend on other fields filled in (and `--smoke` applied)."""
        c = TrainConfig(**asdict(self))
        if c.smoke:
            c.arch, c.init = c.arch or "resnet-tiny", None
            c.epochs, c.image_size, c.batch_size = 1, 64, 16
            c.workers, c.limit = 0, c.limit or 64
        if not c.arch and not c.init:
            c.arch = "resnet10"
        if c.lr is None:
            c.lr = 1e-3 if c.mode in ("lora", "dora") else (1e-4 if c.init else 2e-3)
        if c.model_name is None:
            c.model_name = Path(c.out).name or "roadwork"
        if not c.data:
            raise ValueError("--data: give at least one data source")
        if c.mode not in ("full", "lora", "dora"):
            raise ValueError(f"--mode {c.mode}: expected full, lora or dora")
        if c.protocol not in PROTOCOLS:
            raise ValueError(f"--protocol {c.protocol}: expected one of {', '.join(PROTOCOLS)}")
        if c.balance not in ("sampler", "loss", "none"):
            raise ValueError(f"--balance {c.balance}: expected sampler, loss or none")
        if c.arch and c.init:
            raise ValueError("give either --arch (from scratch) or --init (a checkpoint), not both")
        return c

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def command(self) -> str:
        """The `roadwork train` command line that reproduces this run (non-default settings only)."""
        parts = ["roadwork", "train"]
        for f in fields(self):
            value = getattr(self, f.name)
            default = f.default_factory() if f.default_factory is not MISSING else f.default
            if value == default or f.name in ("resume", "smoke"):
                continue
            flag = "--" + f.name.replace("_", "-")
            if isinstance(value, bool):
                parts.append(flag if value else "--no-" + f.name.replace("_", "-"))
            elif isinstance(value, list):
                for v in value:
                    parts += [flag, str(v)]
            else:
                parts += [flag, str(value)]
        return shlex.join(parts)


def add_arguments(parser: Any) -> None:
    """argparse flags for every field (used by `python -m roadwork.train` where typer is missing)."""
    import argparse

    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "str")
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=f.metadata["help"])
        elif isinstance(default, list):
            parser.add_argument(flag, action="append", default=None, help=f.metadata["help"])
        else:
            conv = float if "float" in kind else int if "int" in kind else str
            parser.add_argument(flag, type=conv, default=default, help=f.metadata["help"])


def from_namespace(ns: Any) -> TrainConfig:
    kw = {f.name: getattr(ns, f.name) for f in fields(TrainConfig)}
    return TrainConfig(**{k: (v if v is not None or not isinstance(getattr(TrainConfig(), k), list) else [])
                          for k, v in kw.items()})
