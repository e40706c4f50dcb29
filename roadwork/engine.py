"""The engine: a configured cascade that turns a batch of images into calibrated probabilities.

decode (caller) -> tier 1 -(uncertain)-> tier 2 -> ... -> stacker -> Result

Everything that answers questions (CLI, HTTP service, miner, Ray labeller, benchmarks) goes
through `Engine.predict` (batches of a stream through `roadwork.stream`); the shells only convert
their inputs and outputs.

The deadline holds in two ways. Before a later tier runs, the engine estimates its time for the
images about to run (configured or measured ms per image x images) and runs it only on as many of
the most uncertain ones as fit; the rest are answered by the tiers that ran. And every image's
answer is handed to `on_result` as soon as it is known: final for images a tier decided, provisional
(the answer the image would get if the cascade stopped now) for images going on to a later tier, so
a caller that stops waiting (the batcher at its deadline) still has an answer when a later tier runs
slower than estimated.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from roadwork.config import Config, RouterConfig, SequenceConfig, load_config, resolve_path
from roadwork.fast.encoded import ImageInput
from roadwork.stacker import Stacker
from roadwork.tiers import Tier, create_tier
from roadwork.tiers.base import clean_probs

log = logging.getLogger(__name__)


@dataclass
class Result:
    """One image's answer: the probability, the label, the tier that decided, and timings.

    `escalations`: the tiers that passed the image on as uncertain (so `len(per_tier)` is its depth,
    and a deadline-cut image has one escalation more than later tiers ran). `provisional`: handed out
    while a later tier still runs on the image; the final result replaces it."""

    prob: float
    label: int
    tier: str
    per_tier: dict[str, float] = field(default_factory=dict)
    times_ms: dict[str, float] = field(default_factory=dict)
    timed_out: bool = False
    escalations: list[str] = field(default_factory=list)
    provisional: bool = False

    @property
    def depth(self) -> int:
        """How many tiers ran on the image."""
        return len(self.per_tier)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


OnResult = Callable[[int, Result], None]


class Predictor(Protocol):
    """What the shells need of an engine (an `Engine`, or a fake in a test)."""

    threshold: float
    sequence: SequenceConfig

    def predict(self, images: Sequence[ImageInput], deadline: float | None = None,
                on_result: OnResult | None = None) -> list[Result]: ...


class Engine:
    """A cascade of tiers, cheapest first. Images whose probability falls inside a tier's band
    escalate to the next tier; the rest are answered. When several tiers ran on an image and a
    stacker is configured, the stacker combines their probabilities."""

    def __init__(self, tiers: Sequence[Tier], bands: Sequence[tuple[float, float]] | None = None,
                 router: RouterConfig | None = None, stacker: Stacker | None = None,
                 sequence: SequenceConfig | None = None):
        if not tiers:
            raise ValueError("an engine needs at least one tier")
        self.tiers = list(tiers)
        self.bands = list(bands) if bands is not None else [(0.2, 0.8)] * len(self.tiers)
        self.router = router or RouterConfig()
        self.stacker = stacker
        self.sequence = sequence or SequenceConfig()  # videos and multi-view input (roadwork.sequence)
        self.threshold = self.router.threshold
        # where the roadwork is (review overlays, predict --heatmap): the first tier that has a map
        self._locators = [t.location_map for t in self.tiers if callable(getattr(t, "location_map", None))]
        self.location_map = self._location_map if self._locators else None

    @classmethod
    def from_config(cls, cfg: Config | None = None) -> "Engine":
        cfg = cfg or load_config()
        tiers = [create_tier(t) for t in cfg.tiers]
        stacker = Stacker.load(resolve_path(cfg.router.stacker)) if cfg.router.stacker else None
        return cls(tiers, [t.band for t in cfg.tiers], cfg.router, stacker, cfg.sequence)

    @classmethod
    def from_pretrained(cls, model: str | None = None, **tier_overrides: Any) -> "Engine":
        """A one-tier engine on a classifier folder or hub id (the embedded default if None)."""
        over: dict[str, Any] = {"tiers": [{"model": model, **tier_overrides}]} if model else {}
        return cls.from_config(load_config(overrides=over))

    def _location_map(self, image: Any) -> np.ndarray | None:
        """P(roadwork at each location) of a PIL image, from the first tier with a map."""
        return self._locators[0](image)

    def warmup(self) -> None:
        for t in self.tiers:
            t.warmup()

    @property
    def takes_encoded(self) -> bool:
        """Whether the first tier decodes encoded images itself (nvjpeg on a GPU): the shells then hand
        over `Encoded` bytes, checked from their headers, instead of decoding them on the CPU."""
        return self.tiers[0].takes_encoded

    def predict(self, images: Sequence[ImageInput], deadline: float | None = None,
                on_result: OnResult | None = None) -> list[Result]:
        """Answer every image (PIL images, or `roadwork.fast.encoded.Encoded` bytes). `deadline` is an absolute `time.monotonic()` time (default: now +
        `router.deadline_s`); images a later tier has no time for are answered by the tiers that ran.
        `on_result(index, result)` is called as each answer is known (see the module docstring)."""
        run = _Run(self, len(images), on_result)
        if not images:
            return []
        if deadline is None and self.router.deadline_s is not None:
            deadline = time.monotonic() + self.router.deadline_s
        active = np.arange(len(images))
        for i, tier in enumerate(self.tiers):
            if i > 0:
                active = self._within_deadline(run, tier, active, deadline)
                if len(active) == 0:
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
                run.finish(active, cut=True)
                break
            if len(probs) != len(active):
                raise RuntimeError(f"tier {tier.name} returned {len(probs)} probabilities for {len(active)} images")
            ms = (time.perf_counter() - t0) * 1000.0 / len(active)
            for j, p in zip(active, probs):
                run.per_tier[j][tier.name] = float(p)
                run.times[j][tier.name] = ms
            if i == len(self.tiers) - 1:
                run.finish(active)
                break
            lo, hi = self.bands[i]
            unsure = (probs >= lo) & (probs <= hi)
            run.finish(active[~unsure])
            active = active[unsure]
            for j in active:
                run.escalations[j].append(tier.name)
            run.provisional(active)
            if len(active) == 0:
                break
        return run.results()

    def _within_deadline(self, run: "_Run", tier: Tier, active: np.ndarray, deadline: float | None) -> np.ndarray:
        """The images `tier` has time for before `deadline` (its cost per image x images), the most
        uncertain first (previous tier's probability nearest 0.5); the others are answered now."""
        if deadline is None:
            return active
        left_ms = (deadline - time.monotonic()) * 1000.0
        fit = len(active) if tier.cost <= 0 else max(0, min(len(active), math.floor(left_ms / tier.cost)))
        if fit == len(active):
            return active
        prev = self.tiers[self.tiers.index(tier) - 1].name
        order = np.argsort([abs(run.per_tier[j][prev] - 0.5) for j in active], kind="stable")
        keep, cut = np.sort(active[order[:fit]]), active[order[fit:]]
        log.warning("deadline: %d image(s) answered without %s (%.0f ms left, %.1f ms/image)", len(cut),
                    tier.name, left_ms, tier.cost)
        run.finish(cut, cut=True, timed_out=True)
        return keep

    # ---- answers ------------------------------------------------------------------------------
    def _fallback(self, probs: dict[str, float]) -> str:
        """For an image cut short (deadline or failure): the deepest tier that ran and is
        calibrated (an uncalibrated detector's raw score is a ranking, not a probability)."""
        ran = [t for t in self.tiers if t.name in probs]
        calibrated = [t for t in ran if t.calibrated]
        return (calibrated or ran)[-1].name

    def _stack(self, rows: list[dict[str, float]]) -> list[float | None]:
        """The stacker's answer for each row that ran more than one tier (one batch call)."""
        out: list[float | None] = [None] * len(rows)
        if self.stacker is None:
            return out
        idx = [k for k, probs in enumerate(rows) if len(probs) > 1 and self.stacker.covers(probs)]
        if idx:
            for k, v in zip(idx, self.stacker.combine_batch([rows[k] for k in idx]).tolist()):
                out[k] = float(v)
        return out

    def _answer(self, probs: dict[str, float], cut: bool, stacked: float | None = None, **extra: Any) -> Result:
        """The result for an image with these tier probabilities; `cut`: the router wanted a tier that
        did not run (deadline, failure, or not yet)."""
        if stacked is not None:
            p, tier = stacked, "stacker"
        else:
            tier = self._fallback(probs) if cut else next(reversed(probs))
            p = probs[tier]
        p = float(clean_probs(np.array([p]))[0])
        return Result(prob=p, label=int(p > self.threshold), tier=tier, per_tier=dict(probs), **extra)


class _Run:
    """The per-image state of one `Engine.predict` call."""

    def __init__(self, engine: Engine, n: int, on_result: OnResult | None):
        self.engine = engine
        self.on_result = on_result
        self.per_tier: list[dict[str, float]] = [{} for _ in range(n)]
        self.times: list[dict[str, float]] = [{} for _ in range(n)]
        self.escalations: list[list[str]] = [[] for _ in range(n)]
        self.final: list[Result | None] = [None] * n

    def _results(self, idx: np.ndarray, cut: bool, **flags: Any) -> list[tuple[int, Result]]:
        js = [int(j) for j in idx]
        stacked = self.engine._stack([self.per_tier[j] for j in js])
        return [(j, self.engine._answer(self.per_tier[j], cut, s, times_ms=dict(self.times[j]),
                                       escalations=list(self.escalations[j]), **flags))
                for j, s in zip(js, stacked)]

    def finish(self, idx: np.ndarray, cut: bool = False, timed_out: bool = False) -> None:
        for j, r in self._results(idx, cut, timed_out=timed_out):
            self.final[j] = r
            if self.on_result is not None:
                self.on_result(j, r)

    def provisional(self, idx: np.ndarray) -> None:
        """Images going on to a later tier: what they would be answered if the cascade stopped now."""
        if self.on_result is None or len(idx) == 0:
            return
        for j, r in self._results(idx, True, timed_out=True, provisional=True):
            self.on_result(j, r)

    def results(self) -> list[Result]:
        missing = [j for j, r in enumerate(self.final) if r is None]
        if missing:  # pragma: no cover - every path above finishes every image
            raise RuntimeError(f"engine left {len(missing)} image(s) unanswered")
        return [r for r in self.final if r is not None]
