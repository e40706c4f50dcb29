"""The ablation's tables: mean ± sd over seeds per recipe and fold, then per recipe over folds.

One row per run comes in (`ablation.run_one`'s result: the recipe, fold, seed, the within-source
validation numbers and `scores` = {"cross/224": metrics, "cross/native": ..., "probe/224": ...,
"probe/native": ...}); the markdown goes into docs/ablation.md as it is.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np

COLUMNS = (("cross/224", "auc", "AUC 224"), ("cross/224", "mcc", "MCC 224"), ("cross/224", "reward", "reward 224"),
           ("cross/native", "auc", "AUC native"), ("cross/native", "mcc", "MCC native"),
           ("cross/native", "reward", "reward native"), ("probe/224", "fpr", "probe FPR 224"),
           ("probe/native", "fpr", "probe FPR native"))


def value(row: dict[str, Any], view: str, key: str) -> float | None:
    v = (row.get("scores") or {}).get(view, {}).get(key)
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def mean_sd(values: Iterable[float | None]) -> tuple[float, float, int] | None:
    """(mean, sample sd, n) over the values that exist; sd 0 for a single value."""
    v = np.array([x for x in values if x is not None], np.float64)
    if not len(v):
        return None
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v)


def fmt(ms: tuple[float, float, int] | None, sd: bool = True) -> str:
    if ms is None:
        return "-"
    return f"{ms[0]:.3f} ± {ms[1]:.3f}" if sd and ms[2] > 1 else f"{ms[0]:.3f}"


def _groups(rows: Sequence[dict[str, Any]], *keys: str) -> dict[tuple, list[dict[str, Any]]]:
    out: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(tuple(r.get(k) for k in keys), []).append(r)
    return out


def per_fold(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (recipe, fold): mean ± sd over its seeds for every column."""
    out = []
    for (recipe, fold), rs in _groups([r for r in rows if not r.get("error")], "recipe", "fold").items():
        e = {"recipe": recipe, "fold": fold, "seeds": sorted(r["seed"] for r in rs if r.get("seed") is not None),
             "switches": rs[0].get("switches", []), "reference": bool(rs[0].get("reference")),
             "cross_n": value(rs[0], "cross/224", "n"), "cross_positives": value(rs[0], "cross/224", "positives")}
        for view, key, _ in COLUMNS:
            e[f"{view}:{key}"] = mean_sd(value(r, view, key) for r in rs)
        e["within_mcc"] = mean_sd((r.get("within") or {}).get("mcc") for r in rs)
        e["epochs"] = mean_sd(r.get("epochs_run") for r in rs)
        out.append(e)
    return out


def per_recipe(folds: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean over folds of the per-fold means (the numbers the issue's targets are stated in)."""
    out = []
    for (recipe,), es in _groups(folds, "recipe").items():
        def avg(col: str) -> float | None:
            v = [e[col][0] for e in es if e[col] is not None]
            return float(np.mean(v)) if v else None
        mccs = [e["cross/224:mcc"][0] for e in es if e["cross/224:mcc"] is not None]
        out.append({"recipe": recipe, "folds": len(es), "reference": es[0]["reference"],
                    "auc224": avg("cross/224:auc"), "mcc224": avg("cross/224:mcc"),
                    "min_mcc224": min(mccs) if mccs else None, "reward224": avg("cross/224:reward"),
                    "auc_native": avg("cross/native:auc"), "mcc_native": avg("cross/native:mcc"),
                    "probe224": avg("probe/224:fpr"), "probe_native": avg("probe/native:fpr")})
    return out


def best_recipe(summary: Sequence[dict[str, Any]]) -> str | None:
    """The trained recipe with the highest mean cross MCC on the 224 challenge (AUC breaks ties)."""
    trained = [s for s in summary if not s["reference"] and s["mcc224"] is not None]
    if not trained:
        return None
    return max(trained, key=lambda s: (s["mcc224"], s["auc224"] or 0.0))["recipe"]


def _n(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def markdown(rows: Sequence[dict[str, Any]], skipped: dict[str, str] | None = None,
             commands: Sequence[str] = ()) -> str:
    folds = per_fold(rows)
    lines = ["| recipe | fold (roadwork/total) | seeds | " + " | ".join(c[2] for c in COLUMNS)
             + " | within MCC | epochs |", "|" + "---|" * (len(COLUMNS) + 5)]
    for e in folds:
        held = f"{e['fold']} ({_int(e['cross_positives'])}/{_int(e['cross_n'])})"
        seeds = ",".join(map(str, e["seeds"])) or "-"
        lines.append(f"| {e['recipe']} | {held} | {seeds} | "
                     + " | ".join(fmt(e[f'{v}:{k}']) for v, k, _ in COLUMNS)
                     + f" | {fmt(e['within_mcc'])} | {fmt(e['epochs'], sd=False)} |")
    summary = per_recipe(folds)
    lines += ["", "Mean over the folds (of the per-fold means over seeds):", "",
              "| recipe | AUC 224 | MCC 224 | lowest fold MCC 224 | reward 224 | AUC native | MCC native "
              "| probe FPR 224 | probe FPR native |", "|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        lines.append(f"| {s['recipe']} | {_n(s['auc224'])} | {_n(s['mcc224'])} | {_n(s['min_mcc224'])} | "
                     f"{_n(s['reward224'])} | {_n(s['auc_native'])} | {_n(s['mcc_native'])} | {_n(s['probe224'])} | "
                     f"{_n(s['probe_native'])} |")
    best = best_recipe(summary)
    if best:
        lines += ["", f"Best by mean cross MCC (224): **{best}**."]
    failed = [r for r in rows if r.get("error")]
    if failed:
        lines += ["", "Failed runs:", ""] + [f"- {r['recipe']} / {r['fold']} / seed {r['seed']}: {r['error']}"
                                             for r in failed]
    if skipped:
        lines += ["", "Skipped recipes:", ""] + [f"- {k}: {v}" for k, v in skipped.items()]
    if commands:
        lines += ["", "Commands:", ""] + [f"- {c}" if "`" in c else f"- `{c}`" for c in commands]
    return "\n".join(lines) + "\n"


def _int(v: float | None) -> str:
    return "?" if v is None else str(int(v))
