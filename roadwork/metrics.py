"""Metrics for a binary roadwork classifier, and the SN72 validator's reward, simulated.

Hard predictions are made the way the validator makes them: `np.round` (round half to even), so
a probability of exactly 0.5 counts as "no roadwork".

The reward simulator follows natixnetwork/streetvision-subnet (release 2.0.x):
  natix/validator/miner_performance_tracker.py  MinerPerformanceTracker (deque of 100, get_metrics)
  natix/validator/reward.py                     compute_penalty, get_rewards (the cube)
  natix/validator/config.py                     REWARD_CURVE_EXPONENT = 3.0
  natix/utils/config.py                         --neuron.moving_average_alpha default 0.05
  natix/base/validator.py                       update_scores: score = a*reward + (1-a)*score
"""

from __future__ import annotations

import math
from collections import deque
from typing import Sequence

import numpy as np

ECE_BINS = 15
_EPS = 1e-6  # logit clips probabilities to [eps, 1 - eps]: a calibrated 0 or 1 must stay finite


def logit(p: np.ndarray | float) -> np.ndarray:
    """log(p / (1 - p)), with p clipped away from 0 and 1."""
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.log(p) - np.log1p(-p)


def sigmoid(z: np.ndarray | float) -> np.ndarray:
    """1 / (1 + exp(-z)) without overflow (scipy's expit)."""
    from scipy.special import expit

    return expit(np.asarray(z, dtype=np.float64))


def hard_labels(probs: Sequence[float] | np.ndarray) -> np.ndarray:
    """0/1 labels as the validator derives them: numpy round-half-to-even (0.5 -> 0)."""
    return np.round(np.asarray(probs, dtype=np.float64)).astype(np.int64)


# ---- plain metrics --------------------------------------------------------------------------
def confusion(labels: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """[[tn, fp], [fn, tp]] (rows = true label, columns = predicted), always 2x2."""
    labels = np.asarray(labels, dtype=np.int64)
    preds = np.asarray(preds, dtype=np.int64)
    cm = np.zeros((2, 2), dtype=np.int64)
    np.add.at(cm, (labels, preds), 1)
    return cm


def mcc_from_confusion(cm: np.ndarray) -> float:
    """Matthews correlation; 0.0 when a row or column is empty (sklearn's convention)."""
    (tn, fp), (fn, tp) = cm.astype(np.float64)
    denom = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
    return 0.0 if denom == 0 else float((tp * tn - fp * fn) / math.sqrt(denom))


def roc_auc(labels: np.ndarray, probs: np.ndarray) -> float:
    """ROC-AUC, or nan when only one class is present (AUC is undefined there, not 0 or 0.5)."""
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return float("nan")
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, probs))


def brier(labels: np.ndarray, probs: np.ndarray) -> float:
    labels = np.asarray(labels, dtype=np.float64)
    return float(np.mean((np.asarray(probs, dtype=np.float64) - labels) ** 2)) if len(labels) else float("nan")


