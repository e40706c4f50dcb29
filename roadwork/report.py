"""Showing an `EvalReport`: rich tables for the terminal, PNG plots and one self-contained HTML file.

Plots use matplotlib's object API (`Figure` + Agg canvas), so no GUI backend or global pyplot state
is touched. `report.html` embeds every plot as base64 and carries its own CSS: it opens anywhere,
offline, as a single file.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.console import Console
from rich.table import Table

from roadwork.metrics import ECE_BINS, reliability_bins

if TYPE_CHECKING:
    from roadwork.evaluate import EvalReport

METRIC_COLS = ("n", "positives", "accuracy", "mcc", "auc", "precision", "recall", "brier", "ece")
TIER_COLS = ("ran", "answered", "accuracy", "accuracy_ran", "ms_per_image", "cost_ms_answered")


# terminal headers are short so the tables fit 100 columns; the html and JSON use the full names
SHORT = {"positives": "pos", "accuracy": "acc", "precision": "prec", "recall": "rec", "accuracy_ran": "acc_ran",
         "ms_per_image": "ms/img", "cost_ms_answered": "ms/answer"}


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


# ---- terminal -----------------------------------------------------------------------------------
def _table(title: str, rows: dict[str, dict[str, Any]], cols: tuple[str, ...], first: str) -> Table:
    t = Table(title=title, title_justify="left")
    t.add_column(first, no_wrap=True)
    for c in cols:
        t.add_column(SHORT.get(c, c), justify="right", no_wrap=True)
    for name, row in rows.items():
        t.add_row(name, *("—" if _undefined(row, c) else _fmt(row.get(c), 3) for c in cols))
    return t


def _undefined(row: dict[str, Any], col: str) -> bool:
    """MCC of a one-class set, and precision of a set with no positives, are undefined: the 0.000 that the
    validator's zero_division rule stores would read as a measured failure."""
    n, pos = row.get("n"), row.get("positives")
    if not isinstance(n, int) or not isinstance(pos, int) or n == 0:
        return False
    return (col == "mcc" and pos in (0, n)) or (col == "precision" and pos == 0)


def print_report(rep: "EvalReport", console: Console | None = None) -> None:
    """The report as rich tables (overall, per level, per source, per tier, reward, errors)."""
    console = console or Console()
    d = rep.to_dict()
    console.print(_table(f"roadwork eval: {d['n']} images, challenge {'on' if rep.challenge else 'off'}, "
                         f"seed {rep.seed}, {d['seconds']:.1f} s", {"all": d}, METRIC_COLS, "set"))
    if d["per_level"]:
        console.print(_table("per augmentation level", d["per_level"], METRIC_COLS, "level"))
    console.print(_table("per source", d["per_source"], METRIC_COLS, "source"))
    tiers = dict(d["per_tier"]["tiers"])
    casc = d["per_tier"]["cascade"]
    tiers["cascade"] = {"ran": casc["n"], "answered": casc["n"], "accuracy": casc["accuracy"],
                        "ms_per_image": casc["ms_per_image"], "cost_ms_answered": casc["ms_per_image"]}
    console.print(_table("per tier (ms = wall time per image on this machine)", tiers, TIER_COLS, "tier"))
    r = d["reward_detail"]
    console.print(f"reward (SN72 validator, {r.get('rounds', 0)} rounds, label 50/50): mean "
                  f"{_fmt(r.get('mean_reward'))}, final EMA score {_fmt(r.get('final_score'))}; "
                  f"plain shuffled stream: mean {_fmt(r.get('shuffled_mean_reward'))}")
    if rep.errors:
        console.print(f"[yellow]{len(rep.errors)} unreadable image(s) skipped[/yellow]")
        for p, why in rep.errors[:10]:
            console.print(f"  {p}: {why}")
        if len(rep.errors) > 10:
            console.print(f"  ... and {len(rep.errors) - 10} more (see --json)")


# ---- plots --------------------------------------------------------------------------------------
def _figure(w: float = 4.5, h: float = 4.0):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=100, layout="constrained")


def plot_roc(rep: "EvalReport", path: Path) -> None:
    fig = _figure()
    ax = fig.add_subplot()
    if len(np.unique(rep.labels)) == 2:
        from sklearn.metrics import roc_curve

        fpr, tpr, _ = roc_curve(rep.labels, rep.probs)
        ax.plot(fpr, tpr, lw=2, label=f"AUC {_fmt(rep.overall()['auc'])}")
        ax.legend(loc="lower right")
    else:
        ax.text(0.5, 0.5, "one class only: ROC undefined", ha="center")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC", xlim=(0, 1), ylim=(0, 1))
    fig.savefig(path)


