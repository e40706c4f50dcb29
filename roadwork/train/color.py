"""Fitting the colour/stripe-cue tier (`roadwork fit-color`): features of labelled images, each first
made a validator challenge, and a standardised, class-balanced logistic regression over them, saved
as the json `roadwork.tiers.color.ColorTier` runs. The tier module only runs the tier.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from roadwork.tiers.color import FEATURES, SIZE, VERSION, ColorModel, color_features


def fit_color_model(x: np.ndarray, y: Sequence[int], c: float = 1.0, size: int = SIZE) -> ColorModel:
    """Standardise, then a class-balanced L2 logistic regression (sklearn)."""
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=int)
    if x.ndim != 2 or x.shape[1] != len(FEATURES) or len(x) != len(y):
        raise ValueError(f"fit_color_model: features {x.shape} for {len(y)} labels, expected (N, {len(FEATURES)})")
    if len(np.unique(y)) < 2:
        raise ValueError(f"fit_color_model: labels need both classes, got only {sorted(set(y.tolist()))}")
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)  # a constant feature keeps weight 0, not NaN
    lr = LogisticRegression(C=c, class_weight="balanced", max_iter=2000).fit((x - mean) / scale, y)
    return ColorModel(list(FEATURES), mean.tolist(), scale.tolist(), lr.coef_[0].tolist(), float(lr.intercept_[0]),
                      size, VERSION, {"n": int(len(y)), "positives": int(y.sum()), "C": c})


# ---- fitting on labelled records ------------------------------------------------------------------
def record_rng(path: str, seed: int) -> np.random.Generator:
    """One challenge stream per image, from (seed, path): an image gets the same challenge whatever
    subset or order it is fitted in, so feature caches stay valid across folds."""
    return np.random.default_rng([seed, zlib.crc32(str(path).encode())])


def record_features(records: Sequence[Any], challenge: bool = True, seed: int = 0, size: int = SIZE,
                    cache: str | Path | None = None, progress: Callable[[int], None] | None = None,
                    protocol: str | None = None) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]], float]:
    """(features, labels, [(path, reason) of unreadable images], ms per image of the features alone)
    for labelled records, each image first turned into a validator challenge when `challenge`.
    `cache` (.npz) keeps features by path for this seed/challenge/size/version and is extended with
    the new ones (the ms is then nan when every row came from it)."""
    import time

    from roadwork.decode import ImageError

    from roadwork.challenge.protocols import get_protocol

    protocol = get_protocol(protocol).name  # the validator version of the challenges (part of the cache key)
    key = f"v{VERSION}-s{size}-c{int(challenge)}-seed{seed}-{protocol}"
    known: dict[str, np.ndarray] = {}
    cpath = Path(cache) if cache else None
    if cpath is not None and cpath.is_file():
        z = np.load(cpath, allow_pickle=False)
        if str(z["key"]) == key:
            known = dict(zip(z["paths"].tolist(), z["x"]))
    rows, labels, errors, new, seconds = [], [], [], 0, 0.0
    color_features(Image.new("RGB", (size, size)), size)  # first-call set-up stays out of the timing
    for i, r in enumerate(records):
        if r.path not in known:
            try:
                img = r.load()
                if challenge:
                    from roadwork.challenge import make_challenge

                    img = make_challenge(img, record_rng(r.path, seed), protocol=protocol).image
            except ImageError as e:
                errors.append((r.path, e.reason))
                continue
            t0 = time.perf_counter()
            known[r.path] = color_features(img, size)
            seconds += time.perf_counter() - t0
            new += 1
        rows.append(known[r.path])
        labels.append(int(r.label))
        if progress is not None:
            progress(i + 1)
    if cpath is not None and new:
        paths = list(known)
        np.savez(cpath, key=np.array(key), paths=np.array(paths), x=np.stack([known[p] for p in paths]))
    x = np.stack(rows) if rows else np.zeros((0, len(FEATURES)))
    return x, np.asarray(labels, dtype=np.int64), errors, seconds * 1000.0 / new if new else float("nan")


def _metrics(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    from roadwork.metrics import binary_metrics

    m = binary_metrics(y, p)
    return {k: m[k] for k in ("mcc", "accuracy", "auc", "precision", "recall")} | {"n": int(len(y)),
                                                                                    "positives": int(y.sum())}


def fit_color_tier(records: Sequence[Any], out_json: str | Path, val: Sequence[Any] = (), challenge: bool = True,
                   seed: int = 0, c: float = 1.0, size: int = SIZE, cache: str | Path | None = None,
                   progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Fit the colour model on `records` (challenged images), score it on `val` if given, and save
    it to `out_json`. Returns {"train": metrics, "val": metrics or None, "model": ColorModel, ...}."""
    x, y, errors, ms = record_features(list(records) + list(val), challenge, seed, size, cache, progress)
    train_paths = {r.path for r in records}
    n_train = len(records) - sum(1 for p, _ in errors if p in train_paths)
    xt, yt, xv, yv = x[:n_train], y[:n_train], x[n_train:], y[n_train:]
    model = fit_color_model(xt, yt, c=c, size=size)
    model.meta.update({"challenge": challenge, "seed": seed, "sources": sorted({r.source for r in records}),
                       "val_sources": sorted({r.source for r in val})})
    if not np.isfinite(ms):  # every row came from the cache: time a few images afresh
        ms = record_features(list(records)[:32], challenge, seed, size)[3]
    if np.isfinite(ms):  # CPU ms per image of the features (decoding and challenges excluded)
        model.meta["cost_ms"] = round(ms, 2)
    out = {"train": _metrics(yt, model.predict_proba(xt)), "val": None, "errors": errors, "model": model}
    if len(yv):
        out["val"] = _metrics(yv, model.predict_proba(xv))
    model.meta["train_metrics"] = out["train"]
    if out["val"] is not None:
        model.meta["val_metrics"] = out["val"]
    model.save(out_json)
    return out


