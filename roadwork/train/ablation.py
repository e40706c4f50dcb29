"""Ablation runner: recipes x leave-one-source-out folds x seeds, trained concurrently, one table.

Every run trains on all sources but its fold's held-out ones (and never on the hard-negative probe
frames, `roadwork.train.probe`), stops early and calibrates on whole held-out groups of its training
sources (the within-source number), and is then scored by the classifier tier on the held-out
sources under the 224 challenge of `--protocol` and on native images (`roadwork.train.scoring`),
and on the probe frames (false-positive rate). Each view is drawn once with a fixed seed, so every
run is scored on the same pixels and the spread over seeds is the training's alone.

Recipes are today's recipe plus switches (`roadwork.train.recipes`); one whose feature has not landed
is skipped with the reason. Several runs share the GPU as separate processes (`--jobs`, each with
`--workers` data-loading processes); `--budget-min` spreads the wall-clock time over them.

    python -m roadwork.train.ablation --data devpack/data --synth-set legacy=devpack/synth-legacy \\
        --synth-set new=devpack/synth-new --out runs/abl --seeds 0,1,2 --jobs 6 --workers 2 --budget-min 8
    python -m roadwork.train.ablation --data ../shared/data --out /tmp/abl --smoke --recipes today ...  # CPU check

Writes OUT/ablation.md and OUT/ablation.json (partial results survive a kill), OUT/runs/<run>/ with
each run's roadwork.json, result.json and log.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from roadwork.train import ablation_report as report
from roadwork.train import recipes as rc
from roadwork.train.config import TrainConfig
from roadwork.train.probe import PROBE_GROUPS

log = logging.getLogger("roadwork.train")

# Folds: the roadwork source held out, with negative sources from the same kind of place and camera so
# the cross-source set also asks "is an unseen camera roadwork?" (issue 5, part 3).
FOLDS: dict[str, list[str]] = {
    "idd": ["idd_lite", "india_highway_anmol", "india_nh48_techievish", "india_traffic_devx96"],
    "clips": ["roadwork_clips", "us_dashcam_kartikey", "udemy_test2_montana", "kitti_road"],
}
DEFAULT_PROTOCOL = "2026-04"  # the 224 challenge: the whole frame letterboxed into 224x224 (the last 224 version)
EVAL_SEED = 0  # the one seed every view is drawn with, whatever the run's seed


@dataclass
class Run:
    recipe: rc.Recipe
    fold: str
    seed: int
    cfg: TrainConfig

    @property
    def name(self) -> str:
        return f"{self.recipe.name}__{self.fold}__s{self.seed}".replace("+", "plus-")


def _as_dict(cfg: TrainConfig) -> dict[str, Any]:
    return cfg.model_dump() if hasattr(cfg, "model_dump") else cfg.to_dict()


def fold_sources(fold: str, known: set[str]) -> list[str] | None:
    """The fold's held-out sources present in the data (None: its roadwork source is missing)."""
    if fold not in FOLDS:
        raise ValueError(f"--folds: unknown fold {fold!r}; known: {', '.join(FOLDS)}")
    if FOLDS[fold][0] not in known:
        return None
    return [s for s in FOLDS[fold] if s in known]


def plan(base: TrainConfig, synth_sets: dict[str, str], recipes: dict[str, tuple[str, ...]],
         switches: dict[str, rc.Switch], folds: Sequence[str], seeds: Sequence[int], known_sources: set[str],
         out: str | Path, today: dict[str, Any] | None = None) -> tuple[list[Run], dict[str, str]]:
    """(runs, {skipped recipe or fold: why}). Runs go seed by seed, so a budget that runs out leaves
    every recipe with its first seeds rather than some recipes with none."""
    resolved, skipped = [], {}
    for name, parts in recipes.items():
        recipe, why = rc.resolve(name, parts, switches, today)
        if recipe is not None and recipe.synth_set not in synth_sets:
            why = f"needs --synth-set {recipe.synth_set}=PATH"
            recipe = None
        if recipe is None:
            skipped[name] = str(why)
            log.warning("recipe %s skipped: %s", name, why)
        else:
            if why:  # a partial recipe (best): say what it ran without
                skipped[name] = f"ran {'+'.join(recipe.switches)}, {why}"
                log.warning("recipe %s: %s", name, skipped[name])
            resolved.append(recipe)
    held = {}
    for f in folds:
        hold = fold_sources(f, known_sources)
        if hold is None:
            skipped[f"fold {f}"] = f"source {FOLDS[f][0]} not in the data"
            log.warning("fold %s skipped: source %s not in the data", f, FOLDS[f][0])
        else:
            held[f] = hold
    runs = []
    for seed in seeds:
        for recipe in resolved:
            for f, hold in held.items():
                run = Run(recipe, f, seed, base)
                run.cfg = rc.updated(base, **recipe.overrides, holdout_source=hold, seed=seed,
                                     synth=[synth_sets[recipe.synth_set]], out=str(Path(out) / "runs" / run.name),
                                     model_name=run.name)
                runs.append(run)
    return runs, skipped


