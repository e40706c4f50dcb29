"""`roadwork label`: batch labelling of large image/video sets, scaled out on Ray.

    specs -> work items (one per image, parquet row or video) -> shards of `shard_size` items
    -> one actor per worker (an Engine built once) pulls shards -> rows
    -> driver writes OUT/labels/part-XXXXX.parquet per finished shard, then OUT/summary.json

A part file appears only when its shard is complete (written to a temp name, then renamed), so
`--resume` skips exactly the shards whose part file exists and recomputes the rest. OUT/plan.json
fingerprints the inputs, shard size, fps and engine config; resuming a different plan is refused
rather than mixing two runs in one output. Unreadable inputs become rows with `error` set; a shard
fails only when the engine itself fails (its part file is then missing and a rerun redoes it).
`local=True` runs the same shards through the same `LabelWorker` in this process, without Ray.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from pydantic import ValidationError

from roadwork.config import Config, LabelConfig, explain_error
from roadwork.data import (DataError, ManifestSource, ParquetSource, Record, expand_paths, iter_video_frames,
                           open_source)
from roadwork.decode import VIDEO_SUFFIXES, ImageError, load_image
from roadwork.stream import stream

if TYPE_CHECKING:
    from roadwork.engine import Predictor

log = logging.getLogger(__name__)


class LabelError(ValueError):
    """A labelling job that cannot start (missing input, ray not installed, a different plan in OUT)."""


# ---- work items ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Item:
    """One unit of work: an image file, a manifest/parquet record, or a whole video (frames at fps)."""

    path: str
    video: bool = False
    record: Record | None = None

    def load(self):
        return self.record.load() if self.record is not None else load_image(self.path)


def collect_items(specs: Sequence[str]) -> list[Item]:
    """Manifests (.csv or a folder with manifest.csv) and parquet shards through `open_source`;
    everything else (files, folders, globs, videos) through `expand_paths`. Duplicates are dropped
    so every input is labelled once; a spec matching nothing is a LabelError."""
    items: list[Item] = []
    for spec in specs:
        records = _source_records(spec)
        if records is not None:
            items += [Item(r.path, record=r) for r in records]
            continue
        found, problems = expand_paths([spec])
        if problems:  # nothing there, or a folder without images or videos
            raise LabelError(f"{spec}: {problems[0].why}")
        items += [Item(str(p.absolute()), video=p.suffix.lower() in VIDEO_SUFFIXES) for p in found]
    seen: set[tuple[str, bool]] = set()
    unique = []
    for it in items:
        if (it.path, it.video) not in seen:
            seen.add((it.path, it.video))
            unique.append(it)
    return unique


def _source_records(spec: str) -> list[Record] | None:
    """Records when `spec` is a manifest or parquet source, else None (label-folder and video
    sources need labels or segments that labelling does not; their files are listed instead)."""
    p = Path(spec)
    if not p.exists() or (p.is_file() and p.suffix.lower() not in (".csv", ".parquet")):
        return None
    try:
        src = open_source(p)
    except DataError:
        if p.is_file():
            raise
        return None
    if not isinstance(src, (ManifestSource, ParquetSource)):
        return None
    records = src.records()
    for path, reason in src.errors:  # unreadable parquet shards: no rows to label, say so
        log.warning("%s: %s", path, reason)
    return records


def make_shards(items: Sequence[Item], shard_size: int) -> list[list[Item]]:
    if shard_size < 1:
        raise LabelError(f"shard size must be at least 1, got {shard_size}")
    return [list(items[i:i + shard_size]) for i in range(0, len(items), shard_size)]


# ---- one shard ----------------------------------------------------------------------------------
def label_items(engine: "Predictor", items: Sequence[Item], fps: float = 2.0, batch_size: int = 32) -> list[dict]:
    """Rows for `items` in input order (video frames in time order). Unreadable inputs give a row
    with `error` set; a video that breaks mid-stream keeps its decoded frames plus an error row."""
    rows = []
    for row, r in stream(engine, _row_images(items, fps), batch_size):
        if r is not None:
            row.update(prob=float(r.prob), label=int(r.label), tier=r.tier)
        rows.append(row)
    return rows


def _row_images(items: Sequence[Item], fps: float) -> Iterator[tuple[dict, Any]]:
    """(row, image) per image and video frame; (error row, None) for what could not be read."""
    for item in items:
        if item.video:
            try:
                for t, frame in iter_video_frames(item.path, fps):
                    yield _row(item.path, float(t)), frame
            except ImageError as e:
                yield _row(item.path, None, e.reason), None
            except ImportError as e:  # PyAV is optional on image-only machines
                yield _row(item.path, None, f"video input needs PyAV (pip install av): {e}"), None
            continue
        try:
            image = item.load()
        except (ImageError, OSError) as e:
            yield _row(item.path, None, getattr(e, "reason", None) or f"{type(e).__name__}: {e}"), None
            continue
        yield _row(item.path, None), image


def _row(path: str, t: float | None, error: str | None = None) -> dict:
    return {"path": path, "time_s": t, "prob": None, "label": None, "tier": None, "error": error}


class LabelWorker:
    """Holds one Engine built from `cfg` (a Config dump); a Ray actor in cluster mode, a plain
    object with --local. `threads` caps torch's intra-op threads to the CPUs the actor was given."""

    def __init__(self, cfg: dict, threads: int | None = None):
        if threads:
            import torch

            torch.set_num_threads(threads)
        from roadwork.engine import Engine

        self.engine = Engine.from_config(Config.model_validate(cfg))

    def label(self, shard: int, items: list[Item], fps: float, batch_size: int) -> tuple[int, list[dict]]:
        return shard, label_items(self.engine, items, fps, batch_size)


