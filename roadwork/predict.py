"""`roadwork predict`: files, folders and globs in; one probability and label per image out."""

from __future__ import annotations

import glob
import json
from pathlib import Path
from typing import Iterable, Sequence

from rich.console import Console
from rich.progress import Progress

from roadwork.decode import IMAGE_SUFFIXES, VIDEO_SUFFIXES, ImageError, load_image
from roadwork.engine import Engine


def expand_paths(items: Iterable[str]) -> tuple[list[Path], list[str]]:
    """Files, folders (recursively, images and videos) and globs -> sorted paths, plus misses."""
    found: list[Path] = []
    missing: list[str] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
        elif p.exists():
            found.append(p)
        else:
            hits = sorted(Path(h) for h in glob.glob(item, recursive=True))
            if hits:
                found += [h for h in hits if h.is_file()]
            else:
                missing.append(item)
    return found, missing


def run_predict(paths: Sequence[str], engine: Engine, as_json: bool = False, batch_size: int = 16,
                fps: float = 2.0, console: Console | None = None, views: str | None = None) -> int:
    """Print one line per image; returns the exit code (1 if any input failed). With `views` (a
    combination method), the images are views of one place and a last line gives the one decision."""
    console = console or Console(stderr=True)
    files, missing = expand_paths(paths)
    failed = len(missing)
    for m in missing:
        console.print(f"[red]error[/red] {m}: no such file, folder or glob match")
    videos = [f for f in files if f.suffix.lower() in VIDEO_SUFFIXES]
    images = [f for f in files if f.suffix.lower() not in VIDEO_SUFFIXES]
    probs: list[float] = []
    with Progress(console=console, transient=True, disable=len(images) < 8) as bar:
        task = bar.add_task("predicting", total=len(images))
        for start in range(0, len(images), batch_size):
            batch, ok_paths = [], []
            for f in images[start:start + batch_size]:
                try:
                    batch.append(load_image(f))
                    ok_paths.append(f)
                except ImageError as e:
                    failed += 1
                    _emit_error(str(e), str(f), as_json, console)
            for f, r in zip(ok_paths, engine.predict(batch)):
                probs.append(r.prob)
                if as_json:
                    print(json.dumps({"path": str(f), "prob": round(r.prob, 6), "label": r.label, "tier": r.tier}),
                          flush=True)
                else:
                    print(f"{f}\t{r.prob:.4f}\t{'roadwork' if r.label else 'none'}\t{r.tier}", flush=True)
            bar.advance(task, len(images[start:start + batch_size]))
    for v in videos:
        failed += _predict_video(v, engine, as_json, fps, console)
    if views and probs:
        _emit_views(probs, views, engine.threshold, as_json)
    return 1 if failed else 0


def _emit_views(probs: list[float], method: str, threshold: float, as_json: bool) -> None:
    from roadwork.sequence import combine_views

    p = combine_views(probs, method)
    label = int(p > threshold)
    if as_json:
        print(json.dumps({"views": len(probs), "method": method, "prob": round(p, 6), "label": label}), flush=True)
    else:
        print(f"<{len(probs)} views, {method}>\t{p:.4f}\t{'roadwork' if label else 'none'}", flush=True)


def _emit_error(msg: str, path: str, as_json: bool, console: Console) -> None:
    if as_json:
        print(json.dumps({"path": path, "error": msg}), flush=True)
    console.print(f"[red]error[/red] {msg}")


def _predict_video(path: Path, engine: Engine, as_json: bool, fps: float, console: Console) -> int:
    try:
        from roadwork.sequence import predict_video
    except ImportError:
        _emit_error(f"{path}: video input needs roadwork.sequence", str(path), as_json, console)
        return 1
    try:
        report = predict_video(path, engine, fps=fps)
    except ImageError as e:
        _emit_error(str(e), str(path), as_json, console)
        return 1
    if as_json:
        print(json.dumps({"path": str(path), **report.to_dict()}), flush=True)
    else:
        print(report.summary(str(path)), flush=True)
    return 0
