"""Ablation runner: training recipes x leave-one-source-out folds, one table.

Every run trains on all sources but the fold's held-out ones, stops early and calibrates on whole
held-out groups of its training sources (the within-source number), and is then scored on the
held-out sources (the cross-source number), both under the challenge simulator with a fixed seed.
Choose recipes by the cross-source column.

    python -m roadwork.train.ablation --data devdata --synth devdata/synth --out runs/ablation \\
        --epochs 12 --workers 16 --budget-min 8
    python -m roadwork.train.ablation --data ../shared/data --out /tmp/abl --smoke    # CPU check

Writes OUT/ablation.md and OUT/ablation.json (and one folder per run with its roadwork.json).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any, Sequence

from roadwork.train.config import TrainConfig

log = logging.getLogger("roadwork.train")

# Folds: the roadwork source held out, with negative sources from the same kind of place and camera so
# the cross-source set also asks "is an unseen camera roadwork?" (issue 5, part 3).
FOLDS: dict[str, list[str]] = {
    "idd": ["idd_lite", "india_highway_anmol", "india_nh48_techievish", "india_traffic_devx96"],
    "clips": ["roadwork_clips", "us_dashcam_kartikey", "udemy_test2_montana", "kitti_road"],
}

# Recipes: overrides of TrainConfig. "synth" uses the --synth sources given on the command line.
RECIPES: dict[str, dict[str, Any]] = {
    "baseline": {"camera_jitter": False, "synth": False},
    "camera": {"camera_jitter": True, "synth": False},
    "synth": {"camera_jitter": False, "synth": True},
    "synth+camera": {"camera_jitter": True, "synth": True},
}


def parse_recipe(spec: str) -> tuple[str, dict[str, Any]]:
    """`NAME:key=value,key=value` -> (NAME, overrides), values typed by TrainConfig's defaults;
    `synth=1` asks for the --synth sources. E.g. `cnx:arch=convnext-atto,synth=1,camera_jitter=1`."""
    name, _, body = spec.partition(":")
    if not name or not body:
        raise ValueError(f"--recipe {spec!r}: expected NAME:key=value,...")
    known = TrainConfig.model_fields
    over: dict[str, Any] = {"synth": False, "camera_jitter": False}
    for item in body.split(","):
        key, _, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if key not in known or key in ("data", "out", "holdout_source"):
            raise ValueError(f"--recipe {name}: unknown or fixed setting {key!r}")
        if key in ("synth", "camera_jitter", "challenge") or isinstance(getattr(TrainConfig(), key), bool):
            value: Any = raw.strip().lower() in ("1", "true", "yes", "on")
        else:
            kind = str(known[key].annotation)
            value = float(raw) if "float" in kind else int(raw) if "int" in kind else raw.strip()
        over[key] = value
    return name, over


def plan(base: TrainConfig, synth: Sequence[str], recipes: Sequence[str], folds: Sequence[str],
         known_sources: set[str] | None = None, table: dict[str, dict[str, Any]] | None = None
         ) -> list[tuple[str, str, TrainConfig]]:
    """(recipe, fold, config) for every run; unknown held-out sources are dropped from the fold."""
    table = RECIPES if table is None else table
    runs = []
    for r in recipes:
        if r not in table:
            raise ValueError(f"--recipes: unknown recipe {r!r}; known: {', '.join(table)}")
        over = dict(table[r])
        wants_synth = over.pop("synth")
        if wants_synth and not synth:
            log.warning("recipe %s needs --synth; skipped", r)
            continue
        for f in folds:
            if f not in FOLDS:
                raise ValueError(f"--folds: unknown fold {f!r}; known: {', '.join(FOLDS)}")
            hold = [s for s in FOLDS[f] if known_sources is None or s in known_sources]
            if not hold or (known_sources is not None and FOLDS[f][0] not in known_sources):
                log.warning("fold %s: source %s not in the data; skipped", f, FOLDS[f][0])
                continue
            cfg = base.model_copy(update=dict(holdout_source=hold, synth=list(synth) if wants_synth else [],
                                              out=str(Path(base.out) / f"{r}__{f}"), model_name=f"{r}__{f}",
                                              **over))
            runs.append((r, f, cfg))
    return runs


def row_of(recipe: str, fold: str, cfg: TrainConfig, summary: dict[str, Any], seconds: float) -> dict[str, Any]:
    val, cross = summary.get("val", {}), summary.get("cross", {})
    return {"recipe": recipe, "fold": fold, "holdout": cfg.holdout_source,
            "within_mcc": val.get("mcc"), "within_auc": val.get("auc"),
            "cross_mcc": cross.get("mcc"), "cross_auc": cross.get("auc"), "cross_reward": cross.get("reward"),
            "cross_n": cross.get("n"), "cross_positives": cross.get("positives"),
            "best_epoch": summary.get("best_epoch"), "epochs_run": summary.get("epochs_run"),
            "seconds": round(seconds, 1), "command": summary.get("command", cfg.command())}


def _f(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}"


def markdown(rows: list[dict[str, Any]]) -> str:
    """The per-run table, then the mean over folds per recipe (the number to choose by)."""
    lines = ["| recipe | held out | within MCC | within AUC | cross MCC | cross AUC | cross reward | epochs | s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['recipe']} | {r['fold']} ({r['cross_positives']}/{r['cross_n']} roadwork) | "
                     f"{_f(r['within_mcc'])} | {_f(r['within_auc'])} | {_f(r['cross_mcc'])} | {_f(r['cross_auc'])} | "
                     f"{_f(r['cross_reward'])} | {r['best_epoch']}/{r['epochs_run']} | {r['seconds']:.0f} |")
    lines += ["", "| recipe | mean within MCC | mean cross MCC | mean cross AUC | mean cross reward | folds |",
              "|---|---|---|---|---|---|"]
    for recipe in dict.fromkeys(r["recipe"] for r in rows):
        rs = [r for r in rows if r["recipe"] == recipe]

        def mean(k: str) -> float | None:
            vals = [r[k] for r in rs if r[k] is not None]
            return sum(vals) / len(vals) if vals else None
        lines.append(f"| {recipe} | {_f(mean('within_mcc'))} | {_f(mean('cross_mcc'))} | {_f(mean('cross_auc'))} | "
                     f"{_f(mean('cross_reward'))} | {len(rs)} |")
    lines += ["", "Commands:", ""] + [f"- {r['recipe']} / {r['fold']}: `{r['command']}`" for r in rows]
    return "\n".join(lines) + "\n"


def run_ablation(base: TrainConfig, synth: Sequence[str], recipes: Sequence[str], folds: Sequence[str],
                 budget_min: float | None = None, keep_models: bool = False,
                 table: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    from roadwork.train.finetune import train
    from roadwork.train.prepare import load_records

    out = Path(base.out)
    out.mkdir(parents=True, exist_ok=True)
    sources = {r.source for r in load_records(base.data)}
    runs = plan(base, synth, recipes, folds, sources, table)
    if not runs:
        raise ValueError("nothing to run: check --recipes, --folds and --synth")
    rows: list[dict[str, Any]] = []
    t_all = time.monotonic()
    for i, (recipe, fold, cfg) in enumerate(runs):
        if budget_min is not None:  # share what is left of the budget among the runs still to come
            left = budget_min - (time.monotonic() - t_all) / 60
            cfg = cfg.model_copy(update={"time_limit": max(0.2, left / (len(runs) - i))})
        log.warning("run %d/%d: %s on fold %s (hold out %s)", i + 1, len(runs), recipe, fold,
                    ", ".join(cfg.holdout_source))
        t0 = time.monotonic()
        summary = train(cfg)
        rows.append(row_of(recipe, fold, cfg, summary, time.monotonic() - t0))
        if not keep_models:
            for f in Path(cfg.out).glob("model.safetensors"):
                f.unlink()
        (out / "ablation.json").write_text(json.dumps(rows, indent=2) + "\n")  # partial results survive a kill
        (out / "ablation.md").write_text(markdown(rows))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    from roadwork.train.config import add_arguments, from_namespace

    ap = argparse.ArgumentParser(prog="python -m roadwork.train.ablation", description=__doc__.splitlines()[0],
                                 conflict_handler="resolve")
    add_arguments(ap)
    ap.add_argument("--out", default="runs/ablation", help="Folder for the table and one sub-folder per run.")
    ap.add_argument("--epochs", type=int, default=12, help="Most epochs per run.")
    ap.add_argument("--recipes", default=",".join(RECIPES), help=f"Comma-separated, from: {', '.join(RECIPES)}.")
    ap.add_argument("--recipe", action="append", default=[],
                    help="Extra recipe NAME:key=value,... (e.g. cnx:arch=convnext-atto,synth=1,camera_jitter=1); "
                         "repeatable; runs after --recipes.")
    ap.add_argument("--folds", default=",".join(FOLDS), help=f"Comma-separated, from: {', '.join(FOLDS)}.")
    ap.add_argument("--budget-min", type=float, default=None,
                    help="Wall-clock minutes for all runs together (each gets a time limit from what is left).")
    ap.add_argument("--keep-models", action="store_true", help="Keep each run's model.safetensors.")
    args = ap.parse_args(argv)
    base = from_namespace(args)
    synth, base = list(base.synth), base.model_copy(update={"synth": [], "holdout_source": []})
    names = [s for s in args.recipes.split(",") if s]
    table = dict(RECIPES)
    for spec in args.recipe:
        name, over = parse_recipe(spec)
        table[name] = over
        names.append(name)
    rows = run_ablation(base, synth, names, [s for s in args.folds.split(",") if s], args.budget_min,
                        args.keep_models, table)
    print(markdown(rows))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