# ---- output -------------------------------------------------------------------------------------
def _schema():
    import pyarrow as pa

    return pa.schema([("path", pa.string()), ("time_s", pa.float64()), ("prob", pa.float64()),
                      ("label", pa.int8()), ("tier", pa.string()), ("error", pa.string())])


def part_path(out: Path, shard: int) -> Path:
    return out / "labels" / f"part-{shard:05d}.parquet"


def write_part(out: Path, shard: int, rows: list[dict]) -> Path:
    """Atomically: a reader (or --resume) sees the whole part file or none."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    final = part_path(out, shard)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    table = pa.Table.from_pylist(rows, schema=_schema())
    pq.write_table(table, tmp)
    os.replace(tmp, final)
    return final


def read_labels(out: str | Path):
    """All part files of OUT as one pyarrow Table (rows in shard order)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = sorted((Path(out) / "labels").glob("part-*.parquet"))
    return pa.concat_tables([pq.read_table(p) for p in parts]) if parts else _schema().empty_table()


def _fingerprint(items: Sequence[Item], shard_size: int, fps: float, cfg: Config) -> str:
    h = hashlib.sha256()
    # the engine's settings, not how the job runs (workers, batch size): those may change on a resume
    engine = cfg.model_dump(mode="json", exclude={"label"})
    h.update(json.dumps([shard_size, fps, engine], sort_keys=True).encode())
    for it in items:
        h.update(f"{int(it.video)}{it.path}\n".encode())
    return h.hexdigest()


def _prepare_out(out: Path, plan: dict, resume: bool) -> None:
    labels = out / "labels"
    labels.mkdir(parents=True, exist_ok=True)
    for stale in labels.glob(".part-*.tmp-*"):  # a run killed mid-write
        stale.unlink()
    plan_file = out / "plan.json"
    parts = list(labels.glob("part-*.parquet"))
    if resume and parts:
        old = json.loads(plan_file.read_text()) if plan_file.is_file() else {}
        if old.get("fingerprint") != plan["fingerprint"]:
            raise LabelError(f"{out}: holds labels of different inputs, model, fps or shard size; "
                             f"use --no-resume to start over or another --out")
    if not resume:
        for p in parts:
            p.unlink()
    plan_file.write_text(json.dumps(plan, indent=1))


