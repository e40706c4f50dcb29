"""What a training run needs before its first step: the split, the synthetic images that may join
it, the challenged validation images, and the records of all of it for the cards.

Split protocol (what the numbers mean):
  cross = every record of the `--holdout-source` sources: never trained on, never used to choose
          anything; reported as the cross-source score.
  val   = whole groups (clips / sequences) of the remaining sources: early stopping and calibration;
          reported as the within-source score.
  train = the rest, plus synthetic images whose background scene is in neither val nor cross.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from roadwork.train.config import TrainConfig
from roadwork.train.loader import Augment, RecordImages, worker_init

log = logging.getLogger("roadwork.train")

# Columns of a synth manifest that say where the background of a synthetic image came from.
SCENE_SOURCE_COLUMNS = ("scene_source", "background_source", "bg_source")
SCENE_PATH_COLUMNS = ("scene_path", "scene", "background_path", "background")


@dataclass
class Split:
    train: list[Any]
    val: list[Any]
    cross: list[Any] = field(default_factory=list)
    synth: list[Any] = field(default_factory=list)  # already included in `train`
    synth_dropped: int = 0  # synthetic images left out because their scene is in val or cross


def load_records(specs: Sequence[str]) -> list[Any]:
    from roadwork.data import open_source

    out: list[Any] = []
    for spec in specs:
        out += open_source(spec).records()
    return out


def subsample(records: Sequence[Any], n: int, seed: int, pos_boost: float = 3.0) -> list[Any]:
    """About `n` records, spread over every (source, label) stratum, positives `pos_boost` x more
    likely than their share (so a tiny run still sees both classes in every split)."""
    if n >= len(records):
        return list(records)
    rng = np.random.default_rng([seed, 11])
    strata: dict[tuple[str, int], list[int]] = {}
    for i, r in enumerate(records):
        strata.setdefault((r.source, int(r.label)), []).append(i)
    weights = {k: len(v) * (pos_boost if k[1] == 1 else 1.0) for k, v in strata.items()}
    total = sum(weights.values())
    keep: list[int] = []
    for k, idx in strata.items():
        take = min(len(idx), max(2, int(round(n * weights[k] / total))))
        keep += rng.choice(idx, size=take, replace=False).tolist()
    return [records[i] for i in sorted(keep)]


def _scene_index(spec: str) -> dict[str, tuple[str, str]]:
    """path -> (scene source, scene path) from a synth manifest's extra columns, where it has them."""
    p = Path(spec)
    csv_path = (p if p.suffix.lower() == ".csv" else p / "manifest.csv").absolute()
    if not csv_path.is_file():
        return {}
    with csv_path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        src_col = next((c for c in SCENE_SOURCE_COLUMNS if c in cols), None)
        path_col = next((c for c in SCENE_PATH_COLUMNS if c in cols), None)
        if not src_col and not path_col:
            return {}
        root = csv_path.parent
        return {str(root / row["path"]): (row.get(src_col, "") if src_col else "",
                                          row.get(path_col, "") if path_col else "") for row in reader}


def load_synth(specs: Sequence[str], exclude_sources: set[str], exclude_paths: set[str]) -> tuple[list[Any], int]:
    """Synthetic training records, minus those painted on a scene we validate or test on.

    Scene paths in a synth manifest are relative to the scene manifest's folder, ours may have any
    root: a scene is excluded when its path components are a suffix of an excluded path's. (A fixed
    three-component tail missed `idd_lite/x.jpg`, two components deep, and let IDD val scenes leak.)"""
    from roadwork.data import open_source

    by_name: dict[str, list[tuple[str, ...]]] = {}
    for p in exclude_paths:
        parts = Path(p).parts
        by_name.setdefault(parts[-1], []).append(parts)

    def excluded(scene: str) -> bool:
        sp = Path(scene).parts
        return any(parts[-len(sp):] == sp for parts in by_name.get(sp[-1], ()) if len(parts) >= len(sp))

    kept: list[Any] = []
    dropped = 0
    for spec in specs:
        scenes = _scene_index(spec)
        if not scenes:
            log.warning("%s: no scene_source/scene_path columns; cannot keep held-out scenes out of synth", spec)
        for r in open_source(spec).records():
            src, scene = scenes.get(str(Path(r.path)), ("", ""))
            if src in exclude_sources or (scene and excluded(scene)):
                dropped += 1
            else:
                kept.append(r)
    return kept, dropped


