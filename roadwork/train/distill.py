"""`roadwork distill`: the cascade's answers, cached once, taught to a fast student.

    teacher (any cascade config through the Engine, or model folders averaged)
      -> every training image (labelled, and an unlabelled pool) x N augmentation views, the very
         views `roadwork train` makes (camera jitter, the challenge simulator of --protocol, crops)
      -> teacher cache: parquet parts keyed by (blake2b of the decoded pixels, view seed), resumable
      -> roadwork train's loop with a `Targets` hook: BCE on temperature-softened logits against the
         teacher, plus cross-entropy on the true label where one is known
      -> the same pipeline-loadable folder (calibrated on labelled validation groups, folded in)

Epoch e shows image i its view (e + i) mod N, so the student always sees exactly the image the
teacher scored ("consistent teaching", Beyer et al. 2022). The cache lives in
CACHE/<fingerprint of teacher and view settings>/, so every run with the same teacher and views
(every fold of a leave-one-source-out table) reuses it, and a killed pass resumes where it stopped.
Pool images of held-out sources, or of a validation / cross-source group (matched by the group's
name after its last ':', so the clip `boston` matches `roadwork:boston`), are left out.

Runs like `train`: one CPU, one GPU, or `torchrun` (each rank scores its share of the images).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import shlex
import sys
import time
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from roadwork.data.records import DataError, Record
from roadwork.train.config import TrainConfig
from roadwork.train.progress import Reporter

log = logging.getLogger("roadwork.train")

UNKNOWN = -1  # the label of a pool image: only the teacher speaks for it
EPS = 1e-6  # teacher probabilities are clipped to [EPS, 1 - EPS] before taking their logit
FLUSH_EVERY = 512  # cache rows per parquet part: what a kill can lose


class DistillError(ValueError):
    """A distillation that cannot start (no teacher, a bad pool spec); the message says what to do."""


def _opt(default: Any, help: str) -> Any:
    if isinstance(default, list):
        return field(default_factory=list, metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class DistillOptions:
    """What distillation adds to a `TrainConfig` (the student's run)."""

    teacher: list[str] = _opt([], "Teacher model folder or hub id; repeat to average an ensemble.")
    teacher_config: str | None = _opt(None, "Teacher cascade: an engine config YAML (configs/).")
    unlabelled: list[str] = _opt([], "Unlabelled images for the teacher (folder, glob, video, manifest, "
                                     "parquet); repeatable.")
    unlabelled_fps: float = _opt(2.0, "Frames per second sampled from unlabelled videos.")
    views: int = _opt(4, "Augmented views of each image the teacher scores (epoch e shows view e+i mod N).")
    temperature: float = _opt(2.0, "Softening temperature of the teacher and student logits.")
    alpha: float = _opt(0.5, "Weight of the teacher term; 1 - alpha goes to the true labels where known.")
    cache: str = _opt("runs/teacher_cache", "Teacher cache root (one sub-folder per teacher and view settings).")
    teacher_batch_size: int = _opt(32, "Images per teacher call.")
    fresh: bool = _opt(False, "Discard this teacher's cache and score everything again.")

    def check(self) -> None:
        if not self.teacher and not self.teacher_config:
            raise DistillError("give a teacher: --teacher MODEL (repeat to average) or --teacher-config YAML")
        if self.teacher and self.teacher_config:
            raise DistillError("--teacher and --teacher-config are alternatives; give one")
        if self.views < 1 or self.teacher_batch_size < 1:
            raise DistillError(f"--views and --teacher-batch-size must be >= 1, got {self.views}, "
                               f"{self.teacher_batch_size}")
        if self.temperature <= 0 or not 0 <= self.alpha <= 1 or self.unlabelled_fps <= 0:
            raise DistillError(f"need --temperature > 0, 0 <= --alpha <= 1, --unlabelled-fps > 0; got "
                               f"{self.temperature}, {self.alpha}, {self.unlabelled_fps}")


# ---- the teacher ---------------------------------------------------------------------------------
class Teacher(Protocol):
    fingerprint: dict[str, Any]  # what makes its answers what they are (config, weights' stat)

    def predict(self, images: Sequence[Image.Image]) -> np.ndarray: ...


class EngineTeacher:
    """One Engine (a cascade), or several averaged (an ensemble of model folders). An engine with
    `location_map(image)` also gives maps, cached beside the probabilities."""

    def __init__(self, engines: Sequence[Any], fingerprint: dict[str, Any]):
        self.engines = list(engines)
        self.fingerprint = fingerprint
        locate = [getattr(e, "location_map", None) for e in self.engines]
        self.location_map = self._mean_map if all(callable(f) for f in locate) else None

    def predict(self, images: Sequence[Image.Image]) -> np.ndarray:
        return np.mean([[r.prob for r in e.predict(list(images))] for e in self.engines], axis=0)

    def _mean_map(self, image: Image.Image) -> np.ndarray | None:
        maps = [e.location_map(image) for e in self.engines]
        if any(m is None for m in maps) or len({np.shape(m) for m in maps}) != 1:
            return None
        return np.mean([np.asarray(m, dtype=np.float32) for m in maps], axis=0)


def build_teacher(opts: DistillOptions) -> EngineTeacher:
    from roadwork.config import ConfigError, load_config, shell_config
    from roadwork.engine import Engine
    from roadwork.model_ref import ModelError

    try:
        cfgs = [load_config(opts.teacher_config)] if opts.teacher_config else \
            [shell_config(None, m) for m in opts.teacher]
        engines = [Engine.from_config(c) for c in cfgs]
    except (ConfigError, ModelError) as e:
        raise DistillError(f"teacher: {e}") from None
    dumps = [c.model_dump(mode="json") for c in cfgs]
    weights = sorted({str(f): [f.stat().st_size, f.stat().st_mtime_ns] for c in cfgs for t in c.tiers
                      if t.model and Path(str(t.model)).is_dir()
                      for f in Path(str(t.model)).glob("*.safetensors")}.items())
    return EngineTeacher(engines, {"engines": dumps, "weights": weights})


# ---- images -------------------------------------------------------------------------------------
def pixel_key(image: Image.Image) -> str:
    """The cache key of an image: its decoded pixels (so a moved or re-encoded-identical file still hits)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{image.mode}{image.size}".encode())
    h.update(np.asarray(image).tobytes())
    return h.hexdigest()


def view_rng(seed: int, view: int, key: str) -> np.random.Generator:
    """The generator of view `view` of the image `key`: the teacher's and the student's are one."""
    return np.random.default_rng([seed, view, int(key[:12], 16)])


def pool_records(specs: Sequence[str], fps: float) -> list[Record]:
    """Unlabelled records from folders, globs, image files and videos (frames at `fps`), or from
    manifests and parquet shards (their labels are set aside: the pool is the teacher's)."""
    from roadwork.data import expand_paths, open_source
    from roadwork.data.video import EPS as T_EPS, VideoFrameRecord, fmt_time, video_duration
    from roadwork.decode import VIDEO_SUFFIXES, ImageError

    out: list[Record] = []
    for spec in specs:
        p = Path(spec)
        table = p.suffix.lower() in (".csv", ".parquet") or (p.is_dir() and (
            (p / "manifest.csv").is_file() or next(p.rglob("*.parquet"), None) is not None))
        if table:
            out += [replace(r, label=UNKNOWN) for r in open_source(p).records()]
            continue
        files, misses = expand_paths([spec])
        if misses:
            raise DataError(f"--unlabelled {spec}: {misses[0].why}")
        for f in files:
            f = f.absolute()
            if f.suffix.lower() not in VIDEO_SUFFIXES:
                out.append(Record(str(f), UNKNOWN, f.parent.name, f.parent.name))
                continue
            try:
                duration = video_duration(f)
            except ImageError as e:
                log.warning("skipping %s: %s", f, e.reason)
                continue
            source = f.parent.name
            out += [VideoFrameRecord(f"{f}#t={fmt_time(k / fps)}s", UNKNOWN, f.stem, source, video=str(f), t=k / fps)
                    for k in range(int(math.ceil(duration * fps))) if k / fps < duration - T_EPS]
    return out


def _short(group: str) -> str:
    return group.rsplit(":", 1)[-1]


def drop_held_out(pool: Sequence[Record], held_sources: set[str], held_groups: set[str]) -> list[Record]:
    """Pool records of neither a held-out source nor a held-out group (compared by the short name)."""
    short = {_short(g) for g in held_groups}
    return [r for r in pool if r.source not in held_sources and _short(r.group) not in short]


# ---- the teacher cache --------------------------------------------------------------------------
def _digest(doc: Any) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


class TeacherCache:
    """(pixel key, view) -> teacher probability (and location map), in CACHE/<fingerprint>/part-*.parquet.

    Parts are written whole (temp name, then rename) every FLUSH_EVERY rows, so a killed pass keeps
    all but its last rows; `fresh=True` starts the folder over."""

    def __init__(self, root: str | Path, fingerprint: dict[str, Any], fresh: bool = False, rank: int = 0):
        self.dir = Path(root) / _digest(fingerprint)
        self.rank = rank
        self.dir.mkdir(parents=True, exist_ok=True)
        if fresh and rank == 0:
            for p in self.dir.glob("part-*.parquet"):
                p.unlink()
        meta = self.dir / "teacher.json"
        if rank == 0 and not meta.is_file():
            tmp = meta.with_name(f".teacher.json.{os.getpid()}")
            tmp.write_text(json.dumps(fingerprint, indent=1, default=str))
            tmp.replace(meta)
        self.rows: dict[tuple[str, int], float] = {}
        self.maps: dict[tuple[str, int], np.ndarray] = {}
        self._new: list[dict[str, Any]] = []

    def reload(self) -> "TeacherCache":
        """Read every part on disk (under DDP: after the barrier that follows rank 0's `fresh` clean-up)."""
        import pyarrow.parquet as pq

        for part in sorted(self.dir.glob("part-*.parquet")):
            t = pq.read_table(part).to_pydict()
            for i, (k, a, p) in enumerate(zip(t["key"], t["view"], t["prob"])):
                self.rows[(k, int(a))] = float(p)
                if t["map"][i] is not None:
                    self.maps[(k, int(a))] = np.asarray(t["map"][i], np.float32).reshape(t["map_h"][i], t["map_w"][i])
        return self

    def __contains__(self, item: tuple[str, int]) -> bool:
        return item in self.rows

    def add(self, key: str, view: int, prob: float, path: str, heat: np.ndarray | None = None) -> None:
        self.rows[(key, view)] = float(prob)
        row = {"key": key, "view": view, "prob": float(prob), "path": path, "map": None, "map_h": None, "map_w": None}
        if heat is not None:
            heat = np.asarray(heat, np.float32)
            self.maps[(key, view)] = heat
            row.update(map=heat.ravel().tolist(), map_h=heat.shape[0], map_w=heat.shape[1])
        self._new.append(row)
        if len(self._new) >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._new:
            return
        schema = pa.schema([("key", pa.string()), ("view", pa.int16()), ("prob", pa.float64()), ("path", pa.string()),
                            ("map", pa.list_(pa.float32())), ("map_h", pa.int32()), ("map_w", pa.int32())])
        final = self.dir / f"part-{time.time_ns()}-r{self.rank}.parquet"
        tmp = final.with_name("." + final.name + ".tmp")
        pq.write_table(pa.Table.from_pylist(self._new, schema=schema), tmp)
        os.replace(tmp, final)
        self._new = []


# ---- the teacher pass ---------------------------------------------------------------------------
class _PassItems(Dataset):
    """Record i -> (i, pixel key, [(view, image) not yet cached], error): decoding and the views run
    in DataLoader workers, the teacher in the main process."""

    def __init__(self, records: Sequence[Record], index: Sequence[int], augment: Callable, seed: int, views: int,
                 done: set[tuple[str, int]]):
        self.records, self.index, self.augment = records, list(index), augment
        self.seed, self.views, self.done = seed, views, done

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, j: int):
        from roadwork.decode import ImageError

        i = self.index[j]
        try:
            img = self.records[i].load().convert("RGB")
        except ImageError as e:
            return i, None, [], str(e)
        key = pixel_key(img)
        todo = [(a, self.augment(img, view_rng(self.seed, a, key))) for a in range(self.views)
                if (key, a) not in self.done]
        return i, key, todo, None


def teacher_pass(records: Sequence[Record], teacher: Teacher, augment: Callable, cache: TeacherCache, seed: int,
                 views: int, batch_size: int = 32, workers: int = 0, rank: int = 0, world: int = 1,
                 rep: Reporter | None = None) -> tuple[dict[int, str], int]:
    """Score this rank's share of `records` (every view not cached yet); returns (record index ->
    pixel key for the readable ones, teacher images scored now)."""
    rep = rep or Reporter(enabled=rank == 0)
    mine = list(range(rank, len(records), world))
    items = _PassItems(records, mine, augment, seed, views, set(cache.rows))
    loader = DataLoader(items, batch_size=8, collate_fn=list, num_workers=workers)
    keys: dict[int, str] = {}
    queue: list[tuple[str, int, str, Image.Image]] = []
    queued: set[tuple[str, int]] = set()
    scored = 0
    locate = getattr(teacher, "location_map", None)

    def run() -> None:
        nonlocal scored
        probs = teacher.predict([im for *_, im in queue])
        for (key, a, path, im), p in zip(queue, np.asarray(probs, dtype=np.float64)):
            cache.add(key, a, float(p), path, locate(im) if callable(locate) else None)
        scored += len(queue)
        queue.clear()

    with rep.bar("teacher", len(loader)) as advance:
        for batch in loader:
            for i, key, todo, error in batch:
                if error is not None:
                    log.warning("skipping %s", error)
                    continue
                keys[i] = key
                for a, im in todo:
                    if (key, a) not in cache and (key, a) not in queued:  # the same pixels twice: score once
                        queued.add((key, a))
                        queue.append((key, a, records[i].path, im))
                        if len(queue) >= batch_size:
                            run()
            advance(float(scored))
    if queue:
        run()
    cache.flush()
    return keys, scored


# ---- the student's targets ----------------------------------------------------------------------
class TeacherViews(Dataset):
    """(index, epoch) -> (uint8 CHW view, label or UNKNOWN, teacher probability of that very view)."""

    def __init__(self, records: Sequence[Record], augment: Callable, seed: int, keys: Sequence[str], soft: np.ndarray):
        self.records, self.augment, self.seed = list(records), augment, seed
        self.keys, self.soft = list(keys), soft

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int, float]:
        i, epoch = key if isinstance(key, tuple) else (key, 0)
        a = (max(epoch, 0) + i) % self.soft.shape[1]
        img = self.records[i].load().convert("RGB")
        arr = np.asarray(self.augment(img, view_rng(self.seed, a, self.keys[i])), dtype=np.uint8)
        return torch.from_numpy(arr.copy()).permute(2, 0, 1), int(self.records[i].label), float(self.soft[i, a])