# ---- the job ------------------------------------------------------------------------------------
def run_label(specs: Sequence[str], out: str | Path, cfg: Config | None = None, *,
              console: Console | None = None, **settings: Any) -> dict:
    """Label every input of `specs` into OUT; returns the summary (also OUT/summary.json). The job's
    settings are `cfg.label` (LabelConfig: fps, batch_size, shard_size, num_workers, address,
    gpus_per_worker, resume, local, gpx, gps_offset, tiles), with `settings` replacing any of them.

    Ray: connects to `address`, else uses an already initialized Ray, else starts a local cluster
    (shut down afterwards). Raises LabelError for a job that cannot start."""
    console = console or Console(stderr=True)
    cfg = cfg or Config()
    try:
        job = LabelConfig.model_validate({**cfg.label.model_dump(), **settings})
    except ValidationError as e:
        raise LabelError(explain_error(e, "label", settings, root=LabelConfig)) from None
    fps, batch_size, shard_size, resume, local = job.fps, job.batch_size, job.shard_size, job.resume, job.local
    out = Path(out)
    t0 = time.perf_counter()
    try:
        items = collect_items(specs)
    except DataError as e:
        raise LabelError(str(e)) from None
    shards = make_shards(items, shard_size)
    plan = {"items": len(items), "shards": len(shards), "shard_size": shard_size, "fps": fps,
            "specs": list(map(str, specs)), "fingerprint": _fingerprint(items, shard_size, fps, cfg)}
    geo = _geo(job)  # a bad track fails here, before any labelling
    _prepare_out(out, plan, resume)
    pending = [s for s in range(len(shards)) if not part_path(out, s).exists()]
    failed: dict[int, str] = {}
    stats = {"mode": "local" if local else "ray", "workers": 0, "labelled_now": 0, "shards_now": 0,
             "t_work": time.perf_counter()}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("items"),
               TimeElapsedColumn(), TimeRemainingColumn())
    # transient: the summary line replaces the bar, and an error before the first shard prints alone
    with Progress(*columns, console=console, disable=not pending, transient=True) as bar:
        task = bar.add_task("labelling", total=len(items),
                            completed=len(items) - sum(len(shards[s]) for s in pending))

        def done(shard: int, rows: list[dict]) -> None:
            write_part(out, shard, rows)
            stats["shards_now"] += 1
            stats["labelled_now"] += sum(r["error"] is None for r in rows)
            bar.advance(task, len(shards[shard]))
            rate = stats["labelled_now"] / max(time.perf_counter() - stats["t_work"], 1e-9)
            bar.update(task, description=f"labelling ({rate:.1f} img/s)")

        if pending and local:
            stats["workers"] = 1
            _run_local(cfg, shards, pending, fps, batch_size, done, failed)
        elif pending:
            stats["workers"] = _run_ray(cfg, shards, pending, fps, batch_size, job.num_workers, job.address,
                                        job.gpus_per_worker, done, failed, stats)
    work_s = time.perf_counter() - stats["t_work"]
    summary = _summarize(out, plan, stats, failed, work_s, time.perf_counter() - t0, len(pending))
    zones = _write_zones(geo, out, cfg, fps, job.gpx)
    if zones is not None:
        summary["zones"] = zones
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _run_local(cfg: Config, shards, pending, fps, batch_size, done, failed) -> None:
    try:
        worker = LabelWorker(cfg.model_dump(mode="json"))
    except Exception as e:  # noqa: BLE001 -- model folder missing, bad tier config, ...
        raise LabelError(f"cannot build the engine: {type(e).__name__}: {e}") from e
    for s in pending:
        try:
            done(*worker.label(s, shards[s], fps, batch_size))
        except Exception as e:  # noqa: BLE001 -- the engine failed on this shard: report it, go on
            log.exception("shard %d failed", s)
            failed[s] = f"{type(e).__name__}: {e}"


