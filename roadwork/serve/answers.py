"""What a front-end answers when the engine cannot: the miner's "never a bad answer" policy.

The validator scores -1, NaN or anything outside [0, 1] as a lost round (and a NaN in its history
can zero a miner for 100 rounds), so every value leaving the miner goes through `safe_prediction`.
"""

from __future__ import annotations

import logging
import math

log = logging.getLogger(__name__)


class DeadlineExceeded(TimeoutError):
    """The batcher could not produce an answer before the request's deadline."""


class ShuttingDown(RuntimeError):
    """The batcher no longer accepts work (graceful shutdown in progress)."""


def safe_prediction(value: object, fallback: float, why: str = "") -> float:
    """`value` as a finite float in [0, 1]; anything else becomes `fallback` (and is logged).

    Out-of-range finite values are clipped rather than replaced: 1.0000001 from float rounding
    still carries the model's opinion.
    """
    if not (isinstance(fallback, (int, float)) and math.isfinite(fallback) and 0.0 <= fallback <= 1.0):
        raise ValueError(f"fallback must be a finite float in [0, 1], got {fallback!r}")
    try:
        p = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        log.warning("answer %r is not a number%s; answering fallback %.3f", value, _why(why), fallback)
        return float(fallback)
    if not math.isfinite(p):
        log.warning("answer %r is not finite%s; answering fallback %.3f", value, _why(why), fallback)
        return float(fallback)
    if p < 0.0 or p > 1.0:
        log.warning("answer %r outside [0, 1]%s; clipped", p, _why(why))
        return min(1.0, max(0.0, p))
    return p


def _why(why: str) -> str:
    return f" ({why})" if why else ""
