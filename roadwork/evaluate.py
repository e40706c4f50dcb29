"""`roadwork eval`: run the engine over a labelled source, as the validator would query it.

source ─► (seeded) challenge of one validator version (`--protocol`, roadwork/challenge/protocols.py):
         2026-01/04 an augmentation level + 224x224 JPEG q75, 2026-05 the native image as JPEG q75,
         decoded as the miner decodes it
       ─► roadwork.stream (engine.predict in batches) ─► metrics overall / per level / per source / per tier
       ─► the subnet reward simulated over a validator-like stream of those answers.

Everything random comes from `seed`, split exactly as `roadwork challenge make` splits it: two
streams spawned from `SeedSequence(seed)`, one picking the `--limit` subset, one drawing the
challenges image by image in source order. So `eval --seed S --limit N` scores the very challenges
`challenge make --seed S --n N` writes, and the same seed always gives the same challenge set.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from roadwork.decode import ImageError
from roadwork.jsonio import json_safe
from roadwork.metrics import binary_metrics, hard_labels, stream_reward
from roadwork.stream import stream

if TYPE_CHECKING:
    from roadwork.engine import Engine

MAX_ERRORS_JSON = 100  # the JSON lists this many unreadable files; the count is always exact


@dataclass
class EvalReport:
    """Per-image outcomes of one evaluation, and the summaries derived from them."""

    probs: np.ndarray
    labels: np.ndarray
    levels: np.ndarray  # augmentation level per image; -1 when challenges were off or the version has none
    sources: list[str]
    paths: list[str]
    tiers: list[str]  # the tier that answered each image
    per_tier: list[dict[str, float]]  # each tier's own probability, for the tiers that ran
    times_ms: list[dict[str, float]]  # ms per image of each tier that ran
    timed_out: np.ndarray
    tier_names: list[str]  # the engine's tiers, cheapest first
    errors: list[tuple[str, str]] = field(default_factory=list)
    challenge: bool = True
    seed: int = 0
    protocol: str = ""  # the validator version the challenges follow (empty when challenges were off)
    seconds: float = 0.0
    reward: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.labels)

    def overall(self) -> dict[str, Any]:
        return binary_metrics(self.labels, self.probs)

    def per_level(self) -> dict[str, dict[str, Any]]:
        if not self.challenge:
            return {}
        return {str(lv): binary_metrics(self.labels[self.levels == lv], self.probs[self.levels == lv])
                for lv in sorted(set(self.levels.tolist())) if lv >= 0}

    def per_source(self) -> dict[str, dict[str, Any]]:
        src = np.array(self.sources, dtype=object)
        return {s: binary_metrics(self.labels[src == s], self.probs[src == s]) for s in sorted(set(self.sources))}

    def per_tier_table(self) -> dict[str, Any]:
        """For each tier: images it ran on and answered, accuracy of its answers, its ms/image;
        and the cascade's overall accuracy and mean cost (sum of the tiers that ran)."""
        correct = hard_labels(self.probs) == self.labels
        answered_by = np.array(self.tiers, dtype=object)
        rows: dict[str, Any] = {}
        for name in self.tier_names + (["stacker"] if "stacker" in self.tiers else []):
            ran = np.array([name in d for d in self.per_tier]) if name != "stacker" else answered_by == name
            ans = answered_by == name
            own = np.array([d[name] for d in self.per_tier if name in d])
            ms = [d[name] for d in self.times_ms if name in d]
            rows[name] = {
                "ran": int(ran.sum()),
                "answered": int(ans.sum()),
                "accuracy": float(correct[ans].mean()) if ans.any() else math.nan,
                # the tier's own probability on every image it saw, escalated ones included
                "accuracy_ran": float((hard_labels(own) == self.labels[ran]).mean()) if len(own) else math.nan,
                "ms_per_image": float(np.mean(ms)) if ms else math.nan,
                "cost_ms_answered": float(np.mean(self.cost_ms[ans])) if ans.any() else math.nan,
            }
        return {"tiers": rows, "cascade": {
            "n": self.n,
            "accuracy": float(correct.mean()) if self.n else math.nan,
            "ms_per_image": float(self.cost_ms.mean()) if self.n else math.nan,
            "timed_out": int(self.timed_out.sum()),
        }}

    @property
    def cost_ms(self) -> np.ndarray:
        return np.array([sum(d.values()) for d in self.times_ms], dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object `roadwork eval --json` prints (nan -> null)."""
        m = self.overall()
        out = {"n": self.n, **{k: m[k] for k in ("mcc", "accuracy", "auc", "precision", "recall", "brier", "ece")},
               "confusion": m["confusion"], "positives": m["positives"],
               "reward": self.reward.get("mean_reward", math.nan), "reward_detail": self.reward,
               "per_level": self.per_level(), "per_source": self.per_source(), "per_tier": self.per_tier_table(),
               "errors": len(self.errors),
               "error_files": [{"path": p, "reason": r} for p, r in self.errors[:MAX_ERRORS_JSON]],
               "challenge": self.challenge, "protocol": self.protocol, "seed": self.seed, "seconds": round(self.seconds, 2)}
        return json_safe(out)


# ---- the loop ---------------------------------------------------------------------------------
def evaluate(engine: "Engine", source: Any, challenge: bool = True, seed: int = 0, limit: int | None = None,
             progress: bool = True, batch_size: int = 32, console: Console | None = None,
             protocol: str | None = None) -> EvalReport:
    """Run `engine` over every readable image of `source` (a spec for `roadwork.data.open_source`,
    or a source object) and collect the outcomes. Unreadable images are counted, never fatal.

    `limit` keeps a seeded random subset of that many images (every source stays represented),
    rather than the first N rows of a manifest that is usually sorted by source. `protocol`: the
    validator version of the challenges (default: `protocols.DEFAULT_PROTOCOL`)."""
    from roadwork.challenge.protocols import get_protocol

    t0 = time.perf_counter()
    protocol = get_protocol(protocol).name
    src = _open(source)
    pick_rng, chal_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    items, total = _items(src, limit, pick_rng)
    probs, labels, levels, sources, paths = [], [], [], [], []
    tiers, per_tier, times, timed_out = [], [], [], []
    errors: list[tuple[str, str]] = []
    # a GPU engine decodes the wire JPEG itself (nvjpeg), exactly as it would in the miner
    encoded = bool(getattr(engine, "takes_encoded", False))

    def challenged() -> Iterator[tuple[tuple[int, int, str, str], Image.Image]]:
        """((label, level, source, path), image) of every readable image; errors are recorded."""
        for item in items:
            bar.advance(task)
            if isinstance(item, ImageError):
                errors.append((item.source, item.reason))
                continue
            img, label, src_name, path = item
            level = -1
            if challenge:
                try:
                    img, level = _challenge(img, chal_rng, path, protocol, encoded)
                except ImageError as e:
                    errors.append((e.source, e.reason))
                    continue
            yield (label, level, src_name, path), img

    console = console or Console(stderr=True)
    columns = (TextColumn("eval"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=not progress) as bar:
        task = bar.add_task("eval", total=total)
        for (y, lv, src_name, path), r in stream(engine, challenged(), batch_size):
            probs.append(r.prob), labels.append(y), levels.append(lv), sources.append(src_name), paths.append(path)
            tiers.append(r.tier), per_tier.append(dict(r.per_tier)), times.append(dict(r.times_ms))
            timed_out.append(bool(r.timed_out))
    # errors the source found by itself (e.g. non-image files met while scanning a folder)
    seen = {p for p, _ in errors}
    errors = [e for e in getattr(src, "errors", []) if e[0] not in seen] + errors

    rep = EvalReport(probs=np.array(probs, dtype=np.float64), labels=np.array(labels, dtype=np.int64),
                     levels=np.array(levels, dtype=np.int64), sources=sources, paths=paths, tiers=tiers,
                     per_tier=per_tier, times_ms=times, timed_out=np.array(timed_out, dtype=bool),
                     tier_names=[t.name for t in engine.tiers], errors=errors,
                     challenge=challenge, seed=seed, protocol=protocol if challenge else "")
    rep.reward = stream_reward(rep.probs, rep.labels, seed)
    rep.seconds = time.perf_counter() - t0
    return rep


def _open(source: Any) -> Any:
    if isinstance(source, (str, Path)):
        from roadwork.data import open_source

        return open_source(str(source))
    return source


def _items(src: Any, limit: int | None, pick_rng: np.random.Generator) -> tuple[Iterator[Any], int | None]:
    """(image, label, source, path) tuples or ImageError markers, in a fixed order.

    Sources with lazy `records()` are decoded by a small thread pool ahead of the model (JPEG
    decoding releases the GIL); plain iterables of samples are used as they come."""
    if hasattr(src, "records"):
        recs = src.records()
        if limit is not None and limit < len(recs):
            keep = np.sort(pick_rng.choice(len(recs), size=limit, replace=False))
            recs = [recs[i] for i in keep]
        return _decode_records(recs), len(recs)
    it: Iterable[Any] = iter(src)
    total = None
    if limit is not None:
        import itertools

        it, total = itertools.islice(it, limit), limit
    elif hasattr(src, "__len__"):
        total = len(src)
    return ((s.image, int(s.label), str(s.source), str(s.path)) for s in it), total


def _decode_records(recs: list[Any]) -> Iterator[Any]:
    def load(rec: Any) -> Any:
        try:
            return rec.load(), int(rec.label), str(rec.source), str(rec.path)
        except ImageError as e:
            return e

    ahead = 32  # bounded read-ahead: memory stays flat on big sources
    with ThreadPoolExecutor(max_workers=2) as pool:
        pending: deque[Future[Any]] = deque(pool.submit(load, r) for r in recs[:ahead])
        for rec in recs[ahead:]:
            yield pending.popleft().result()
            pending.append(pool.submit(load, rec))
        while pending:
            yield pending.popleft().result()


def _challenge(img: Image.Image, rng: np.random.Generator, path: str, protocol: str,
               encoded: bool = False) -> tuple[Any, int]:
    """The image a miner receives for `img` (decoded from the wire JPEG, or with `encoded` the wire
    JPEG itself as `Encoded` bytes) and its level (-1: none)."""
    from roadwork.challenge import make_challenge
    from roadwork.challenge.protocols import is_jpeg_path

    try:
        ch = make_challenge(img, rng, protocol=protocol, from_jpeg=is_jpeg_path(path))
    except ImageError as e:
        raise ImageError(path, f"challenge: {e.reason}") from None
    level = -1 if ch.level is None else int(ch.level)
    if encoded:
        from roadwork.fast.encoded import Encoded

        return Encoded.from_bytes(ch.jpeg, path), level
    return ch.image, level


# ---- the CLI's glue -----------------------------------------------------------------------------
def run_eval(engine: Any, data: str, challenge: bool = True, seed: int = 0, limit: int | None = None,
             as_json: bool = False, report_dir: str | Path | None = None, batch_size: int = 32,
             console: Console | None = None, protocol: str | None = None) -> int:
    """`roadwork eval`: the JSON object on stdout (--json) or rich tables; plots with --report.
    `engine` may be a zero-argument factory, called only once the data source opened.
    Returns the exit code: 2 when the data source cannot be read at all."""
    from roadwork.data import DataError
    from roadwork.report import print_report, write_report

    console = console or Console(stderr=True)
    try:
        src = _open(data)
        len(src)  # scans a manifest/folder now, so a bad one fails before the model loads
    except DataError as e:
        console.print(f"[red]error[/red] {e}")
        return 2
    if callable(engine) and not hasattr(engine, "predict"):
        try:
            engine = engine()
        except (ValueError, OSError) as e:  # tiers raise ValueError naming the model they could not load
            console.print(f"[red]error[/red] {e}")
            return 2
    rep = evaluate(engine, src, challenge=challenge, seed=seed, limit=limit, progress=True,
                   batch_size=batch_size, console=console, protocol=protocol)
    if report_dir is not None:
        html_path = write_report(rep, report_dir)
        console.print(f"report: {html_path}")
    if as_json:
        print(json.dumps(rep.to_dict()), flush=True)
    else:
        # a pipe gets 80 columns by default, too narrow for the per-source table
        print_report(rep, Console() if sys.stdout.isatty() else Console(width=120))
    return 0