def distill_loss(logits: torch.Tensor, y: torch.Tensor, soft: torch.Tensor, temperature: float, alpha: float,
                 label_smoothing: float = 0.0) -> torch.Tensor:
    """alpha * T^2 * BCE(sigmoid(margin / T), sigmoid(teacher logit / T)) + (1 - alpha) * CE on known labels.

    The margin z_roadwork - z_none is the student's logit of P(roadwork) (the pipeline's softmax);
    T^2 keeps the teacher term's gradients the size of the label term's (Hinton et al. 2015). The
    label term counts per labelled image of the batch, so a batch of pool images is taught by the
    teacher alone."""
    margin = logits[:, 1] - logits[:, 0]
    t = torch.logit(soft.float().clamp(EPS, 1 - EPS))
    kd = F.binary_cross_entropy_with_logits(margin / temperature, torch.sigmoid(t / temperature)) * temperature ** 2
    known = y >= 0
    if alpha >= 1 or not bool(known.any()):
        return alpha * kd
    ce = F.cross_entropy(logits[known], y[known], label_smoothing=label_smoothing, reduction="sum") / len(y)
    return alpha * kd + (1 - alpha) * ce


class Targets:
    """The hook `roadwork.train.finetune.train(..., targets=)` calls: the teacher-scored training set
    (built on the run's own split and augmentation), and the distillation loss."""

    def __init__(self, teacher: Teacher, opts: DistillOptions, pool: Sequence[Record] = ()):
        self.teacher, self.opts, self.pool = teacher, opts, list(pool)
        self.label_smoothing = 0.0
        self.info: dict[str, Any] = {}

    def train_set(self, split: Any, cfg: TrainConfig, augment: Callable, rank: int = 0, world: int = 1
                  ) -> tuple[Dataset, list[int]]:
        rep = Reporter(enabled=rank == 0)
        held = {r.group for r in split.val + split.cross}
        pool = drop_held_out(self.pool, set(cfg.holdout_source), held)
        if cfg.limit and len(pool) > cfg.limit:
            pool = pool[:: -(-len(pool) // cfg.limit)]
        records = list(split.train) + pool
        fingerprint = {"teacher": self.teacher.fingerprint, "views": self.opts.views, "seed": cfg.seed,
                       "augment": {k: getattr(cfg, k) for k in ("image_size", "camera_jitter", "camera_p", "challenge",
                                                                "challenge_p", "protocol")}}
        cache = TeacherCache(self.opts.cache, fingerprint, self.opts.fresh, rank)
        if world > 1:
            torch.distributed.barrier()
        cache.reload()
        rep.info(f"teacher: {len(split.train)} labelled + {len(pool)} unlabelled images "
                 f"({len(self.pool) - len(pool)} of the pool held out) x {self.opts.views} views; cache {cache.dir} "
                 f"holds {len(cache.rows)} views")
        keys, scored = teacher_pass(records, self.teacher, augment, cache, cfg.seed, self.opts.views,
                                    self.opts.teacher_batch_size, cfg.workers, rank, world, rep)
        if world > 1:  # every rank needs every key; the parts of the other ranks are on disk now
            gathered: list[Any] = [None] * world
            torch.distributed.all_gather_object(gathered, keys)
            keys = {i: k for part in gathered for i, k in part.items()}
            scored_all = [None] * world
            torch.distributed.all_gather_object(scored_all, scored)
            scored = sum(scored_all)
            cache.reload()
        kept = sorted(keys)
        soft = np.array([[cache.rows[(keys[i], a)] for a in range(self.opts.views)] for i in kept], dtype=np.float64)
        recs = [records[i] for i in kept]
        agree = [int(s.mean() > 0.5) == r.label for s, r in zip(soft, recs) if r.label != UNKNOWN]
        rep.info(f"teacher: scored {scored} views now, {len(recs) * self.opts.views - scored} from the cache"
                 + (f"; agrees with {np.mean(agree):.1%} of the known training labels" if agree else ""))
        self.label_smoothing = cfg.label_smoothing
        self.info = {"teacher": self.opts.teacher_config or self.opts.teacher, "views": self.opts.views,
                     "temperature": self.opts.temperature, "alpha": self.opts.alpha, "cache": str(cache.dir),
                     "n_labelled": sum(r.label != UNKNOWN for r in recs), "n_unlabelled": sum(r.label == UNKNOWN for r in recs),
                     "unlabelled": list(self.opts.unlabelled), "teacher_views_scored": scored,
                     "teacher_train_agreement": float(np.mean(agree)) if agree else None}
        # the balanced sampler draws by the known label, else by the teacher's decision
        sampler_labels = [r.label if r.label != UNKNOWN else int(s.mean() > 0.5) for s, r in zip(soft, recs)]
        return TeacherViews(recs, augment, cfg.seed, [keys[i] for i in kept], soft), sampler_labels

    def loss(self, logits: torch.Tensor, y: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
        return distill_loss(logits, y, soft, self.opts.temperature, self.opts.alpha, self.label_smoothing)


# ---- the run ------------------------------------------------------------------------------------
def command(cfg: TrainConfig, opts: DistillOptions) -> str:
    """The `roadwork distill` line that reproduces the run (non-default settings only)."""
    parts = ["roadwork", "distill"]
    for f in fields(DistillOptions):
        value, default = getattr(opts, f.name), (f.default_factory() if f.default_factory is not MISSING else f.default)
        if value == default or f.name == "fresh":
            continue
        flag = "--" + f.name.replace("_", "-")
        parts += [p for v in (value if isinstance(value, list) else [value]) for p in (flag, str(v))]
    return shlex.join(parts + shlex.split(cfg.command())[2:])


def distill(cfg: TrainConfig, opts: DistillOptions, teacher: Teacher | None = None) -> dict[str, Any]:
    """Distil `teacher` (built from `opts` if None) into the student `cfg` describes; returns what
    roadwork.json holds (on rank 0; {} on the others)."""
    from roadwork.train.finetune import train

    opts.check()
    try:
        pool = pool_records(opts.unlabelled, opts.unlabelled_fps)
    except DataError as e:
        raise DistillError(str(e)) from None
    targets = Targets(teacher or build_teacher(opts), opts, pool)
    summary = train(cfg, targets=targets)
    if summary:
        _stamp(Path(cfg.out), cfg, opts, targets.info, summary)
    return summary


def _stamp(out: Path, cfg: TrainConfig, opts: DistillOptions, info: dict[str, Any], summary: dict[str, Any]) -> None:
    """roadwork.json, train_config.yaml and the cards say it was distilled, from what, by which command."""
    import yaml

    from roadwork import publish
    from roadwork.jsonio import json_safe

    summary.update(command=command(cfg, opts), distill=info)
    (out / "roadwork.json").write_text(json.dumps(json_safe(summary), indent=2) + "\n")
    doc = yaml.safe_load((out / "train_config.yaml").read_text())
    doc.update(command=summary["command"], distill=json_safe(asdict(opts)))
    (out / "train_config.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    resolved = cfg.resolved()
    publish.write_cards(out, model_name=resolved.model_name, version=resolved.version)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """argparse flags for every DistillOptions field (the TrainConfig ones come from train.config)."""
    group = parser.add_argument_group("distillation")
    for f in fields(DistillOptions):
        flag = "--" + f.name.replace("_", "-")
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        if isinstance(default, bool):
            group.add_argument(flag, action="store_true", help=f.metadata["help"])
        elif isinstance(default, list):
            group.add_argument(flag, action="append", default=[], metavar=f.name.upper(), help=f.metadata["help"])
        else:
            conv = float if isinstance(default, float) else int if isinstance(default, int) else str
            group.add_argument(flag, type=conv, default=default, help=f.metadata["help"])


def main(argv: Sequence[str] | None = None) -> int:
    """`roadwork distill` / `python -m roadwork.train.distill`: every `roadwork train` flag plus the
    distillation ones; one line and exit 2 for a run that cannot start."""
    from roadwork.train.config import add_arguments as add_train_arguments, from_namespace

    parser = argparse.ArgumentParser(prog="roadwork distill", description=(__doc__ or "").splitlines()[0],
                                     epilog="Student flags are those of `roadwork train` (same defaults, same "
                                            "--protocol and augmentations); runs under torchrun like train.")
    add_arguments(parser)
    add_train_arguments(parser.add_argument_group("student (as roadwork train)"))
    ns = parser.parse_args(argv)
    opts = DistillOptions(**{f.name: getattr(ns, f.name) for f in fields(DistillOptions)})
    try:
        distill(from_namespace(ns), opts)
    except ValueError as e:  # DistillError, DataError and the TrainConfig checks: each names the input
        print(f"roadwork distill: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
