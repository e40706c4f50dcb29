"""Copy-paste synthesis: roadwork objects (and hard negatives) pasted onto the road of street scenes.

A model trained on two roadwork sources learns their cameras. Pasting roadwork objects into scenes
from many other cameras gives positives whose only difference from a negative is the objects; hard
negatives paste orange, red and striped non-roadwork things the same way, so colour alone is no cue.

Objects stand on the road with perspective-consistent size (`roadwork.train.placement`). Blending
matches the scene's brightness, colour cast, blur and noise, and drops a soft contact shadow.

Reproducible: image `i` depends only on (seed, i, scene list, bank), never on the order of work.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np
from PIL import Image

from roadwork.train.camera import worker_rng
from roadwork.train.objects import ObjectBank
from roadwork.train.placement import Placement, estimate_ground, layout_negative, layout_positive

MANIFEST_COLUMNS = ("path", "label", "source", "group", "license", "scene_source", "scene_path", "objects")
LICENSE = "synthetic: scene license applies; cone photos research use only (objects/README)"


# ---- blending ----------------------------------------------------------------------------------------
@dataclass
class SceneLook:
    gain: np.ndarray  # per-channel multiplier that brings a neutrally lit object into the scene
    noise: float  # sensor noise sigma (0..1 scale)
    light: float  # horizontal direction of the sun for shadows (-1 left .. 1 right)


def scene_look(img: np.ndarray, rng: np.random.Generator) -> SceneLook:
    f = img.astype(np.float32) / 255
    lower = f[f.shape[0] // 3:]
    mean = lower.reshape(-1, 3).mean(0) + 1e-3
    lum = float(mean.mean())
    cast = (mean / lum) ** 0.5
    gain = np.clip((lum / 0.45) ** 0.6, 0.35, 1.15) * cast
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
    noise = float(1.4826 * np.median(np.abs(g - cv2.medianBlur(g, 3))))
    return SceneLook(gain.astype(np.float32), min(noise, 0.04), rng.uniform(-1, 1))


def paste(canvas: np.ndarray, p: Placement, look: SceneLook, rng: np.random.Generator) -> None:
    """Composite one placement into `canvas` (float32 HxWx3 in 0..1) in place."""
    H, W = canvas.shape[:2]
    rgba = p.cut.rgba.astype(np.float32) / 255
    h = max(2, int(round(p.h)))
    w = max(1, int(round(p.h * rgba.shape[1] / rgba.shape[0])))
    if h > 2 * H or w > 3 * W:
        return
    pm = np.dstack([rgba[..., :3] * rgba[..., 3:], rgba[..., 3]])  # premultiplied for clean resampling
    interp = cv2.INTER_AREA if h < rgba.shape[0] else cv2.INTER_LINEAR
    pm = cv2.resize(pm, (w, h), interpolation=interp)
    sigma = rng.uniform(0.2, 0.7)
    pm = cv2.GaussianBlur(pm, (0, 0), sigma)
    a = np.clip(pm[..., 3], 0, 1)
    col = pm[..., :3] / np.maximum(a[..., None], 1e-4)
    col = col * look.gain * rng.uniform(0.85, 1.1)
    x0, y0 = int(round(p.x - w / 2)), int(round(p.y - h))

    if p.cut.kind not in ("awning", "shop_sign") and rng.random() < 0.8:
        _shadow(canvas, p, w, look, rng)
    # clip the object's box to the image
    ix0, iy0, ix1, iy1 = max(0, x0), max(0, y0), min(W, x0 + w), min(H, y0 + h)
    if ix0 >= ix1 or iy0 >= iy1:
        return
    sa = a[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0, None]
    sc = col[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]
    if look.noise > 0:
        sc = sc + rng.normal(0, look.noise, sc.shape).astype(np.float32)
    region = canvas[iy0:iy1, ix0:ix1]
    region[:] = region * (1 - sa) + np.clip(sc, 0, 1) * sa


def _shadow(canvas: np.ndarray, p: Placement, w: int, look: SceneLook, rng: np.random.Generator) -> None:
    H, W = canvas.shape[:2]
    sw, sh = w * rng.uniform(0.55, 0.8), max(1.0, p.h * rng.uniform(0.05, 0.12))
    cx, cy = p.x + look.light * w * 0.35, p.y - sh * 0.3
    pad = int(sw + 4)
    x0, y0 = int(cx) - pad, int(cy) - pad
    m = np.zeros((2 * pad, 2 * pad), np.float32)
    cv2.ellipse(m, (pad, pad), (max(1, int(sw)), max(1, int(sh))), 0, 0, 360, 1.0, -1)
    m = cv2.GaussianBlur(m, (0, 0), max(0.8, sh * 0.6)) * rng.uniform(0.25, 0.5)
    ix0, iy0, ix1, iy1 = max(0, x0), max(0, y0), min(W, x0 + 2 * pad), min(H, y0 + 2 * pad)
    if ix0 < ix1 and iy0 < iy1:
        canvas[iy0:iy1, ix0:ix1] *= 1 - m[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0, None]


def compose(img: np.ndarray, bank: ObjectBank, rng: np.random.Generator, negative: bool = False,
            max_objects: int = 8) -> tuple[np.ndarray, list[str]]:
    """Paste roadwork objects (or hard negatives) into an RGB uint8 scene; returns (image, kinds)."""
    g = estimate_ground(img, rng)
    look = scene_look(img, rng)
    places = layout_negative(g, bank, rng) if negative else layout_positive(g, bank, rng, max_objects)
    canvas = img.astype(np.float32) / 255
    for p in places:
        paste(canvas, p, look, rng)
    return np.round(np.clip(canvas, 0, 1) * 255).astype(np.uint8), [p.cut.kind for p in places]


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
               progress: Callable[[int], None] | None = None) -> Path:
    """Write `n` positives and `n_neg` hard negatives as JPEGs plus `manifest.csv`; returns its path.

    `scenes` are label-0 Records (or image paths); each output keeps its scene's group, so group
    splits stay honest, and records the scene's source and path (relative to `scene_root` where
    given) so a trainer can drop synthetic images painted on held-out scenes.
    """
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    info = [_scene(s) for s in scenes]
    if not info:
        raise ValueError("synthesize: no scenes given")
    p = scene_weights([i[2] for i in info])
    rows, failed = [], []
    t0 = time.perf_counter()
    jobs = [(1, i) for i in range(n)] + [(0, i) for i in range(n_neg)]
    for done, (label, i) in enumerate(jobs, 1):
        rng = np.random.default_rng([seed, label, i])
        for _ in range(10):  # an unreadable scene is reported and another one drawn
            path, group, source, load = info[rng.choice(len(info), p=p)]
            try:
                img = fit_max_side(load().convert("RGB"), max_side)
                break
            except (OSError, ValueError) as e:
                failed.append(f"{path}: {e}")
        else:
            raise RuntimeError("synthesize: 10 unreadable scenes in a row; last: " + failed[-1])
        arr, kinds = compose(np.asarray(img), bank, rng, negative=not label)
        name = f"images/{'pos' if label else 'neg'}_{i:06d}.jpg"
        Image.fromarray(arr).save(out_dir / name, quality=int(rng.integers(85, 96)))
        rel = _relative(path, scene_root)
        rows.append({"path": name, "label": label, "source": f"{'synth' if label else 'synth_neg'}:{source}",
                     "group": group, "license": LICENSE, "scene_source": source, "scene_path": rel,
                     "objects": " ".join(kinds)})
        if progress:
            progress(done)
    manifest = out_dir / "manifest.csv"
    with manifest.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    secs = time.perf_counter() - t0
    summary = {"seed": seed, "n": n, "n_neg": n_neg, "max_side": max_side, "seconds": round(secs, 1),
               "ms_per_image": round(1000 * secs / max(1, len(jobs)), 1), "bank_cones": len(bank.cones),
               "scene_sources": _count(i[2] for i in info), "used_sources": _count(r["scene_source"] for r in rows),
               "unreadable": failed}
    (out_dir / "synth.json").write_text(json.dumps(summary, indent=1))
    return manifest


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


# ---- on-the-fly ---------------------------------------------------------------------------------------
class CopyPaste:
    """DataLoader transform: with probability `p` a label-0 image becomes a synthetic positive.

    `(image, label) -> (image, label)`. With probability `p_neg` (of the images not made positive) a
    label-0 image gets hard negatives and stays 0. Positives pass unchanged. Picklable; each
    DataLoader worker draws from its own stream (`seed` mixed with the worker's seed).
    """

    def __init__(self, bank: ObjectBank, p: float = 0.3, seed: int | None = None, p_neg: float = 0.0,
                 max_objects: int = 8):
        self.bank, self.p, self.seed, self.p_neg, self.max_objects = bank, p, seed, p_neg, max_objects
        self._rng: np.random.Generator | None = None
        self._pid = 0

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_rng": None}

    def __call__(self, image: Image.Image, label: int = 0, rng: np.random.Generator | None = None
                 ) -> tuple[Image.Image, int]:
        if rng is None:
            self._rng, self._pid = worker_rng(self.seed, self._rng, self._pid)
            rng = self._rng
        if int(label) != 0:
            return image, int(label)
        u = rng.random()
        if u < self.p:
            arr, _ = compose(np.asarray(image.convert("RGB")), self.bank, rng, False, self.max_objects)
            return Image.fromarray(arr), 1
        if u < self.p + (1 - self.p) * self.p_neg:
            arr, _ = compose(np.asarray(image.convert("RGB")), self.bank, rng, True)
            return Image.fromarray(arr), 0
        return image, 0


# ---- the `roadwork synth` command ---------------------------------------------------------------------
def load_bank(objects: str, cache: Path, progress: Callable[[str, int, int], None] | None = None) -> ObjectBank:
    """`objects`: a saved bank folder, an objects folder with boxes.csv (cut once, cached in `cache`),
    or "none" for procedural objects only."""
    if objects.lower() == "none":
        return ObjectBank()
    path = Path(objects)
    if ObjectBank.saved_source(path) is not None:
        return ObjectBank.load(path)
    if ObjectBank.saved_source(cache) == str(path.absolute()):
        return ObjectBank.load(cache)
    from roadwork.train.objects import read_boxes

    total = len(read_boxes(path))  # raises BankError naming boxes.csv when it is missing or malformed
    bank = ObjectBank.build(path, progress=(lambda k: progress("cutting cones", k, total)) if progress else None)
    bank.save(cache, source=str(path.absolute()))
    return bank


def run_synth(data: str, objects: str, out: str | Path, n: int, seed: int, n_neg: int = 0,
              exclude_sources: Sequence[str] = (), max_side: int | None = 320, console: Any = None) -> Path:
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
                              progress=lambda k: report("synthesizing", k, n + n_neg))
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