def make_split(cfg: TrainConfig) -> Split:
    from roadwork.data import group_split, leave_sources_out

    records = load_records(cfg.data)
    if cfg.limit:
        records = subsample(records, cfg.limit, cfg.seed)
    if cfg.holdout_source:
        rest, cross = leave_sources_out(records, set(cfg.holdout_source))
    else:
        rest, cross = records, []
    train, val = group_split(rest, cfg.val_fraction, cfg.seed)
    synth, dropped = [], 0
    if cfg.synth:
        synth, dropped = load_synth(cfg.synth, set(cfg.holdout_source), {r.path for r in val + cross})
        if cfg.limit:
            synth = subsample(synth, max(8, cfg.limit // 2), cfg.seed)
    if len({r.label for r in val}) < 2:
        log.warning("validation split has a single class; calibration will keep T=1, threshold 0.5")
    return Split(train=train + synth, val=val, cross=cross, synth=synth, synth_dropped=dropped)


def mask_paths(split: Split) -> list[str | None]:
    """Per training record, the object mask `roadwork synth` wrote beside it (`masks/NAME.png`), or
    None: real images, and synthetic ones whose writer predates masks, train on their label alone."""
    from roadwork.synth.sample import mask_path

    synthetic = {r.path for r in split.synth}
    out: list[str | None] = []
    for r in split.train:
        p = mask_path(r.path) if r.path in synthetic else None
        out.append(str(p) if p is not None and p.is_file() else None)
    return out


def _counts(records: Sequence[Any]) -> str:
    n1 = sum(int(r.label) for r in records)
    return f"{len(records)} ({n1} roadwork)"


def describe(split: Split) -> str:
    parts = [f"train {_counts(split.train)}"]
    if split.synth:
        parts.append(f"of which synthetic {_counts(split.synth)}"
                     + (f", {split.synth_dropped} dropped (scene held out)" if split.synth_dropped else ""))
    parts.append(f"val {_counts(split.val)}")
    if split.cross:
        parts.append(f"cross-source {_counts(split.cross)} from {', '.join(sorted({r.source for r in split.cross}))}")
    return "data: " + "; ".join(parts)


def split_info(cfg: TrainConfig, split: Split) -> dict[str, Any]:
    from roadwork.data import summarize

    return {"val": "whole groups of the training sources", "val_fraction": cfg.val_fraction, "seed": cfg.seed,
            "holdout_sources": list(cfg.holdout_source), "n_train": len(split.train), "n_synth": len(split.synth),
            "synth_dropped": split.synth_dropped, "n_val": len(split.val), "n_cross": len(split.cross),
            "train_sources": summarize(split.train), "val_sources": summarize(split.val),
            "cross_sources": summarize(split.cross)}


def camera_transform() -> Callable[..., Any] | None:
    """The camera-look randomizer, or None (with a warning) where it is not available."""
    try:
        from roadwork.train.camera import CameraJitter
    except ImportError as e:
        log.warning("camera jitter unavailable (%s); training without it", e)
        return None
    return CameraJitter()


def train_augment(cfg: TrainConfig) -> Augment:
    """The training view of `cfg` (camera jitter, the challenge simulator of its protocol, crops, flips);
    the teacher of `roadwork distill` scores exactly these views."""
    camera = camera_transform() if cfg.camera_jitter else None
    return Augment(cfg.image_size, cfg.challenge_p if cfg.challenge else 0.0, cfg.camera_p, camera,
                   protocol=cfg.protocol, letterbox_p=cfg.letterbox_p)


def cache_images(records: Sequence[Any], view: Callable, seed: int, workers: int,
                 batch_size: int = 64) -> tuple[torch.Tensor, np.ndarray]:
    """All validation images through `view` once (fixed seed), kept as a uint8 tensor."""
    if not records:
        return torch.zeros(0, 3, 1, 1, dtype=torch.uint8), np.zeros(0, dtype=np.int64)
    ds = RecordImages(records, view, seed=seed)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers, worker_init_fn=worker_init)
    xs, ys = [], []
    for x, y, _ in loader:
        xs.append(x)
        ys.append(y)
    return torch.cat(xs), torch.cat(ys).numpy()


def save_config(path: Path, cfg: TrainConfig, split: Split) -> None:
    import yaml

    doc = {"command": cfg.command(), "config": cfg.to_dict(), "split": split_info(cfg, split)}
    from roadwork.jsonio import json_safe

    path.write_text(yaml.safe_dump(json_safe(doc), sort_keys=False))