# ---- the `roadwork fit-color` driver ---------------------------------------------------------------
def fit_color_main(data: str, out: str | Path, holdout_source: Sequence[str] = (), val_fraction: float = 0.15,
                   challenge: bool = True, seed: int = 0, c: float = 1.0, cache: str | None = None,
                   console: Any = None) -> int:
    """Split `data` (whole held-out sources, else whole groups; `val_fraction` 0 and no holdout: fit on
    everything), fit, print train/val metrics, save. Returns the exit code (2: unusable data)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from roadwork.data import DataError, group_split, leave_sources_out, open_source

    console = console or Console(stderr=True)
    try:
        records = open_source(data).records()
        if holdout_source:
            train, val = leave_sources_out(records, set(holdout_source))
            how = f"held-out source(s) {', '.join(sorted(set(holdout_source)))}"
        elif val_fraction > 0:
            train, val = group_split(records, val_fraction, seed)
            how = f"{val_fraction:.0%} of the groups (seed {seed})"
        else:
            train, val, how = records, [], "none (fit on everything)"
    except (DataError, ValueError) as e:
        console.print(f"[red]{e}[/red]", soft_wrap=True)
        return 2
    pos = sum(r.label for r in train), sum(r.label for r in val)
    console.print(f"fit on {len(train)} images ({pos[0]} roadwork); validation: {how}, {len(val)} images "
                  f"({pos[1]} roadwork); challenges {'on' if challenge else 'off'}", soft_wrap=True)
    cols = (TextColumn("features"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*cols, console=console, transient=True) as bar:
        task = bar.add_task("features", total=len(train) + len(val))
        try:
            res = fit_color_tier(train, out, val, challenge, seed, c, cache=cache,
                                 progress=lambda i: bar.update(task, completed=i))
        except ValueError as e:
            console.print(f"[red]{e}[/red]", soft_wrap=True)
            return 2
    for path, reason in res["errors"]:
        console.print(f"[yellow]skipped {path}: {reason}[/yellow]", soft_wrap=True)
    table = Table(title=f"colour tier ({len(FEATURES)} features, logistic regression, balanced)")
    for col in ("set", "n", "roadwork", "MCC", "accuracy", "AUC", "precision", "recall"):
        table.add_column(col, justify="right")
    for name in ("train", "val"):
        m = res[name]
        if m is not None:
            table.add_row(name, str(m["n"]), str(m["positives"]), *(f"{m[k]:.3f}" for k in
                                                                     ("mcc", "accuracy", "auc", "precision", "recall")))
    console.print(table)
    cost = res["model"].meta.get("cost_ms")
    console.print((f"features {cost:.1f} ms/image; " if cost is not None else "") + f"wrote {out}")
    return 0
