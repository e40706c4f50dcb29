"""`roadwork predict`: files, folders and globs in; one probability and label per image out."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator, Sequence

from PIL import Image
from rich.console import Console
from rich.progress import Progress

from roadwork.data.paths import Miss, expand_inputs
from roadwork.decode import VIDEO_SUFFIXES, ImageError, load_image
from roadwork.engine import Predictor, Result
from roadwork.stream import stream


def run_predict(paths: Sequence[str], engine: Predictor, as_json: bool = False, batch_size: int = 16,
                fps: float = 2.0, console: Console | None = None, views: str | None = None,
                geo=None, out: str | Path | None = None, heatmap: str | Path | None = None) -> int:
    """Print one line per image (or error), in argument order; returns the exit code (1 if any input
    failed or gave nothing). With `views` (a combination method), the images are views of one place and
    a last line gives the one decision. With `heatmap` (a folder), each image is also written there as
    PNG with the model's location map over it (`roadwork.heatmap`); the engine must have one."""
    console = console or Console(stderr=True)
    draw = _heatmap_writer(engine, heatmap)
    entries = expand_inputs(paths)
    failed = 0
    probs: list[float] = []
    n_images = sum(isinstance(e, Path) and e.suffix.lower() not in VIDEO_SUFFIXES for e in entries)
    with Progress(console=console, transient=True, disable=n_images < 8) as bar:
        task = bar.add_task("predicting", total=n_images)
        for (entry, error), r in stream(engine, _decoded(entries), batch_size):
            if isinstance(entry, Miss):
                failed += 1
                _emit_error(f"{entry.item}: {entry.why}", entry.item, as_json, console)
            elif error is not None:
                failed += 1
                bar.advance(task)
                _emit_error(str(error), str(entry), as_json, console)
            elif r is None:  # a video: its frames go through the engine on their own
                failed += _predict_video(entry, engine, as_json, fps, console, geo)
            else:
                bar.advance(task)
                _emit_result(entry, r, as_json, probs, geo)
                if draw is not None:
                    draw(entry)
    if geo is not None and out is not None:
        written = geo.write(out)
        console.print(f"work-zone map: {written} and {Path(out) / 'map.html'}" if written
                      else "no GPS position for any input: no zones.geojson written")
    if views and probs:
        _emit_views(probs, views, engine.threshold, as_json)
    if draw is not None:
        console.print(f"location maps: {draw.written} image(s) written to {heatmap}")
    return 1 if failed else 0


class HeatmapError(ValueError):
    """--heatmap that cannot be done: the engine has no location map, or the folder is not writable."""


class _HeatmapWriter:
    def __init__(self, locate, out_dir: Path):
        self.locate, self.out_dir = locate, out_dir
        self.taken: set[str] = set()
        self.written = 0

    def __call__(self, path: Path) -> None:
        from roadwork.heatmap import blend, heatmap_path

        image = load_image(path)  # decoded again: the stream does not hand images back
        heat = self.locate(image)
        if heat is not None:
            blend(image, heat).save(heatmap_path(self.out_dir, path, self.taken))
            self.written += 1


def _heatmap_writer(engine: Predictor, heatmap: str | Path | None) -> _HeatmapWriter | None:
    if heatmap is None:
        return None
    locate = getattr(engine, "location_map", None)
    if not callable(locate):
        raise HeatmapError("--heatmap: the model has no location map (train one with `roadwork train --head "
                            "locmap`; a folder served by its ONNX export has none: set `backend: torch`)")
    out = Path(heatmap)
    try:  # checked before any image runs: a bad folder is one line, not a traceback after the work
        out.mkdir(parents=True, exist_ok=True)
        if not os.access(out, os.W_OK | os.X_OK):
            raise PermissionError("not writable")
    except OSError as e:
        raise HeatmapError(f"--heatmap {heatmap}: cannot write there ({e.strerror or e})") from None
    return _HeatmapWriter(locate, out)


def _decoded(entries: list[Path | Miss]) -> Iterator[tuple[tuple[Path | Miss, ImageError | None], Image.Image | None]]:
    """((entry, decoding error), image) for the stream: misses, unreadable files and videos pass
    through without an image."""
    for e in entries:
        if isinstance(e, Miss) or e.suffix.lower() in VIDEO_SUFFIXES:
            yield (e, None), None
            continue
        try:
            yield (e, None), load_image(e)
        except ImageError as err:
            yield (e, err), None


def _emit_result(f: Path, r: Result, as_json: bool, probs: list[float], geo=None) -> None:
    probs.append(r.prob)
    if geo is not None:  # a roadwork.geo.GeoCollector: the photo's EXIF position
        geo.add_image(f, r.prob, r.label)
    if as_json:
        print(json.dumps({"path": str(f), "prob": round(r.prob, 6), "label": r.label, "tier": r.tier}), flush=True)
    else:
        print(f"{f}\t{r.prob:.4f}\t{'roadwork' if r.label else 'none'}\t{r.tier}", flush=True)


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
    console.print(f"[red]error[/red] {msg}", soft_wrap=True, highlight=False)


def _predict_video(path: Path, engine: Predictor, as_json: bool, fps: float, console: Console, geo=None) -> int:
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
    if geo is not None:
        geo.add_video(path, report.times, report.probs, report.intervals)
    if as_json:
        print(json.dumps({"path": str(path), **report.to_dict()}), flush=True)
    else:
        print(report.summary(str(path)), flush=True)
    return 0