def plot_reliability(rep: "EvalReport", path: Path) -> None:
    edges, conf, frac, count = reliability_bins(rep.labels, rep.probs, ECE_BINS)
    fig = _figure()
    ax = fig.add_subplot()
    keep = count > 0
    centers = (edges[:-1] + edges[1:]) / 2
    ax.bar(centers[keep], frac[keep], width=1 / ECE_BINS, edgecolor="black", alpha=0.7, label="fraction roadwork")
    ax.plot(conf[keep], frac[keep], "o", c="C3", ms=4, label="bin mean p")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.set(xlabel="predicted P(roadwork)", ylabel="observed fraction roadwork", xlim=(0, 1), ylim=(0, 1),
           title=f"reliability ({ECE_BINS} bins), ECE {_fmt(rep.overall()['ece'])}")
    ax.legend(loc="upper left")
    fig.savefig(path)


def plot_confusion(rep: "EvalReport", path: Path) -> None:
    cm = np.array(rep.overall()["confusion"])
    fig = _figure(4.0, 3.6)
    ax = fig.add_subplot()
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["none", "roadwork"], yticklabels=["none", "roadwork"],
           xlabel="predicted (np.round)", ylabel="true", title="confusion matrix")
    fig.savefig(path)


def plot_levels(rep: "EvalReport", path: Path) -> None:
    levels = rep.per_level()
    fig = _figure()
    ax = fig.add_subplot()
    if levels:
        names = list(levels)
        acc = [levels[k]["accuracy"] for k in names]
        mcc = [levels[k]["mcc"] for k in names]
        x = np.arange(len(names))
        ax.bar(x - 0.2, acc, 0.4, label="accuracy")
        ax.bar(x + 0.2, mcc, 0.4, label="MCC")
        ax.set_xticks(x, [f"level {k}\n(n={levels[k]['n']})" for k in names])
        ax.legend(loc="lower left")
    else:
        ax.text(0.5, 0.5, "challenges off: no augmentation levels", ha="center")
    ax.set(ylim=(0, 1), title="accuracy per augmentation level")
    fig.savefig(path)


PLOTS = {"roc.png": plot_roc, "reliability.png": plot_reliability, "confusion.png": plot_confusion,
         "accuracy_per_level.png": plot_levels}


# ---- html ---------------------------------------------------------------------------------------
CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}
th{background:#f3f3f3}img{margin:4px;border:1px solid #eee}.err{font-family:monospace;font-size:90%}"""


def _html_table(rows: dict[str, dict[str, Any]], cols: tuple[str, ...], first: str) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in (first, *cols))
    body = "".join("<tr><td>" + html.escape(str(name)) + "</td>"
                   + "".join(f"<td>{html.escape(_fmt(row.get(c)))}</td>" for c in cols) + "</tr>"
                   for name, row in rows.items())
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(rep: "EvalReport", out_dir: str | Path) -> Path:
    """Write the four PNG plots and `report.html` (plots embedded) into `out_dir`; returns the html path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    imgs = []
    for name, plot in PLOTS.items():
        plot(rep, out / name)
        b64 = base64.b64encode((out / name).read_bytes()).decode("ascii")
        imgs.append(f'<img alt="{name}" src="data:image/png;base64,{b64}">')
    d = rep.to_dict()
    tiers = dict(d["per_tier"]["tiers"])
    tiers["cascade"] = {**d["per_tier"]["cascade"], "ran": d["n"], "answered": d["n"],
                        "cost_ms_answered": d["per_tier"]["cascade"]["ms_per_image"]}
    r = d["reward_detail"]
    errors = "".join(f"<li>{html.escape(e['path'])}: {html.escape(e['reason'])}</li>" for e in d["error_files"])
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>roadwork eval</title><style>{CSS}</style></head><body>",
        f"<h1>roadwork eval</h1><p>{d['n']} images, challenge {'on' if rep.challenge else 'off'}, seed {rep.seed}, "
        f"{d['seconds']:.1f} s. Hard labels by np.round (0.5 &rarr; none), as the validator.</p>",
        _html_table({"all": d}, METRIC_COLS, "set"),
        f"<h2>SN72 reward</h2><p>{r.get('rounds', 0)} simulated rounds, label 50/50 per round: mean reward "
        f"<b>{_fmt(r.get('mean_reward'))}</b>, final EMA score {_fmt(r.get('final_score'))}. "
        f"Plain shuffled stream: mean {_fmt(r.get('shuffled_mean_reward'))}.</p>",
        "<div>" + "".join(imgs) + "</div>",
        "<h2>Per augmentation level</h2>" + (_html_table(d["per_level"], METRIC_COLS, "level")
                                               if d["per_level"] else "<p>challenges off</p>"),
        "<h2>Per source</h2>" + _html_table(d["per_source"], METRIC_COLS, "source"),
        "<h2>Per tier</h2>" + _html_table(tiers, TIER_COLS, "tier"),
        f"<h2>Unreadable images: {d['errors']}</h2><ul class='err'>{errors}</ul>",
        "</body></html>",
    ]
    path = out / "report.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