def reliability_bins(labels: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width bin of P(roadwork): (edges, mean predicted p, fraction positive, count).

    Bins are [k/n, (k+1)/n) with the last one closed, so p = 1.0 lands in the top bin.
    Empty bins hold nan means and count 0."""
    labels = np.asarray(labels, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.floor(probs * n_bins).astype(np.int64), 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(idx, weights=probs, minlength=n_bins) / count
        frac = np.bincount(idx, weights=labels, minlength=n_bins) / count
    return edges, conf, frac, count.astype(np.int64)


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """ECE of P(roadwork): sum over 15 equal-width bins of (bin share) * |fraction positive - mean p|.

    This is the reliability-diagram form for a binary probability (the quantity the router's
    bands and the stacker consume), not the top-label form of Guo et al.; for a perfectly
    calibrated model both are 0."""
    if len(labels) == 0:
        return float("nan")
    _, conf, frac, count = reliability_bins(labels, probs, n_bins)
    keep = count > 0
    return float(np.sum(count[keep] * np.abs(frac[keep] - conf[keep])) / count.sum())


def binary_metrics(labels: Sequence[int] | np.ndarray, probs: Sequence[float] | np.ndarray) -> dict:
    """Every headline number for one set of (label, probability) pairs. JSON-ready floats;
    nan where a metric is undefined (no samples, or AUC with one class)."""
    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    n = len(labels)
    if n == 0:
        nan = float("nan")
        return {"n": 0, "positives": 0, "accuracy": nan, "precision": nan, "recall": nan, "mcc": nan,
                "auc": nan, "brier": nan, "ece": nan, "confusion": [[0, 0], [0, 0]]}
    cm = confusion(labels, hard_labels(probs))
    (tn, fp), (fn, tp) = cm
    return {
        "n": int(n),
        "positives": int(labels.sum()),
        "accuracy": float((tp + tn) / n),
        "precision": float(tp / (tp + fp)) if tp + fp else 0.0,  # zero_division=0, as sklearn/validator
        "recall": float(tp / (tp + fn)) if tp + fn else 0.0,
        "mcc": mcc_from_confusion(cm),
        "auc": roc_auc(labels, probs),
        "brier": brier(labels, probs),
        "ece": expected_calibration_error(labels, probs),
        "confusion": cm.tolist(),
    }


# ---- the subnet reward --------------------------------------------------------------------
HISTORY = 100  # MinerPerformanceTracker(store_last_n_predictions=100)
MCC_WINDOW = 100  # get_metrics(uid, window=100)
ACC_WINDOW = 10  # get_metrics(uid, window=10)
REWARD_EXPONENT = 3.0  # natix/validator/config.py REWARD_CURVE_EXPONENT
EMA_ALPHA = 0.05  # natix/utils/config.py --neuron.moving_average_alpha


def _validator_window_metrics(preds: list[float], labels: list[int]) -> tuple[float, float]:
    """(accuracy, mcc) of one window, exactly as MinerPerformanceTracker.get_metrics computes them.

    The validator drops -1 answers, rounds with np.round and calls sklearn. Any exception inside
    (a NaN in the window, or a value that rounds outside {0, 1} and makes the targets multiclass,
    which `precision_score(average='binary')` refuses) makes it return all-zero metrics.
    Fast path: when the kept answers are all finite and in [0, 1], no sklearn call can raise and
    the numpy arithmetic below gives the same numbers; otherwise we run sklearn itself."""
    keep = [i for i, p in enumerate(preds) if p != -1]
    if not keep:
        return 0.0, 0.0  # _empty_metrics()
    pred_probs = np.array([preds[i] for i in keep], dtype=np.float64)
    y = np.array([labels[i] for i in keep], dtype=np.int64)
    if np.all(np.isfinite(pred_probs)) and np.all((pred_probs >= 0.0) & (pred_probs <= 1.0)):
        cm = confusion(y, np.round(pred_probs).astype(np.int64))
        acc = float(np.trace(cm) / len(y))
        # max(0, mcc) if both labels appear, else 0.0; sklearn's MCC is already 0 when the
        # predictions hold one class (zero denominator), so that gate is implicit.
        mcc = max(0.0, mcc_from_confusion(cm)) if len(np.unique(y)) > 1 else 0.0
        return acc, mcc
    return _sklearn_window_metrics(pred_probs, y)


def _sklearn_window_metrics(pred_probs: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The validator's own calls, in its order, for windows that may make sklearn raise."""
    import warnings

    from sklearn.metrics import (accuracy_score, f1_score, matthews_corrcoef, precision_score, recall_score,
                                 roc_auc_score)

    predictions = np.round(pred_probs)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            accuracy = accuracy_score(labels, predictions)
            precision_score(labels, predictions, zero_division=0)
            recall_score(labels, predictions, zero_division=0)
            f1_score(labels, predictions, zero_division=0)
            mcc = max(0, matthews_corrcoef(labels, predictions)) if len(np.unique(labels)) > 1 else 0.0
            if len(np.unique(labels)) > 1:
                roc_auc_score(labels, pred_probs)
    except Exception:  # the validator logs and returns _empty_metrics()
        return 0.0, 0.0
    return float(accuracy), float(mcc)


class RewardSimulator:
    """One miner as one validator sees it: history of the last 100 (prediction, label) pairs,
    reward = (0.5 * MCC(last 100) + 0.5 * accuracy(last 10)) ** 3, and the EMA score.

    Quirks kept on purpose (they are what the chain pays):
    - every answer enters the history, including -1 (timeouts) and out-of-range values;
      -1 entries are dropped inside each window, so the windows can hold fewer than 10/100;
    - a -1 answer earns 0; an answer outside [0, 1] earns 0 that round (compute_penalty);
    - NaN passes compute_penalty (NaN < 0 and NaN > 1 are both False) but makes sklearn raise,
      so every window holding it scores 0 until it leaves (100 rounds for MCC, 10 for accuracy);
    - an out-of-range value that rounds to 2 (or -1) likewise zeroes every window it sits in.
    """

    def __init__(self, history: int = HISTORY, alpha: float = EMA_ALPHA, exponent: float = REWARD_EXPONENT,
                 score: float = 0.0):
        self.preds: deque[float] = deque(maxlen=history)
        self.labels: deque[int] = deque(maxlen=history)
        self.alpha = alpha
        self.exponent = exponent
        self.score = float(score)  # validator scores start at np.zeros

    def step(self, prediction: float, label: int) -> float:
        """Record one answer; return this round's reward (the EMA is updated in `.score`)."""
        prediction = float(prediction)
        self.preds.append(prediction)
        self.labels.append(int(label))
        if prediction == -1:
            reward = 0.0
        else:
            preds, labels = list(self.preds), list(self.labels)
            _, mcc = _validator_window_metrics(preds[-MCC_WINDOW:], labels[-MCC_WINDOW:])
            acc, _ = _validator_window_metrics(preds[-ACC_WINDOW:], labels[-ACC_WINDOW:])
            reward = 0.5 * mcc + 0.5 * acc
            reward *= 0.0 if (prediction < 0.0 or prediction > 1.0) else 1.0  # compute_penalty
            reward = reward ** self.exponent
        # update_scores replaces a NaN reward by 0 before the EMA (cannot happen here, kept cheap)
        reward = 0.0 if math.isnan(reward) else float(reward)
        self.score = self.alpha * reward + (1.0 - self.alpha) * self.score
        return reward


def simulate_reward(preds: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray,
                    history: int = HISTORY, alpha: float = EMA_ALPHA) -> dict:
    """Feed a stream of answers to one fresh RewardSimulator, in the given order."""
    if len(preds) != len(labels):
        raise ValueError(f"simulate_reward: {len(preds)} predictions for {len(labels)} labels")
    sim = RewardSimulator(history=history, alpha=alpha)
    rewards = np.array([sim.step(p, y) for p, y in zip(preds, labels)], dtype=np.float64)
    return {"mean_reward": float(rewards.mean()) if len(rewards) else float("nan"),
            "final_score": sim.score, "rewards": rewards}


def validator_stream(labels: np.ndarray, rounds: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of a validator-like query stream: each round draws the label 50/50
    (forward.determine_challenge_type: np.random.choice over {0, 1}), then an image of that
    label uniformly, with replacement. Falls back to a plain shuffle when a class is missing."""
    labels = np.asarray(labels)
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    if len(pos) == 0 or len(neg) == 0:
        return rng.permutation(len(labels))[:rounds]
    want_pos = rng.random(rounds) < 0.5
    out = np.where(want_pos, pos[rng.integers(0, len(pos), rounds)], neg[rng.integers(0, len(neg), rounds)])
    return out


def stream_reward(probs: np.ndarray, labels: np.ndarray, seed: int) -> dict:
    """The reward one validator would pay for these answers, over as many rounds as images.

    Main number: a validator-like stream (label 50/50 each round, then an image of that label),
    because our data is ~87% negatives and the validator's is balanced. Also reported: the same
    images in a plain seeded shuffle. The order generator is separate from the challenge one."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    if len(labels) == 0:
        return {"mean_reward": math.nan, "final_score": math.nan, "rounds": 0}
    order_rng = np.random.default_rng([seed, 72])
    balanced = validator_stream(labels, len(labels), order_rng)
    shuffled = order_rng.permutation(len(labels))
    b = simulate_reward(probs[balanced], labels[balanced])
    s = simulate_reward(probs[shuffled], labels[shuffled])
    return {"mean_reward": b["mean_reward"], "final_score": b["final_score"], "rounds": len(labels),
            "stream": "validator: label 50/50 per round, image drawn with replacement",
            "shuffled_mean_reward": s["mean_reward"], "shuffled_final_score": s["final_score"]}
