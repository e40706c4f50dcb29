"""Group-aware train/validation splits: frames of one clip are near-duplicates and never straddle a split.

Works on anything with `.label` and `.group` (and `.source` for `leave_sources_out`): Records or Samples.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

import numpy as np

from roadwork.data.records import DataError

T = TypeVar("T")


def _group_counts(records: Sequence) -> dict[str, np.ndarray]:
    """group -> [n_none, n_roadwork], in first-seen order."""
    counts: dict[str, np.ndarray] = {}
    for r in records:
        counts.setdefault(r.group, np.zeros(2, dtype=np.int64))[r.label] += 1
    return counts


def group_split(records: Sequence[T], val_fraction: float = 0.2, seed: int = 0,
                stratify: bool = True) -> tuple[list[T], list[T]]:
    """Split whole groups so validation holds about `val_fraction` of the records (of each label when
    `stratify`), and both labels appear on both sides whenever the groups make that possible.

    Greedy over the groups in a seeded random order: a group joins validation when that brings the
    per-label counts closer to their targets. (sklearn's StratifiedGroupKFold only offers fractions
    1/k and hardly varies with the seed, hence this.)
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    counts = _group_counts(records)
    if len(counts) < 2:
        raise DataError(f"cannot split {len(records)} records: need at least 2 groups, found {len(counts)}")
    names = list(counts)
    c = np.stack([counts[n] for n in names]).astype(float)
    if not stratify:
        c = c.sum(axis=1, keepdims=True)
    totals = c.sum(axis=0)
    target, scale = val_fraction * totals, np.maximum(totals, 1)

    def dist(v: np.ndarray) -> float:
        return float((((v - target) / scale) ** 2).sum())

    in_val = np.zeros(len(names), dtype=bool)
    for i in np.random.default_rng(seed).permutation(len(names)):
        if dist(c[in_val].sum(axis=0) + c[i]) < dist(c[in_val].sum(axis=0)):
            in_val[i] = True
    if not in_val.any():  # every group is bigger than the target: take the one that fits best
        in_val[int(np.argmin([dist(ci) for ci in c]))] = True
    if stratify:
        _ensure_both_sides(c, in_val, dist)
    val_groups = {n for n, v in zip(names, in_val) if v}
    train = [r for r in records if r.group not in val_groups]
    val = [r for r in records if r.group in val_groups]
    return train, val


def _ensure_both_sides(c: np.ndarray, in_val: np.ndarray, dist) -> None:
    """Move the best-fitting group across when a label is missing from one side but could be on both."""
    for label in range(c.shape[1]):
        for side in (True, False):  # side True: validation lacks the label; False: train lacks it
            here = in_val if side else ~in_val
            if c[here, label].sum() > 0:
                continue
            donors = [i for i in np.flatnonzero(~here) if c[i, label] > 0
                      and c[~here, label].sum() - c[i, label] > 0 and (~here).sum() > 1]
            if not donors:
                continue  # impossible: this label lives in a single group
            val_now = c[in_val].sum(axis=0)
            best = min(donors, key=lambda i: dist(val_now + c[i] if side else val_now - c[i]))
            in_val[best] = side


def leave_sources_out(records: Sequence[T], holdout: set[str] | str) -> tuple[list[T], list[T]]:
    """Validation = every record of the `holdout` sources; train = the rest (cross-source check)."""
    holdout = {holdout} if isinstance(holdout, str) else set(holdout)
    known = {r.source for r in records}
    unknown = holdout - known
    if unknown:
        raise DataError(f"unknown source(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    train = [r for r in records if r.source not in holdout]
    val = [r for r in records if r.source in holdout]
    if not train:
        raise DataError(f"holding out {', '.join(sorted(holdout))} leaves nothing to train on")
    return train, val


def group_kfold(records: Sequence[T], k: int = 5, seed: int = 0) -> list[tuple[list[T], list[T]]]:
    """k (train, val) folds; each group is in exactly one validation fold, labels stratified."""
    from sklearn.model_selection import StratifiedGroupKFold

    groups = [r.group for r in records]
    if k < 2 or len(set(groups)) < k:
        raise DataError(f"cannot make {k} folds from {len(set(groups))} groups (need k >= 2 and k groups)")
    labels = np.array([r.label for r in records])
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [([records[i] for i in tr], [records[i] for i in va])
            for tr, va in splitter.split(np.zeros(len(records)), labels, groups)]


def summarize(records: Iterable) -> dict[str, dict[str, int]]:
    """source -> {"none", "roadwork", "groups"} counts, for reports and the CLI."""
    out: dict[str, dict[str, int]] = {}
    groups: dict[str, set[str]] = {}
    for r in records:
        row = out.setdefault(r.source, {"none": 0, "roadwork": 0, "groups": 0})
        row["roadwork" if r.label else "none"] += 1
        groups.setdefault(r.source, set()).add(r.group)
    for source, g in groups.items():
        out[source]["groups"] = len(g)
    return out