def _time_limit(budget_min: float | None, t0: float, pending: int, jobs: int, overhead_min: float) -> float | None:
    """Training minutes for the next run: what is left, shared among the waves still to come."""
    if budget_min is None:
        return None
    left = budget_min - (time.monotonic() - t0) / 60
    waves = max(1, math.ceil(pending / jobs))
    return round(max(0.25, left / waves - overhead_min), 2)


# ---- one run, in its own process -------------------------------------------------------------------
def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    """Train (unless `spec` names a reference model), score on the cached views, return the row."""
    from roadwork.train import scoring

    row: dict[str, Any] = dict(spec["meta"])
    t0 = time.monotonic()
    if spec.get("reference"):
        model_dir, row["reference"] = spec["reference"], True
    else:
        from roadwork.train.finetune import train

        cfg = TrainConfig(**spec["config"])
        summary = train(cfg)
        model_dir = cfg.out
        row.update(within=summary.get("val", {}), train_cross=summary.get("cross", {}),
                   best_epoch=summary.get("best_epoch"), epochs_run=summary.get("epochs_run"),
                   command=summary.get("command"), warning=summary.get("warning"))
    import torch

    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    predict = scoring.model_predictor(model_dir, spec.get("device", "auto"))
    row["scores"] = scoring.score_caches(predict, spec["caches"], EVAL_SEED)
    row["seconds"] = round(time.monotonic() - t0, 1)
    if not spec.get("reference") and not spec.get("keep_model"):
        for f in Path(model_dir).glob("model.safetensors"):
            f.unlink()
    return row


