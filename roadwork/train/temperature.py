"""Temperature scaling and a decision threshold, fitted on validation logits and folded into the head.

For a two-class softmax head, P(roadwork) = sigmoid(d) with d = z1 - z0. We fit a temperature T
(minimum NLL of sigmoid(d / T)) and then the threshold t on q = sigmoid(d / T) that maximizes MCC.
The validator rounds at 0.5, so the saved model must say 0.5 exactly where we would say t:

    p' = sigmoid(d / T - logit(t))          p' > 0.5  <=>  q > t

Folding: divide the head's weight and bias by T, then move logit(t)/2 from the roadwork bias to the
other one. The saved folder then needs no side file for the decision: any loader (the base miner's
`pipeline("image-classification")` included) computes p' itself.

Metrics (MCC, AUC, reward) come from `roadwork.metrics`, the same code `roadwork eval` reports with.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from roadwork.metrics import logit, sigmoid

T_RANGE = (0.05, 20.0)  # a temperature outside this means the logits carry no usable scale
T_CLIP = (0.02, 0.98)  # thresholds beyond this would need huge bias shifts for little gain


# ---- fitting -----------------------------------------------------------------------------------
def class_weights(labels: np.ndarray, balanced: bool) -> np.ndarray:
    """Per-sample weights that give both classes the same total (the validator asks 50/50)."""
    y = np.asarray(labels).astype(int)
    if not balanced or y.min() == y.max():
        return np.ones(len(y))
    n1 = y.sum()
    return np.where(y == 1, len(y) / (2.0 * n1), len(y) / (2.0 * (len(y) - n1)))


def fit_temperature(margins: np.ndarray, labels: np.ndarray, balanced: bool = False) -> float:
    """Temperature T minimizing the (class-weighted when `balanced`) NLL of sigmoid(margin / T).

    The NLL is convex in a = 1/T, so its derivative mean((sigmoid(a d) - y) d) is increasing in a
    and a bisection in log a finds the minimum without any tuning. Separable data would push T to
    zero; the result is clipped to T_RANGE.
    """
    d = np.asarray(margins, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if len(d) == 0 or y.min() == y.max():
        return 1.0
    w = class_weights(labels, balanced)

    def grad(log_a: float) -> float:
        return float(np.mean(w * (sigmoid(math.exp(log_a) * d) - y) * d))

    lo, hi = -math.log(T_RANGE[1]), -math.log(T_RANGE[0])
    if grad(hi) < 0:
        return T_RANGE[0]
    if grad(lo) > 0:
        return T_RANGE[1]
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if grad(mid) > 0:
            hi = mid
        else:
            lo = mid
    return float(1.0 / math.exp(0.5 * (lo + hi)))


def fit_threshold(probs: np.ndarray, labels: np.ndarray, balanced: bool = False) -> tuple[float, float]:
    """The threshold t (decide p > t) with the best MCC, and that MCC. With `balanced`, MCC is
    computed as if both classes were equally frequent (the validator's prior), not ours (~13%).

    Candidates are midpoints between consecutive distinct probabilities; among equally good ones
    the middle of the longest run is taken, which keeps the decision away from the edge of the
    best plateau.
    """
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels).astype(int)
    if len(p) == 0 or y.min() == y.max():
        return 0.5, 0.0
    u = np.unique(p)
    cands = np.concatenate([[u[0] - 1e-12], (u[:-1] + u[1:]) / 2.0]) if len(u) > 1 else np.array([0.5])
    cands = np.clip(cands, *T_CLIP)
    # counts of predicted positives among true positives / negatives for each candidate, vectorized
    pos, neg = np.sort(p[y == 1]), np.sort(p[y == 0])
    w1, w0 = (len(y) / (2.0 * len(pos)), len(y) / (2.0 * len(neg))) if balanced else (1.0, 1.0)
    tp = (len(pos) - np.searchsorted(pos, cands, side="right")) * w1
    fp = (len(neg) - np.searchsorted(neg, cands, side="right")) * w0
    fn, tn = len(pos) * w1 - tp, len(neg) * w0 - fp
    den = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = np.where(den > 0, (tp * tn - fp * fn) / den, 0.0)
    best = scores.max()
    if best <= 0:  # no threshold separates the classes at all: keep the neutral one
        return 0.5, float(best)
    # the middle of the longest run of best candidates: a median over separate runs could land
    # between them, on a threshold that is not among the best at all
    is_best = np.isclose(scores, best, rtol=0, atol=1e-12)
    edges = np.flatnonzero(np.diff(np.r_[0, is_best.astype(np.int8), 0]))
    starts, ends = edges[::2], edges[1::2]
    k = int(np.argmax(ends - starts))
    return float(cands[(starts[k] + ends[k] - 1) // 2]), float(best)


def calibrated_prob(margins: np.ndarray, temperature: float, threshold: float) -> np.ndarray:
    """P(roadwork) of the folded head: sigmoid(d / T - logit(t))."""
    d = np.asarray(margins, dtype=np.float64)
    return sigmoid(d / temperature - logit(threshold))


def calibrate(margins: np.ndarray, labels: np.ndarray, balanced: bool = True) -> dict[str, Any]:
    """Fit T then t on validation margins; returns the numbers stored in roadwork.json.

    `balanced` (default) fits both as if the classes were 50/50, as the validator draws them."""
    temperature = fit_temperature(margins, labels, balanced)
    q = sigmoid(np.asarray(margins, dtype=np.float64) / temperature)
    threshold, best = fit_threshold(q, labels, balanced)
    return {"temperature": temperature, "threshold": threshold, "balanced": balanced,
            "val_mcc_at_threshold": best}


NARROW_BAND = 0.1  # calibrated validation outputs spread (5th-95th percentile) less than this: a constant answer


def degenerate(calib: dict[str, Any], margins: np.ndarray) -> str | None:
    """Why a fitted calibration makes a model that answers (almost) a constant, or None. A temperature at
    its bound means the fit found no usable signal (T = 20 with every output in 0.51-0.54, seen on a
    small CPU run); such a model must not be saved silently."""
    why = []
    T = calib["temperature"]
    if T >= T_RANGE[1] or T <= T_RANGE[0]:
        why.append(f"temperature {T:g} is at its bound {T_RANGE}")
    p = calibrated_prob(margins, T, calib["threshold"])
    if len(p):
        lo, hi = np.percentile(p, [5, 95])
        if hi - lo < NARROW_BAND:
            why.append(f"90% of validation outputs lie in {lo:.2f}-{hi:.2f}")
    return "; ".join(why) + ": the model answers nearly a constant" if why else None


# ---- folding into the model ------------------------------------------------------------------------
def head_linear(model: nn.Module) -> nn.Linear:
    """The final Linear layer that produces the class logits of an image classifier."""
    n = int(getattr(model.config, "num_labels", 2))
    timm_model = getattr(model, "timm_model", None)
    cand = timm_model.get_classifier() if timm_model is not None else getattr(model, "classifier", None)
    if isinstance(cand, nn.Sequential):
        lin = [m for m in cand.modules() if isinstance(m, nn.Linear)]
        cand = lin[-1] if lin else None
    if isinstance(cand, nn.Linear) and cand.out_features == n:
        return cand
    last = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == n]
    if not last:
        raise ValueError(f"{type(model).__name__}: no Linear head with {n} outputs to fold calibration into")
    return last[-1]


@torch.no_grad()
def fold_into_head(model: nn.Module, temperature: float, threshold: float, positive: int = 1) -> None:
    """Scale the head by 1/T and shift the class biases by -/+ logit(t)/2 (see module docstring)."""
    if model.config.num_labels != 2:
        raise ValueError(f"calibration folding needs a 2-class head, got num_labels={model.config.num_labels}")
    head = head_linear(model)
    if head.bias is None:
        raise ValueError(f"{type(model).__name__}: head has no bias; cannot fold the threshold")
    shift = float(logit(min(max(threshold, T_CLIP[0]), T_CLIP[1]))) / 2.0
    head.weight.div_(temperature)
    head.bias.div_(temperature)
    head.bias[positive] -= shift
    head.bias[1 - positive] += shift