def _import_ray():
    try:
        import ray
    except ImportError:
        raise LabelError("ray is not installed: pip install 'roadwork[scale]' (or ray), or run with --local") \
            from None
    return ray


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _run_ray(cfg: Config, shards, pending, fps, batch_size, num_workers, address, gpus_per_worker, done,
             failed, stats) -> int:
    """Actors pull shards from a driver-side queue (one in flight per actor); returns the actor count.
    Labelling time (stats["t_work"]) starts once the cluster is up, so it includes model loading."""
    ray = _import_ray()
    from ray.exceptions import RayActorError

    started = False
    if not ray.is_initialized():
        quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
        if address:
            try:
                ray.init(address=address, **quiet)
            except ConnectionError as e:  # ray's own "Could not find any running Ray instance" etc.
                reason = str(e).split(". ")[0]
                raise LabelError(f"--address {address}: no Ray cluster to join ({reason}); start one "
                                 "(`ray start --head`), or leave out --address for a local one") from None
        else:
            ray.init(num_cpus=max(_cpu_count(), num_workers or 1), include_dashboard=False, **quiet)
        started = True
    stats["t_work"] = time.perf_counter()
    actors: list = []
    try:
        res = ray.cluster_resources()
        cpus, gpus = int(res.get("CPU", 1)), float(res.get("GPU", 0))
        if gpus_per_worker > 0 and gpus < gpus_per_worker:
            raise LabelError(f"--gpus-per-worker {gpus_per_worker:g}: the Ray cluster has {gpus:g} GPU(s)")
        fit = min(cpus, int(gpus // gpus_per_worker)) if gpus_per_worker > 0 else cpus
        if num_workers is not None and num_workers > fit:
            # an actor that cannot be placed would hold its shard forever: run only those that fit
            log.warning("%d workers asked, the cluster fits %d; using %d", num_workers, fit, fit)
        n = max(1, min(num_workers or fit, fit, len(pending)))
        # one node: share its CPUs among the actors (torch threads); several nodes: one CPU each, so
        # an actor never asks for more CPUs than a single node has
        per = max(1, cpus // n) if len(ray.nodes()) == 1 else 1
        remote = ray.remote(LabelWorker).options(num_cpus=per, num_gpus=gpus_per_worker or 0)
        cfg_dump = cfg.model_dump(mode="json")
        actors = [remote.remote(cfg_dump, per) for _ in range(n)]
        queue, idle, running = deque(pending), list(actors), {}
        while queue or running:
            while idle and queue:
                actor, s = idle.pop(), queue.popleft()
                running[actor.label.remote(s, shards[s], fps, batch_size)] = (s, actor)
            if not running:  # every actor died: the rest cannot run
                for s in queue:
                    failed[s] = "no live workers left"
                break
            ready, _ = ray.wait(list(running), num_returns=1)
            s, actor = running.pop(ready[0])
            try:
                done(*ray.get(ready[0]))
            except RayActorError as e:  # the actor is gone (engine failed to build, OOM): don't reuse
                failed[s] = _reason(e)
                log.error("worker died on shard %d: %s", s, failed[s])
                continue
            except Exception as e:  # noqa: BLE001 -- the engine raised on this shard; the actor lives
                failed[s] = _reason(e)
                log.error("shard %d failed: %s", s, failed[s])
            idle.append(actor)
        return n
    finally:
        for a in actors:
            ray.kill(a)
        if started:
            ray.shutdown()


def _geo(job: LabelConfig):
    """The map's positions: EXIF GPS of photos, and for videos the --gpx track (else VIDEO.gpx beside
    each video), as `predict --out` places them."""
    from roadwork.geo import GeoCollector, GeoError

    try:
        return GeoCollector(job.gpx, job.gps_offset, job.tiles)
    except GeoError as e:
        raise LabelError(str(e)) from None


def _write_zones(geo, out: Path, cfg: Config, fps: float, gpx: Path | None) -> int | None:
    """Photos with EXIF GPS -> Points (a zone when labelled roadwork); each video's labelled frames
    -> work zones (the `sequence:` hysteresis, as `predict` does) placed on its track. Writes
    OUT/zones.geojson + OUT/map.html when any input had a position; returns the number of zones, or
    None when nothing was placed. A --gpx that places no video frame is a LabelError."""
    import pyarrow.parquet as pq

    from roadwork.geo import GeoError
    from roadwork.sequence import Hysteresis

    hyst = Hysteresis.from_config(cfg.sequence)
    frames: dict[str, list[tuple[float, float]]] = {}
    # part by part, the columns needed: a large job's rows are never all in memory at once
    for part in sorted((out / "labels").glob("part-*.parquet")):
        for r in pq.read_table(part, columns=["path", "time_s", "prob", "label", "error"]).to_pylist():
            if r["error"] is not None:
                continue
            if r["time_s"] is None:  # a still image: placed by its own EXIF GPS, if it has any
                geo.add_image(r["path"], r["prob"], r["label"])
            else:
                frames.setdefault(r["path"], []).append((r["time_s"], r["prob"]))
    photos = len(geo.features)
    for path, tp in frames.items():
        tp.sort()
        times, probs = [t for t, _ in tp], [p for _, p in tp]
        try:
            geo.add_video(path, times, probs, hyst.intervals(times, probs, end_time=times[-1] + 1.0 / fps))
        except GeoError as e:  # an unreadable VIDEO.gpx beside the video
            raise LabelError(str(e)) from None
    if gpx is not None and len(geo.features) == photos:
        raise LabelError(f"{gpx}: no labelled video frame falls inside the track's time span "
                         "(wrong track, or set --gps-offset); no zones.geojson written")
    if geo.write(out) is None:
        return None
    return sum(f["properties"]["kind"] == "zone" for f in geo.features)


def _reason(e: BaseException) -> str:
    cause = getattr(e, "cause", None) or e  # RayTaskError carries the worker's exception
    text = f"{type(cause).__name__}: {cause}".strip()
    return text if len(text) <= 2000 else text[:2000] + " ..."


def _summarize(out: Path, plan: dict, stats: dict, failed: dict[int, str], work_s: float, total_s: float,
               pending: int) -> dict:
    import pyarrow.compute as pc

    table = read_labels(out)
    ok = pc.is_null(table["error"])
    frames = pc.and_(ok, pc.is_valid(table["time_s"]))
    n_ok = int(pc.sum(ok).as_py() or 0)
    done = len(list((out / "labels").glob("part-*.parquet")))
    return {
        "items": plan["items"], "rows": table.num_rows, "labelled": n_ok,
        "positives": int(pc.sum(pc.equal(table["label"], 1)).as_py() or 0),
        "errors": table.num_rows - n_ok, "video_frames": int(pc.sum(frames).as_py() or 0),
        "shards": plan["shards"], "shards_done": done, "shards_skipped": plan["shards"] - pending,
        "shards_failed": [{"shard": s, "error": e} for s, e in sorted(failed.items())],
        "complete": done == plan["shards"] and not failed,
        "mode": stats["mode"], "workers": stats["workers"], "labelled_this_run": stats["labelled_now"],
        "seconds": round(total_s, 3), "labelling_seconds": round(work_s, 3),
        "images_per_s": round(stats["labelled_now"] / work_s, 3) if stats["labelled_now"] and work_s > 0 else 0.0,
    }


def label_main(specs: Sequence[str], out: Path, model: str | None, config: Path | None,
               console: Console | None = None, **settings: Any) -> int:
    """The CLI's body: `settings` (LabelConfig fields; None = the config's) override the config's
    `label:` section. Exit 0 when every shard is written (error rows included), 1 when shards failed
    (rerun with --resume), 2 when the job cannot start."""
    from roadwork.config import ConfigError, shell_config

    console = console or Console(stderr=True)
    try:
        cfg = shell_config(config, model, {"label": {k: v for k, v in settings.items() if v is not None}})
        s = run_label(specs, out, cfg, console=console)
    except (ConfigError, LabelError) as e:
        console.print(f"[red]{e}[/red]", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:  # finished shards are on disk: say how to pick up from there
        console.print(f"interrupted; the finished shards are in {out}/labels: rerun the same command to resume "
                      "(resume is on by default)", highlight=False, soft_wrap=True)
        return 130
    now = (f"{s['labelled_this_run']} this run at {s['images_per_s']:.1f} images/s" if s["labelled_this_run"]
           else "nothing new to label")
    console.print(f"{s['labelled']} labelled ({s['positives']} roadwork), {s['errors']} unreadable, "
                  f"{s['shards_done']}/{s['shards']} shards ({s['shards_skipped']} already done) -> "
                  f"{out}/labels; {now}")
    if "zones" in s:
        console.print(f"{s['zones']} work zone(s) -> {out}/zones.geojson, {out}/map.html")
    for f in s["shards_failed"]:
        console.print(f"[red]shard {f['shard']} failed[/red]: {f['error']}")
    if s["shards_failed"]:
        console.print("rerun the same command (resume is on by default) to redo the failed shards")
    return 0 if s["complete"] else 1
