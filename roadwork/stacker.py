"""Fitted stacker: combines the probabilities of the tiers that ran on an image.

In a cascade the tiers that ran on an image are always a prefix of the tier order (tier 1, or
tiers 1-2, or 1-2-3 ...; a deadline cuts a prefix too). The stacker keeps one logistic regression
on the logits of each prefix it was fitted for; an image whose tier set has no model (not fitted,
or too few examples) falls back to the longest fitted prefix it contains, else to the last tier
that ran. Fitted on images that reached the prefix's last tier when there are enough of them (the
distribution the model will see), else on all images.

Saved as plain json: {"tiers": [...], "models": {"a+b": {"coef": [...], "intercept": ...}, ...}}.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from roadwork.jsonio import load_json, save_json
from roadwork.metrics import logit
from roadwork.tiers.calibrator import LogisticCalibrator


def _key(names: Sequence[str]) -> str:
    return "+".join(names)


class Stacker:
    def __init__(self, tiers: Sequence[str], models: Mapping[str, LogisticCalibrator] | None = None):
        self.tiers = list(tiers)
        self.models: dict[str, LogisticCalibrator] = dict(models or {})

    # ---- answering ------------------------------------------------------------------------
    def _prefix(self, probs: Mapping[str, float]) -> list[str]:
        ran = []
        for t in self.tiers:
            if t not in probs:
                break
            ran.append(t)
        return ran

    def covers(self, per_tier_probs: Mapping[str, float]) -> bool:
        """Whether a fitted model answers this tier set (else the engine's own fallback does)."""
        prefix = self._prefix(per_tier_probs)
        return any(_key(prefix[:k]) in self.models for k in range(2, len(prefix) + 1))

    def combine(self, per_tier_probs: Mapping[str, float]) -> float:
        return float(self.combine_batch([per_tier_probs])[0])

    def combine_batch(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        """One probability per row; rows are grouped by which model answers them."""
        out = np.empty(len(rows))
        groups: dict[str, list[int]] = {}
        for i, probs in enumerate(rows):
            prefix = self._prefix(probs)
            while len(prefix) > 1 and _key(prefix) not in self.models:
                prefix = prefix[:-1]
            if len(prefix) > 1:
                groups.setdefault(_key(prefix), []).append(i)
            else:  # no model covers it: the last tier that ran decides
                out[i] = list(probs.values())[-1] if probs else 0.5
        for key, idx in groups.items():
            names = key.split("+")
            x = logit(np.array([[rows[i][n] for n in names] for i in idx]))
            out[idx] = self.models[key].predict_proba(x)
        return out

    # ---- fitting --------------------------------------------------------------------------
    @classmethod
    def fit(cls, tiers: Sequence[str], probs: np.ndarray, labels: Sequence[int],
            reached: np.ndarray | None = None, min_examples: int = 30, c: float = 1.0) -> "Stacker":
        """`probs` (N, T): every tier's probability on every image (run all tiers on labelled
        data). `reached` (N, T) bool: whether the image reached tier t in the cascade; prefix k is
        fitted on the images that reached tier k when at least `min_examples` of both classes did."""
        probs = np.asarray(probs, dtype=np.float64)
        y = np.asarray(labels, dtype=int)
        if probs.shape != (len(y), len(tiers)):
            raise ValueError(f"stacker: probs shape {probs.shape} != ({len(y)}, {len(tiers)})")
        models: dict[str, LogisticCalibrator] = {}
        for k in range(2, len(tiers) + 1):
            rows = np.ones(len(y), bool)
            if reached is not None:
                sub = np.asarray(reached)[:, k - 1]
                if min(np.sum(y[sub] == 1), np.sum(y[sub] == 0)) >= min_examples:
                    rows = sub
            if len(np.unique(y[rows])) < 2:
                continue
            names = list(tiers[:k])
            m = LogisticCalibrator.fit(logit(probs[rows, :k]), y[rows], names, c=c)
            m.meta["fitted_on"] = "reached" if rows is not None and not rows.all() else "all"
            models[_key(names)] = m
        return cls(tiers, models)

    # ---- json -----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"kind": "prefix-logistic", "tiers": self.tiers,
                "models": {k: m.to_dict() for k, m in self.models.items()}}

    def save(self, path: str | Path) -> Path:
        return save_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "Stacker":
        d = load_json(path, "stacker file")
        try:
            return cls(d["tiers"], {k: LogisticCalibrator.from_dict(m, f"{path}: {k}") for k, m in d["models"].items()})
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{path}: not a stacker file ({e})") from None

    def __repr__(self) -> str:
        return f"Stacker(tiers={self.tiers}, models={sorted(self.models)})"
