"""Several views and frames: one decision per place, work-zone intervals per video.

Multi-view: N camera images of one place -> one probability, combined by
  noisy_or    1 - prod(1 - p)          (any view showing roadwork is enough)
  max         the most confident view
  mean_logit  sigmoid(mean logit(p))   (views as independent evidence of equal weight)
  mean        mean of p
Video: per-frame probabilities (frames at `fps` from `roadwork.data.iter_video_frames`) go through
a hysteresis state machine: a work zone opens when p >= enter and closes when p < exit (exit <=
enter, so a flicker around one threshold does not toggle it); zones shorter than
`min_duration_s` are dropped and gaps shorter than `max_gap_s` are bridged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
from PIL import Image

from roadwork.config import SequenceConfig
from roadwork.metrics import logit, sigmoid
from roadwork.stream import stream

if TYPE_CHECKING:
    from roadwork.engine import Predictor

VIEW_METHODS = ("noisy_or", "max", "mean_logit", "mean")


def combine_views(probs: Sequence[float] | np.ndarray, method: str = "noisy_or") -> float:
    p = np.clip(np.asarray(probs, dtype=np.float64), 0.0, 1.0)
    if p.size == 0:
        raise ValueError("combine_views: no views")
    if method == "noisy_or":
        return float(1.0 - np.prod(1.0 - p))
    if method == "max":
        return float(p.max())
    if method == "mean_logit":
        return float(sigmoid(logit(p).mean()))
    if method == "mean":
        return float(p.mean())
    raise ValueError(f"unknown view combination {method!r} (known: {', '.join(VIEW_METHODS)})")


@dataclass
class ViewsResult:
    prob: float
    label: int
    method: str
    views: list[float]
    tiers: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def predict_views(images: Sequence[Image.Image], engine: "Predictor", method: str | None = None) -> ViewsResult:
    """One decision for N images of the same place (`method` default: the engine's `sequence.views`)."""
    method = method or engine.sequence.views
    results = engine.predict(list(images))
    p = combine_views([r.prob for r in results], method)
    return ViewsResult(p, int(p > engine.threshold), method, [r.prob for r in results], [r.tier for r in results])


# ---- hysteresis -----------------------------------------------------------------------------------
@dataclass
class Hysteresis:
    """The video state machine; its settings (and their defaults) are `SequenceConfig`'s."""

    enter: float
    exit: float
    min_duration_s: float
    max_gap_s: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.exit <= self.enter <= 1.0:
            raise ValueError(f"hysteresis needs 0 <= exit <= enter <= 1, got enter={self.enter}, exit={self.exit}")

    @classmethod
    def from_config(cls, seq: SequenceConfig) -> "Hysteresis":
        return cls(seq.enter, seq.exit, seq.min_duration_s, seq.max_gap_s)

    def states(self, probs: Iterable[float]) -> np.ndarray:
        """The raw on/off state after each frame (before duration and gap rules)."""
        on, out = False, []
        for p in probs:
            on = p >= self.enter if not on else p >= self.exit
            out.append(on)
        return np.asarray(out, dtype=bool)

    def intervals(self, times: Sequence[float], probs: Sequence[float], end_time: float | None = None
                  ) -> list[tuple[float, float]]:
        """Work zones as (entry_s, exit_s): entry at the first frame on, exit at the first frame off
        (or `end_time`, default one frame after the last, if the video ends inside a zone)."""
        t = np.asarray(times, dtype=np.float64)
        if len(t) != len(probs):
            raise ValueError(f"{len(t)} times for {len(probs)} probabilities")
        if len(t) == 0:
            return []
        step = float(np.median(np.diff(t))) if len(t) > 1 else 0.0
        end = float(end_time) if end_time is not None else float(t[-1] + step)
        raw: list[list[float]] = []
        start = None
        for ti, on in zip(t, self.states(probs)):
            if on and start is None:
                start = ti
            elif not on and start is not None:
                raw.append([start, ti])
                start = None
        if start is not None:
            raw.append([start, end])
        merged: list[list[float]] = []
        for s, e in raw:
            if merged and s - merged[-1][1] < self.max_gap_s:
                merged[-1][1] = e
            else:
                merged.append([s, e])
        return [(float(s), float(e)) for s, e in merged if e - s >= self.min_duration_s]


# ---- video ----------------------------------------------------------------------------------------
@dataclass
class VideoReport:
    fps: float
    times: list[float]
    probs: list[float]
    intervals: list[tuple[float, float]]
    hysteresis: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"fps": self.fps, "frames": len(self.times),
                "intervals": [{"entry_s": round(s, 3), "exit_s": round(e, 3)} for s, e in self.intervals],
                "hysteresis": self.hysteresis,
                "per_frame": [{"t": round(t, 3), "prob": round(p, 6)} for t, p in zip(self.times, self.probs)]}

    def summary(self, path: str) -> str:
        head = f"{path}\t{len(self.times)} frames at {self.fps:g} fps\t{len(self.intervals)} work zone(s)"
        lines = [head] + [f"  work zone {i + 1}: {_clock(s)} -> {_clock(e)} ({e - s:.1f} s)"
                          for i, (s, e) in enumerate(self.intervals)]
        return "\n".join(lines)


def _clock(t: float) -> str:
    m, s = divmod(t, 60.0)
    return f"{int(m):02d}:{s:05.2f}"


def _frames(path: str | Path, fps: float):
    from roadwork.data import iter_video_frames

    return iter_video_frames(path, fps)


def predict_video(path: str | Path, engine: "Predictor", fps: float = 2.0, hysteresis: Hysteresis | None = None,
                  batch_size: int = 16) -> VideoReport:
    """Per-frame probabilities at `fps`, smoothed into work-zone intervals. Decoding errors raise
    `ImageError` naming the file. Hysteresis settings default to the engine's `sequence` config."""
    hyst = hysteresis or Hysteresis.from_config(engine.sequence)
    times: list[float] = []
    probs: list[float] = []
    for t, r in stream(engine, _frames(path, fps), batch_size):
        times.append(t)
        probs.append(r.prob)
    end = times[-1] + 1.0 / fps if times else 0.0
    return VideoReport(fps, times, probs, hyst.intervals(times, probs, end_time=end), asdict(hyst))
