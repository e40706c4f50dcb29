"""The engine: a configured cascade that turns a batch of images into calibrated probabilities.

decode (caller) -> tier 1 -(uncertain)-> tier 2 -> ... -> stacker -> Result

Everything that answers questions (CLI, HTTP service, miner, Ray labeller, benchmarks) goes
through `Engine.predict`; the shells only convert their inputs and outputs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
from PIL import Image

from roadwork.config import Config, RouterConfig, load_config, resolve_path
from roadwork.tiers import Tier, create_tier
from roadwork.tiers.base import clean_probs

log = logging.getLogger(__name__)


@dataclass
class Result:
    """One image's answer: the probability, the label, the tier that decided, and timings."""

    prob: float
    label: int
    tier: str
    per_tier: dict[str, float] = field(default_factory=dict)
    times_ms: dict[str, float] = field(default_factory=dict)
    timed_out: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Engine:
    """A cascade of tiers, cheapest first. Images whose probability falls inside a tier's band
    escalate to the next tier; the rest are answered. When several tiers ran on an image and a
    stacker is configured, the stacker combines their probabilities."""

    def __init__(self, tiers: Sequence[Tier], bands: Sequence[tuple[float, float]] | None = None,
                 router: RouterConfig | None = None, stacker: Any | None = None):
        if not tiers:
            raise ValueError("an engine needs at least one tier")
        self.tiers = list(tiers)
        self.bands = list(bands) if bands is not None else [(0.2, 0.8)] * len(self.tiers)
        self.router = router or RouterConfig()
        self.stacker = stacker
        self.threshold = self.router.threshold
        self.escalations = {t.name: 0 for t in self.tiers}  # images each tier passed upward

    @classmethod
    def from_config(cls, cfg: Config | None = None) -> "Engine":
        cfg = cfg or load_config()
        tiers = [create_tier(t) for t in cfg.tiers]
        stacker = None
        if cfg.router.stacker:
            from roadwork.stacker import Stacker

            stacker = Stacker.load(resolve_path(cfg.router.stacker))
        engine = cls(tiers, [t.band for t in cfg.tiers], cfg.router, stacker)
        from roadwork.sequence import Hysteresis

        seq = cfg.sequence  # read by roadwork.sequence for videos and multi-view input
        engine.hysteresis = Hysteresis(seq.enter, seq.exit, seq.min_duration_s, seq.max_gap_s)
        engine.views = seq.views
        return engine

    @classmethod
    def from_pretrained(cls, model: str | None = None, **tier_overrides: Any) -> "Engine":
        """A one-tier engine on a classifier folder or hub id (the embedded default if None)."""
        over: dict[str, Any] = {"tiers": [{"model": model, **tier_overrides}]} if model else {}
        return cls.from_config(load_config(overrides=over))

    def warmup(self) -> None:
        for t in self.tiers:
            t.warmup()

    def predict(self, images: Sequence[Image.Image], deadline: float | None = None) -> list[Result]:
        """Answer every image. `deadline` is an absolute `time.monotonic()` time; when it would
        be passed, images still escalating are answered by the best tier that already ran."""
        n = len(images)
        if n == 0:
            return []
        if deadline is None and self.router.deadline_s is not None:
            deadline = time.monotonic() + self.router.deadline_s
        per_tier: list[dict[str, float]] = [{} for _ in range(n)]
        times: list[dict[str, float]] = [{} for _ in range(n)]
        decided_by = [""] * n
        timed_out = [False] * n
        active = np.arange(n)
        for i, tier in enumerate(self.tiers):
            if i > 0 and deadline is not None and time.monotonic() + tier.cost / 1000.0 > deadline:
                for j in active:
                    timed_out[j] = True
                log.warning("deadline: %d image(s) answered by %s instead of %s", len(active),
                            decided_by[active[0]] if len(active) else "-", tier.name)
                break
            t0 = time.perf_counter()
            try:
                probs = clean_probs(tier.predict([images[j] for j in active]))
            except Exception:
                if i == 0:
                    raise
                # a later tier failing (remote server down, OOM) must not cost the answer the
                # earlier tiers already have: answer those images like a deadline would
                log.exception("tier %s failed on %d image(s); answering with the tiers that ran", tier.name,
                              len(active))
                break
            if len(probs) != len(active):
                raise RuntimeError(f"tier {tier.name} returned {len(probs)} probabilities for {len(active)} images")
            ms = (time.perf_counter() - t0) * 1000.0 / max(len(active), 1)
            for j, p in zip(active, probs):
                per_tier[j][tier.name] = float(p)
                times[j][tier.name] = ms
                decided_by[j] = tier.name
            if i == len(self.tiers) - 1:
                break
            lo, hi = self.bands[i]
            unsure = (probs >= lo) & (probs <= hi)
            self.escalations[tier.name] += int(unsure.sum())
            active = active[unsure]
            if len(active) == 0:
                break
        stacked = self._stack(per_tier)
        return [self._answer(per_tier[j], self._fallback(per_tier[j]) if self._cut_short(per_tier[j])
                             else decided_by[j], times[j], timed_out[j], stacked.get(j)) for j in range(n)]

    def _cut_short(self, probs: dict[str, float]) -> bool:
        """Whether the router wanted a tier that did not run (deadline or failure)."""
        for i, t in enumerate(self.tiers):
            if t.name not in probs:
                return True  # every tier before it was unsure, so it was wanted
            lo, hi = self.bands[i]
            if i < len(self.tiers) - 1 and not lo <= probs[t.name] <= hi:
                return False
        return False

    def _fallback(self, probs: dict[str, float]) -> str:
        """For an image cut short (deadline or failure): the deepest tier that ran and is
        calibrated (an uncalibrated detector's raw score is a ranking, not a probability)."""
        ran = [t for t in self.tiers if t.name in probs]
        calibrated = [t for t in ran if t.calibrated]
        return (calibrated or ran)[-1].name

    def _stack(self, per_tier: list[dict[str, float]]) -> dict[int, float]:
        """Stacker answers for every image that ran more than one tier, in one batch call."""
        if self.stacker is None:
            return {}
        covers = getattr(self.stacker, "covers", lambda probs: True)
        idx = [j for j, probs in enumerate(per_tier) if len(probs) > 1 and covers(probs)]
        if not idx:
            return {}
        rows = [per_tier[j] for j in idx]
        if hasattr(self.stacker, "combine_batch"):
            vals = np.asarray(self.stacker.combine_batch(rows), dtype=np.float64)
        else:
            vals = np.array([self.stacker.combine(r) for r in rows], dtype=np.float64)
        return dict(zip(idx, vals.tolist()))

    def _answer(self, probs: dict[str, float], tier: str, times: dict[str, float], timed_out: bool,
                stacked: float | None = None) -> Result:
        if stacked is not None:
            p = stacked
            tier = "stacker"
        else:
            p = probs[tier]
        p = float(clean_probs(np.array([p]))[0])
        return Result(prob=p, label=int(p > self.threshold), tier=tier, per_tier=probs,
                      times_ms=times, timed_out=timed_out)
