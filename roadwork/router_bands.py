"""Fit the router's escalation bands on labelled data.

Run every tier on every labelled image once (`probs`, N x T), then simulate the cascade for any
choice of bands without running a model again: an image stops at the first tier whose probability
falls outside that tier's band, pays the summed cost of the tiers it ran, and is answered by the
stacker over those tiers (or by the last tier when there is no stacker).

Two goals:
  budget_ms        maximize MCC with mean cost per image <= budget
  target_accuracy  reach this accuracy at the least mean cost (if no bands reach it: best accuracy)
(neither: maximize MCC, ties to the cheaper). Search: coordinate descent over a grid of (low, high)
per tier, from two starts (escalate everything / escalate nothing), keeping the better result.
Bands fitted on the same images they are scored on are optimistic: fit on a split you don't report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from roadwork.metrics import confusion, hard_labels, mcc_from_confusion

LOWS = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)
HIGHS = tuple(round(1.0 - lo, 2) for lo in LOWS)
GRID = [(lo, hi) for lo in LOWS for hi in HIGHS]


@dataclass
class CascadeOutcome:
    prob: np.ndarray  # final probability per image
    depth: np.ndarray  # index of the last tier that ran
    cost: np.ndarray  # summed cost per image
    accuracy: float
    mcc: float

    @property
    def mean_cost(self) -> float:
        return float(self.cost.mean()) if len(self.cost) else 0.0


@dataclass
class CascadeFit:
    bands: list[tuple[float, float]]
    outcome: CascadeOutcome
    goal: str
    table: list[dict[str, Any]] = field(default_factory=list)  # one row per tier


def escalation_depth(probs: np.ndarray, bands: Sequence[tuple[float, float]]) -> np.ndarray:
    """Index of the last tier each image runs: the first tier whose probability is outside its
    band (bands of the last tier are ignored: nothing follows it)."""
    n, t = probs.shape
    depth = np.full(n, t - 1)
    open_ = np.ones(n, bool)
    for i in range(t - 1):
        lo, hi = bands[i]
        stop = open_ & ~((probs[:, i] >= lo) & (probs[:, i] <= hi))
        depth[stop] = i
        open_ &= ~stop
    return depth


def answers_by_depth(probs: np.ndarray, names: Sequence[str], stacker: Any | None = None) -> np.ndarray:
    """(N, T): the answer an image would get if it stopped after tier d (stacker over tiers 0..d)."""
    out = probs.copy()
    if stacker is not None:
        for d in range(1, probs.shape[1]):
            rows = [{names[j]: float(probs[i, j]) for j in range(d + 1)} for i in range(len(probs))]
            out[:, d] = stacker.combine_batch(rows)
    return out


def simulate(answers: np.ndarray, probs: np.ndarray, labels: np.ndarray, bands: Sequence[tuple[float, float]],
             costs: Sequence[float]) -> CascadeOutcome:
    depth = escalation_depth(probs, bands)
    final = answers[np.arange(len(depth)), depth]
    cost = np.cumsum(np.asarray(costs, dtype=np.float64))[depth]
    pred = hard_labels(final)
    return CascadeOutcome(final, depth, cost, float((pred == labels).mean()) if len(labels) else 0.0,
                          mcc_from_confusion(confusion(labels, pred)))


def _score(o: CascadeOutcome, budget_ms: float | None, target_accuracy: float | None) -> tuple:
    if target_accuracy is not None:
        return (1, -o.mean_cost, o.accuracy) if o.accuracy >= target_accuracy else (0, o.accuracy, -o.mean_cost)
    if budget_ms is not None:
        return (1, o.mcc, -o.mean_cost) if o.mean_cost <= budget_ms + 1e-9 else (0, -o.mean_cost, o.mcc)
    return (o.mcc, -o.mean_cost)


def fit_bands(probs: np.ndarray, labels: Sequence[int], costs: Sequence[float], names: Sequence[str] | None = None,
              stacker: Any | None = None, budget_ms: float | None = None, target_accuracy: float | None = None,
              sweeps: int = 4) -> CascadeFit:
    """Bands for every tier (the last tier's band is returned unchanged as (0, 1): unused)."""
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    n, t = probs.shape
    if len(y) != n or len(costs) != t:
        raise ValueError(f"fit_bands: {n} images x {t} tiers, {len(y)} labels, {len(costs)} costs")
    names = list(names or [f"tier{i}" for i in range(t)])
    answers = answers_by_depth(probs, names, stacker)
    best: tuple | None = None
    best_bands: list[tuple[float, float]] = []
    for start in ((0.0, 1.0), (0.5, 0.5)):
        bands = [start] * t
        cur = _score(simulate(answers, probs, y, bands, costs), budget_ms, target_accuracy)
        for _ in range(sweeps):
            changed = False
            for i in range(t - 1):
                for cand in GRID:
                    trial = bands[:i] + [cand] + bands[i + 1:]
                    s = _score(simulate(answers, probs, y, trial, costs), budget_ms, target_accuracy)
                    if s > cur:
                        cur, bands, changed = s, trial, True
            if not changed:
                break
        if best is None or cur > best:
            best, best_bands = cur, bands
    best_bands[-1] = (0.0, 1.0)
    outcome = simulate(answers, probs, y, best_bands, costs)
    goal = (f"target accuracy {target_accuracy}" if target_accuracy is not None
            else f"max MCC at <= {budget_ms} ms/image" if budget_ms is not None else "max MCC")
    return CascadeFit(best_bands, outcome, goal, tier_table(probs, y, outcome, names, costs))


def tier_table(probs: np.ndarray, labels: np.ndarray, outcome: CascadeOutcome, names: Sequence[str],
               costs: Sequence[float]) -> list[dict[str, Any]]:
    """Per tier: images it answered, accuracy of the cascade on them, its cost, and the tier's own
    accuracy / MCC had it answered every image."""
    rows = []
    for i, name in enumerate(names):
        mine = outcome.depth == i
        alone = hard_labels(probs[:, i])
        rows.append({
            "tier": name, "answered": int(mine.sum()), "reached": int((outcome.depth >= i).sum()),
            "accuracy_answered": float((hard_labels(outcome.prob[mine]) == labels[mine]).mean()) if mine.any() else None,
            "cost_ms": float(costs[i]), "alone_accuracy": float((alone == labels).mean()),
            "alone_mcc": mcc_from_confusion(confusion(labels, alone)),
        })
    return rows


# ---- the `roadwork calibrate-cascade` driver ------------------------------------------------------
def tier_outputs(tiers: Sequence[Any], images: Sequence[Any], labels: np.ndarray, fit_calibrators: bool,
                 log: Any = print) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(N, T) probabilities, (T,) measured ms per image, and calibrators fitted on the way
    (for feature tiers that had none, when `fit_calibrators`). Each tier batches by its own
    `batch_size` (the tier base class does)."""
    import time

    from roadwork.tiers.calibrator import FeatureTier, fit_calibrator

    probs = np.zeros((len(images), len(tiers)))
    ms = np.zeros(len(tiers))
    fitted: dict[str, Any] = {}
    for j, tier in enumerate(tiers):
        t0 = time.perf_counter()
        feature_tier = isinstance(tier, FeatureTier)
        out = tier.features(images) if feature_tier else tier.predict(images)
        ms[j] = (time.perf_counter() - t0) * 1000.0 / max(len(images), 1)
        if feature_tier:
            if fit_calibrators and not tier.calibrated:
                fitted[tier.name] = fit_calibrator(tier, [], labels, features=out)
            out = tier.probabilities(out)
        probs[:, j] = out
        log(f"{tier.name}: {len(images)} images, {ms[j]:.1f} ms/image")
    return probs, ms, fitted


def calibrate_cascade(data: str, config: str | None, out: str, budget_ms: float | None = None,
                      target_accuracy: float | None = None, fit_calibrators: bool = True, limit: int | None = None,
                      probs_cache: str | None = None, seed: int = 0, log: Any = print) -> CascadeFit:
    """Run every tier of `config` on the labelled images of `data`, fit missing tier calibrators,
    a stacker and the bands, and write the calibrated config to `out` (json files beside it)."""
    import json
    from pathlib import Path

    from roadwork.config import load_config
    from roadwork.data import open_source
    from roadwork.decode import ImageError
    from roadwork.stacker import Stacker
    from roadwork.tiers import create_tier
    from roadwork.tiers.calibrator import LogisticCalibrator

    cfg = load_config(config)
    names = [t.name for t in cfg.tiers]
    out_path = Path(out)
    stem = out_path.with_suffix("")
    cache = Path(probs_cache) if probs_cache else None
    if cache is not None and cache.is_file():
        z = np.load(cache, allow_pickle=False)
        if list(z["names"]) != names:
            raise ValueError(f"{cache}: cached tiers {list(z['names'])} differ from the config's {names}")
        probs, ms, y = z["probs"], z["ms"], z["labels"]
        # the cached probabilities were computed through these calibrators: they go with them
        fitted = {k: LogisticCalibrator.from_dict(d, f"{cache}: {k}")
                  for k, d in json.loads(str(z["calibrators"])).items()} if "calibrators" in z else {}
        log(f"read tier outputs for {len(y)} images from {cache}")
    else:
        records = open_source(data).records()
        if limit is not None and limit < len(records):
            pick = np.random.default_rng(seed).choice(len(records), limit, replace=False)
            records = [records[i] for i in sorted(pick)]
        images, labels = [], []
        for r in records:
            try:
                images.append(r.load())
                labels.append(r.label)
            except ImageError as e:
                log(f"skipping {e}")
        y = np.asarray(labels, dtype=np.int64)
        if len(np.unique(y)) < 2:
            raise ValueError(f"{data}: calibration needs both labels, got {sorted(set(y.tolist()))}")
        tiers = [create_tier(t) for t in cfg.tiers]
        probs, ms, fitted = tier_outputs(tiers, images, y, fit_calibrators, log=log)
        if cache is not None:
            cals = json.dumps({k: c.to_dict() for k, c in fitted.items()})
            np.savez(cache, probs=probs, ms=ms, labels=y, names=np.array(names), calibrators=np.array(cals))
    for name, cal in fitted.items():
        path = cal.save(f"{stem}.{name}.calibrator.json")
        cfg.tiers[names.index(name)].options["calibrator"] = str(path)
        log(f"{name}: fitted calibrator -> {path}")
    # One precedence for costs: what this run measured replaces the configured cost (the config's
    # `cost` is the estimate until a measurement exists), and the written config carries it.
    costs = [float(m) for m in ms]
    stacker = None
    if len(names) > 1:
        stacker = Stacker.fit(names, probs, y)
        if stacker.models:
            cfg.router.stacker = str(stacker.save(f"{stem}.stacker.json"))
            log(f"stacker over {sorted(stacker.models)} -> {cfg.router.stacker}")
        else:
            stacker = None
    fit = fit_bands(probs, y, costs, names, stacker, budget_ms, target_accuracy)
    for t, band, c in zip(cfg.tiers, fit.bands, costs):
        t.band = band
        t.cost = round(float(c), 3)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    cfg.to_yaml(out_path)
    return fit