def _child_main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    try:
        row = run_one(spec)
    except Exception as e:  # noqa: BLE001 - the parent reports it in the table and goes on
        import traceback

        traceback.print_exc()
        row = dict(spec["meta"], error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    Path(spec["result"]).write_text(json.dumps(row, indent=1, default=float) + "\n")
    return 0


# ---- the whole ablation -------------------------------------------------------------------------------
def prepare_caches(records: Sequence[Any], probe: Sequence[Any], folds: dict[str, list[str]], protocol: str,
                   workers: int, out: Path) -> dict[str, dict[str, str]]:
    """{fold: {"cross/224": file, "cross/native": ..., "probe/224": ..., "probe/native": ...}}."""
    from roadwork.train import scoring

    out.mkdir(parents=True, exist_ok=True)
    sets = {f"cross-{f}": [r for r in records if r.source in set(hold)] for f, hold in folds.items()}
    sets["probe"] = list(probe)
    files: dict[str, str] = {}
    for name, recs in sets.items():
        for view in scoring.VIEWS:
            path = out / f"{name}-{view}.pkl"
            if not path.is_file():
                proto = scoring.view_protocol(view, protocol)
                log.warning("drawing the %s view of %s (%d images, protocol %s)", view, name, len(recs), proto)
                scoring.save_cache(path, scoring.cache_views(recs, proto, EVAL_SEED, workers))
            files[f"{name}/{view}"] = str(path)
    return {f: {f"cross/{v}": files[f"cross-{f}/{v}"] for v in scoring.VIEWS}
            | {f"probe/{v}": files[f"probe/{v}"] for v in scoring.VIEWS} for f in folds}


def run_ablation(base: TrainConfig, synth_sets: dict[str, str], recipes: dict[str, tuple[str, ...]],
                 folds: Sequence[str], seeds: Sequence[int], out: str | Path, *, switches: dict[str, rc.Switch] | None = None,
                 protocol: str = DEFAULT_PROTOCOL, jobs: int = 1, budget_min: float | None = None,
                 overhead_min: float = 0.5, reference: Sequence[str] = (), keep_models: bool = False,
                 cache_workers: int | None = None, command: str = "",
                 probe_groups: Sequence[str] = PROBE_GROUPS, today: dict[str, Any] | None = None
                 ) -> list[dict[str, Any]]:
    from roadwork.train.prepare import load_records
    from roadwork.train.probe import write_inputs

    t0 = time.monotonic()
    out = Path(out)
    switches = dict(rc.SWITCHES if switches is None else switches)
    records = load_records(base.data)
    data_csv, probe_csv, synth_csvs, counts = write_inputs(records, synth_sets, out / "inputs", probe_groups)
    ship = base  # the data and synthetic sets as given, for the train-on-everything commands
    log.warning("inputs: %s", ", ".join(f"{k} {v}" for k, v in counts.items()))
    base = rc.updated(base, data=[data_csv], protocol=protocol, holdout_source=[], synth=[])
    kept = load_records([data_csv])
    runs, skipped = plan(base, synth_csvs, recipes, switches, folds, seeds, {r.source for r in kept}, out, today)
    held = {f: fold_sources(f, {r.source for r in kept}) for f in dict.fromkeys(r.fold for r in runs)}
    if not runs and not reference:
        raise ValueError("nothing to run: " + ("; ".join(f"{k}: {v}" for k, v in skipped.items()) or "no recipes"))
    caches = prepare_caches(kept, load_records([probe_csv]), {f: h for f, h in held.items() if h},
                            protocol, cache_workers or os.cpu_count() or 1, out / "cache")
    specs = [{"meta": {"recipe": f"default model ({Path(m).name})", "fold": f, "seed": None, "switches": []},
              "reference": str(m), "caches": caches[f]} for m in reference for f in caches]
    specs += [{"meta": {"recipe": r.recipe.name, "switches": list(r.recipe.switches), "fold": r.fold,
                        "seed": r.seed, "holdout": r.cfg.holdout_source}, "config": _as_dict(r.cfg),
               "caches": caches[r.fold], "keep_model": keep_models, "name": r.name} for r in runs]
    train_commands = {name: rc.updated(ship, **rec.overrides, protocol=protocol, synth=[synth_sets[rec.synth_set]],
                                       out=f"runs/{name.replace('+', 'plus-')}", seed=0).command()
                      for name, rec in ((n, rc.resolve(n, p, switches, today)[0]) for n, p in recipes.items())
                      if rec is not None and rec.synth_set in synth_sets}
    commands = ([command] if command else []) + [f"train on all data ({k}): `{v}`" for k, v in train_commands.items()]
    rows = _schedule(specs, out, jobs, budget_min, overhead_min, t0, skipped, commands, train_commands)
    return rows


def _schedule(specs: list[dict[str, Any]], out: Path, jobs: int, budget_min: float | None, overhead_min: float,
              t0: float, skipped: dict[str, str], commands: list[str],
              train_commands: dict[str, str] | None = None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    pending, running = list(specs), []
    run_dir = out / "runs"
    run_dir.mkdir(parents=True, exist_ok=True)

    def write() -> None:
        best = report.best_recipe(report.per_recipe(report.per_fold(rows)))
        doc = {"rows": rows, "skipped": skipped, "commands": commands, "best": best,
               "train_commands": train_commands or {}}
        (out / "ablation.json").write_text(json.dumps(doc, indent=1, default=float) + "\n")
        (out / "ablation.md").write_text(report.markdown(rows, skipped, commands))

    # one CPU thread budget per run: 11 processes x 16 torch threads each starved the data loaders
    threads = str(max(1, (os.cpu_count() or 1) // max(1, jobs)))
    child_env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    while pending or running:
        while pending and len(running) < jobs:
            spec = pending.pop(0)
            name = spec.get("name") or f"reference-{Path(spec['reference']).name}-{spec['meta']['fold']}"
            if "config" in spec:
                limit = _time_limit(budget_min, t0, len(pending) + 1, jobs, overhead_min)
                if limit is not None and budget_min is not None and (time.monotonic() - t0) / 60 > budget_min:
                    rows.append(dict(spec["meta"], error="not started: --budget-min spent"))
                    continue
                spec["config"]["time_limit"] = limit
            spec["result"] = str(run_dir / f"{name}.result.json")
            spec_path = run_dir / f"{name}.spec.json"
            spec_path.write_text(json.dumps(spec, indent=1) + "\n")
            logf = (run_dir / f"{name}.log").open("w")
            proc = subprocess.Popen([sys.executable, "-m", "roadwork.train.ablation", "--child", str(spec_path)],
                                    stdout=logf, stderr=subprocess.STDOUT, env=child_env)
            running.append((proc, spec, logf))
            log.warning("started %s (time limit %s min; %d running, %d waiting)", name,
                        spec.get("config", {}).get("time_limit"), len(running), len(pending))
        time.sleep(0.5)
        for item in list(running):
            proc, spec, logf = item
            if proc.poll() is None:
                continue
            running.remove(item)
            logf.close()
            try:
                row = json.loads(Path(spec["result"]).read_text())
            except (OSError, ValueError):
                row = dict(spec["meta"], error=f"process exited {proc.returncode} without a result "
                                               f"(log: {Path(spec['result']).with_suffix('').with_suffix('.log')})")
            rows.append(row)
            log.warning("finished %s / %s / seed %s%s", row.get("recipe"), row.get("fold"), row.get("seed"),
                        f": {row['error']}" if row.get("error") else "")
            write()
    write()
    return rows


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--seeds {text!r}: expected comma-separated integers") from None


def _synth_sets(items: Sequence[str], legacy: str | None) -> dict[str, str]:
    out = {rc.LEGACY_SET: legacy} if legacy else {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--synth-set {item!r}: expected NAME=PATH (names: {rc.LEGACY_SET}, {rc.NEW_SET})")
        out[name] = path
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from roadwork.train.config import add_arguments, from_namespace

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        return _child_main(argv[1])
    ap = argparse.ArgumentParser(prog="python -m roadwork.train.ablation", description=__doc__.splitlines()[0],
                                 conflict_handler="resolve")
    add_arguments(ap)
    ap.add_argument("--out", default="runs/ablation", help="Folder for the tables, the caches and one folder per run.")
    ap.add_argument("--epochs", type=int, default=12, help="Most epochs per run.")
    ap.add_argument("--protocol", default=DEFAULT_PROTOCOL,
                    help="Validator version of the 224 challenge (training and the '224' view); the native view "
                         "is always 2026-05.")
    ap.add_argument("--synth", default=None, help=f"The legacy synthetic set (same as --synth-set {rc.LEGACY_SET}=PATH).")
    ap.add_argument("--synth-set", action="append", default=[],
                    help=f"NAME=PATH of a synthetic set: {rc.LEGACY_SET} (today's recipe) and {rc.NEW_SET} (the synth switch).")
    ap.add_argument("--recipes", default=",".join(rc.RECIPES), help=f"Comma-separated, from: {', '.join(rc.RECIPES)}.")
    ap.add_argument("--recipe", action="append", default=[],
                    help="Extra recipe NAME=switch+switch (e.g. lite-synth=init+synth); repeatable.")
    ap.add_argument("--switch", action="append", default=[],
                    help="Redefine or add a switch: NAME:key=value,... (TrainConfig overrides); repeatable.")
    ap.add_argument("--folds", default=",".join(FOLDS), help=f"Comma-separated, from: {', '.join(FOLDS)}.")
    ap.add_argument("--seeds", default="0,1,2", help="Comma-separated training seeds (3 or more for a spread).")
    ap.add_argument("--jobs", type=int, default=1, help="Runs at once (processes sharing the GPU).")
    ap.add_argument("--budget-min", type=float, default=None,
                    help="Wall-clock minutes for everything: each run's training time limit comes from what is left.")
    ap.add_argument("--overhead-min", type=float, default=0.5,
                    help="Minutes a run spends outside training (start, caching, scoring) for the budget.")
    ap.add_argument("--reference", action="append", default=[],
                    help="A model folder scored on the same views without training (e.g. models/default).")
    ap.add_argument("--keep-models", action="store_true", help="Keep each run's model.safetensors.")
    ap.add_argument("--probe-group", action="append", default=None,
                    help=f"Groups of the hard-negative probe set (default: {', '.join(PROBE_GROUPS)}).")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        switches = dict(rc.SWITCHES)
        for spec in args.switch:
            sw = rc.parse_switch(spec)
            switches[sw.name] = sw
        recipes = {}
        for name in [s for s in args.recipes.split(",") if s]:
            if name not in rc.RECIPES:
                raise ValueError(f"--recipes: unknown recipe {name!r}; known: {', '.join(rc.RECIPES)}")
            recipes[name] = rc.RECIPES[name]
        for spec in args.recipe:
            name, parts = rc.parse_recipe(spec, switches)
            recipes[name] = parts
        base = from_namespace(args)
        base = rc.updated(base, synth=[], holdout_source=[])
        rows = run_ablation(base, _synth_sets(args.synth_set, args.synth), recipes,
                            [s for s in args.folds.split(",") if s], _seeds(args.seeds), args.out,
                            switches=switches, protocol=args.protocol, jobs=args.jobs, budget_min=args.budget_min,
                            overhead_min=args.overhead_min, reference=args.reference, keep_models=args.keep_models,
                            command="python -m roadwork.train.ablation " + shlex.join(argv),
                            probe_groups=tuple(args.probe_group or PROBE_GROUPS))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print((Path(args.out) / "ablation.md").read_text())
    return 0 if rows else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
