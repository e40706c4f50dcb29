"""Batch synthesis to disk (`roadwork synth`): JPEGs, their roadwork masks (PNG), `manifest.csv`, `synth.json`.

A model trained on two roadwork sources learns their cameras. Pasting roadwork objects into scenes
from many other cameras gives positives whose only difference from a negative is the objects; hard
negatives paste orange, red and striped non-roadwork things the same way, so colour alone is no cue.

Reproducible: image `i` depends only on (seed, i, scene list, bank), never on the order of work.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from roadwork.synth.bank import ObjectBank, load_bank
from roadwork.synth.compose import compose_sample
from roadwork.synth.config import SynthConfig
from roadwork.synth.sample import mask_path

MANIFEST_COLUMNS = ("path", "label", "source", "group", "license", "scene_source", "scene_path", "objects",
                    "mask")
LICENSE = "synthetic: scene license applies; cone photos research use only (objects/README)"


# ---- batch synthesis ---------------------------------------------------------------------------------
def _scene(s: Any) -> tuple[str, str, str, Callable[[], Image.Image]]:
    """(path, group, source, loader) for a Record-like object or a plain path."""
    if hasattr(s, "load"):
        return str(s.path), str(s.group), str(s.source), s.load
    from roadwork.decode import load_image

    p = Path(s)
    return str(p), p.parent.name, p.parent.name, lambda: load_image(p)


def scene_weights(sources: Sequence[str], temper: float = 0.5) -> np.ndarray:
    """Per-scene probabilities: sources weigh n**temper, so big sources do not drown small ones."""
    counts = _count(sources)
    w = np.array([counts[s] ** temper / counts[s] for s in sources], np.float64)
    return w / w.sum()


def fit_max_side(img: Image.Image, max_side: int | None) -> Image.Image:
    if max_side and max(img.size) > max_side:
        f = max_side / max(img.size)
        img = img.resize((max(1, round(img.width * f)), max(1, round(img.height * f))), Image.LANCZOS)
    return img


def synthesize(scenes: Sequence[Any], bank: ObjectBank, n: int, seed: int, out_dir: str | Path, n_neg: int = 0,
               max_side: int | None = 320, scene_root: str | Path | None = None,
               progress: Callable[[int], None] | None = None, config: SynthConfig | None = None,
               workers: int = 1) -> Path:
    """Write `n` positives and `n_neg` hard negatives as JPEGs plus `manifest.csv`; returns its path.

    Each image `images/X.jpg` has its roadwork mask in `masks/X.png` (column `mask`; see `sample`).

    `scenes` are label-0 Records (or image paths); each output keeps its scene's group, so group
    splits stay honest, and records the scene's source and path (relative to `scene_root` where
    given) so a trainer can drop synthetic images painted on held-out scenes. `workers` > 1 splits
    the images over processes; image `i` is the same bytes either way.
    """
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    info = [_scene(s) for s in scenes]
    if not info:
        raise ValueError("synthesize: no scenes given")
    p = scene_weights([i[2] for i in info])
    t0 = time.perf_counter()
    jobs = [(1, i) for i in range(n)] + [(0, i) for i in range(n_neg)]
    global _JOB
    _JOB = (info, p, bank, out_dir, max_side, scene_root, config)
    rows, failed = [], []
    if workers > 1 and len(jobs) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        # fork: the workers inherit _JOB (scene loaders and the bank) instead of unpickling it per task
        chunks = [jobs[k::workers * 4] for k in range(workers * 4)]
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as ex:
            for part_rows, part_failed in ex.map(_write_chunk, [(seed, c) for c in chunks if c]):
                rows += part_rows
                failed += part_failed
                if progress:
                    progress(len(rows))
        rows.sort(key=lambda r: (-r["label"], r["path"]))  # the serial order: positives, then negatives
    else:
        for label, i in jobs:
            row, bad = _write_one(seed, label, i)
            rows.append(row)
            failed += bad
            if progress:
                progress(len(rows))
    _JOB = None
    manifest = out_dir / "manifest.csv"
    with manifest.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    secs = time.perf_counter() - t0
    summary = {"seed": seed, "n": n, "n_neg": n_neg, "max_side": max_side, "seconds": round(secs, 1),
               "config": (config or SynthConfig()).model_dump(), "workers": workers,
               "ms_per_image": round(1000 * secs / max(1, len(jobs)), 1), "bank_cones": len(bank.cones),
               "scene_sources": _count(i[2] for i in info), "used_sources": _count(r["scene_source"] for r in rows),
               "unreadable": failed}
    (out_dir / "synth.json").write_text(json.dumps(summary, indent=1))
    return manifest


_JOB: tuple | None = None  # what every image of the running synthesize() call shares (see _write_one)


def _write_chunk(args: tuple[int, list[tuple[int, int]]]) -> tuple[list[dict[str, Any]], list[str]]:
    seed, chunk = args
    rows, failed = [], []
    for label, i in chunk:
        row, bad = _write_one(seed, label, i)
        rows.append(row)
        failed += bad
    return rows, failed


def _write_one(seed: int, label: int, i: int) -> tuple[dict[str, Any], list[str]]:
    """Image `i` of class `label`: depends only on (seed, label, i), the scenes and the bank."""
    info, p, bank, out_dir, max_side, scene_root, config = _JOB
    rng = np.random.default_rng([seed, label, i])
    failed = []
    for _ in range(10):  # an unreadable scene is reported and another one drawn
        path, group, source, load = info[rng.choice(len(info), p=p)]
        try:
            img = fit_max_side(load().convert("RGB"), max_side)
            break
        except (OSError, ValueError) as e:
            failed.append(f"{path}: {e}")
    else:
        raise RuntimeError("synthesize: 10 unreadable scenes in a row; last: " + failed[-1])
    sample = compose_sample(np.asarray(img), bank, rng, negative=not label, config=config)
    kinds = sample.meta["kinds"]
    name = f"images/{'pos' if label else 'neg'}_{i:06d}.jpg"
    Image.fromarray(sample.image).save(out_dir / name, quality=int(rng.integers(85, 96)))
    mask_name = mask_path(name).as_posix()
    Image.fromarray(sample.mask).save(out_dir / mask_name, optimize=False)
    rel = _relative(path, scene_root)
    return ({"path": name, "label": label, "source": f"{'synth' if label else 'synth_neg'}:{source}",
             "group": group, "license": LICENSE, "scene_source": source, "scene_path": rel,
             "objects": " ".join(kinds), "mask": mask_name}, failed)


def _relative(path: str, root: str | Path | None) -> str:
    if root is None:
        return path
    try:
        return Path(path).absolute().relative_to(Path(root).absolute()).as_posix()
    except ValueError:
        return path


def _count(items) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in items:
        out[s] = out.get(s, 0) + 1
    return dict(sorted(out.items()))


def run_synth(data: str, objects: str, out: str | Path, n: int, seed: int, n_neg: int = 0,
              exclude_sources: Sequence[str] = (), max_side: int | None = 320, console: Any = None,
              config: SynthConfig | None = None, workers: int = 1) -> Path:
    """Scenes = the label-0 records of `data` minus `exclude_sources`; rich progress; returns the manifest."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from roadwork.data import open_source

    console = console or Console(stderr=True)
    out = Path(out)
    excluded = set(exclude_sources)
    scenes = [r for r in open_source(data).records() if int(r.label) == 0 and r.source not in excluded]
    if not scenes:
        raise ValueError(f"{data}: no label-0 scenes left" + (f" after excluding {', '.join(sorted(excluded))}"
                                                                if excluded else ""))
    root = Path(data).parent if Path(data).suffix.lower() == ".csv" else Path(data)
    cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn())
    with Progress(*cols, console=console, transient=False) as bar:
        tasks: dict[str, Any] = {}

        def report(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=total)
            bar.update(tasks[what], completed=done)

        bank = load_bank(objects, out / "bank", report)
        console.print(f"object bank: {len(bank.cones)} cone cut-outs + procedural kinds; "
                      f"{len(scenes)} scenes from {len({r.source for r in scenes})} sources")
        manifest = synthesize(scenes, bank, n, seed, out, n_neg=n_neg, max_side=max_side, scene_root=root,
                              progress=lambda k: report("synthesizing", k, n + n_neg), config=config,
                              workers=workers)
    summary = json.loads((out / "synth.json").read_text())
    summary["excluded_sources"] = sorted(excluded)
    summary["data"] = str(data)
    summary["objects"] = str(objects)
    (out / "synth.json").write_text(json.dumps(summary, indent=1))
    console.print(f"wrote {n} positives + {n_neg} hard negatives to {manifest} "
                  f"({summary['ms_per_image']} ms per image); scene sources: "
                  + ", ".join(f"{k} {v}" for k, v in summary["used_sources"].items()))
    for err in summary["unreadable"]:
        console.print(f"[yellow]skipped unreadable scene {err}[/yellow]")
    return manifest
