"""Small calibrators that turn a tier's raw evidence into P(roadwork).

Zero-shot similarities, VLM yes/no odds and detector outputs are not probabilities the router can
compare across tiers. Each such tier exposes `features(images) -> (N, F)` and a logistic
calibrator fitted on labelled images maps them to a probability; a 1-D calibrator on the logit of
the raw score is Platt scaling. Calibrators are plain json (weights, not pickles) so that a miner
never unpickles a file it was handed.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from roadwork.jsonio import load_json, save_json
from roadwork.metrics import sigmoid
from roadwork.tiers.base import Tier, clean_probs

log = logging.getLogger(__name__)

CALIBRATOR_FILE = "roadwork_calibrator.json"  # looked up beside a local model folder


@dataclass
class LogisticCalibrator:
    """p = sigmoid(coef . x + intercept) over named features."""

    features: list[str]
    coef: list[float]
    intercept: float
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.coef) != len(self.features):
            raise ValueError(f"calibrator: {len(self.coef)} weights for {len(self.features)} features")

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        if x.shape[1] != len(self.coef):
            raise ValueError(f"calibrator expects {len(self.coef)} features {self.features}, got {x.shape[1]}")
        return clean_probs(sigmoid(x @ np.asarray(self.coef) + self.intercept))

    @classmethod
    def fit(cls, x: np.ndarray, y: Sequence[int], features: Sequence[str], c: float = 1.0,
            class_weight: str | None = None) -> "LogisticCalibrator":
        from sklearn.linear_model import LogisticRegression

        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        y = np.asarray(y, dtype=int)
        finite = np.isfinite(x).all(axis=1)  # e.g. a remote VLM that answered neither yes nor no
        x, y = x[finite], y[finite]
        if len(np.unique(y)) < 2:
            raise ValueError(f"calibrator: labels need both classes, got only {sorted(set(y.tolist()))}")
        lr = LogisticRegression(C=c, class_weight=class_weight, max_iter=1000)
        lr.fit(x, y)
        return cls(list(features), [float(w) for w in lr.coef_[0]], float(lr.intercept_[0]),
                   {"n": int(len(y)), "positives": int(y.sum()), "C": c})

    @classmethod
    def platt(cls, a: float, b: float) -> "LogisticCalibrator":
        """1-D Platt scaling on the logit of a raw probability: sigmoid(a * logit(p) + b)."""
        return cls(["logit"], [float(a)], float(b))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "logistic", "features": self.features, "coef": self.coef,
                "intercept": self.intercept, "meta": self.meta}

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "calibrator") -> "LogisticCalibrator":
        if "a" in d and "coef" not in d:  # short Platt form {a, b} written by hand in a config
            return cls.platt(float(d["a"]), float(d.get("b", 0.0)))
        try:
            return cls(list(d["features"]), [float(w) for w in d["coef"]], float(d["intercept"]),
                       dict(d.get("meta", {})))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{source}: not a calibrator ({e})") from None

    def save(self, path: str | Path) -> Path:
        return save_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "LogisticCalibrator":
        return cls.from_dict(load_json(path, "calibrator file"), source=str(path))


def load_calibrator(spec: Any, model: str, tier: str) -> LogisticCalibrator | None:
    """The calibrator named by a tier's `options.calibrator`: an inline dict, a json path, or
    (when absent) `roadwork_calibrator.json` beside a local model folder."""
    if spec is None:
        beside = Path(model) / CALIBRATOR_FILE
        return LogisticCalibrator.load(beside) if beside.is_file() else None
    if isinstance(spec, dict):
        return LogisticCalibrator.from_dict(spec, source=f"tier '{tier}' options.calibrator")
    if isinstance(spec, (str, Path)):
        return LogisticCalibrator.load(spec)
    raise ValueError(f"tier '{tier}': options.calibrator must be a mapping or a json path, got {type(spec).__name__}")


class FeatureTier(Tier):
    """A tier whose probability is a calibrator over features it computes; without a fitted
    calibrator it falls back to `uncalibrated(features)` (a ranking, not a probability)."""

    calibrator: LogisticCalibrator | None = None
    feature_names: list[str] = []

    @abstractmethod
    def features_batch(self, images: list[Image.Image]) -> np.ndarray:
        """(n, F) features of at most `batch_size` RGB images."""

    @abstractmethod
    def uncalibrated(self, x: np.ndarray) -> np.ndarray: ...

    def features(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(N, F) features, computed in the base class's chunks."""
        parts = [np.asarray(self.features_batch(c), dtype=np.float64).reshape(len(c), -1) for c in self.chunks(images)]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.feature_names)))

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        if self.calibrator is not None:
            return self.calibrator.predict_proba(x)
        return clean_probs(self.uncalibrated(x))

    def predict_batch(self, images: list[Image.Image]) -> np.ndarray:
        return self.probabilities(self.features_batch(images))

    @property
    def calibrated(self) -> bool:
        return self.calibrator is not None


def fit_calibrator(tier: FeatureTier, images: Sequence[Image.Image], labels: Sequence[int], c: float = 1.0,
                   path: str | Path | None = None, features: np.ndarray | None = None) -> LogisticCalibrator:
    """Fit `tier`'s calibrator on labelled images (or precomputed `features`), install it on the
    tier, and save it to `path` if given."""
    x = tier.features(images) if features is None else np.asarray(features, dtype=np.float64)
    if len(x) != len(labels):
        raise ValueError(f"tier '{tier.name}': {len(x)} feature rows for {len(labels)} labels")
    cal = LogisticCalibrator.fit(x, labels, tier.feature_names, c=c)
    cal.meta["tier"] = tier.name
    tier.calibrator = cal
    if path is not None:
        cal.save(path)
    return cal
