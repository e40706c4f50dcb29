"""Progress bar and per-epoch metrics table for training: rich when installed, plain lines otherwise.

Only rank 0 of a distributed run reports (`enabled=False` elsewhere)."""

from __future__ import annotations

import math
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator

try:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.table import Table
except ImportError:  # GPU machines may lack rich: fall back to print
    Console = None  # type: ignore[assignment,misc]

COLUMNS = [("epoch", "epoch", "{:d}"), ("loss", "loss", "{:.4f}"), ("val MCC", "val_mcc", "{:.3f}"),
           ("val MCC*", "val_mcc_best", "{:.3f}"), ("val acc", "val_accuracy", "{:.3f}"),
           ("val AUC", "val_auc", "{:.3f}")]
CROSS_COLUMNS = [("cross MCC", "cross_mcc", "{:.3f}"), ("cross MCC*", "cross_mcc_best", "{:.3f}"),
                 ("cross AUC", "cross_auc", "{:.3f}")]
TAIL_COLUMNS = [("lr", "lr", "{:.2e}"), ("s", "seconds", "{:.0f}")]


def _fmt(fmt: str, v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return fmt.format(v)


class Reporter:
    def __init__(self, enabled: bool = True, console: Any = None):
        self.enabled = enabled
        self.console = console or (Console(stderr=True) if Console is not None else None)
        self.columns = COLUMNS + TAIL_COLUMNS

    def info(self, text: str) -> None:
        if not self.enabled:
            return
        if self.console is not None:
            self.console.print(text, highlight=False, markup=False, soft_wrap=True)
        else:
            print(text, file=sys.stderr, flush=True)

    def header(self, cross: bool) -> None:
        self.columns = COLUMNS + (CROSS_COLUMNS if cross else []) + TAIL_COLUMNS
        self.info("  ".join(f"{name:>10}" for name, _, _ in self.columns)
                  + "\n(MCC at 0.5; MCC* at the best threshold for a 50/50 label mix)")

    def row(self, row: dict[str, Any], best: bool = False) -> None:
        cells = "  ".join(f"{_fmt(fmt, row.get(key)):>10}" for _, key, fmt in self.columns)
        self.info(cells + ("  *" if best else ""))

    @contextmanager
    def bar(self, title: str, total: int) -> Iterator[Callable[[float], None]]:
        if not self.enabled or self.console is None or not self.console.is_terminal:
            yield lambda loss: None
            return
        cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                TimeElapsedColumn(), TimeRemainingColumn())
        with Progress(*cols, console=self.console, transient=True) as prog:
            task = prog.add_task(title, total=total, loss="-")
            yield lambda loss: prog.update(task, advance=1, loss=f"{loss:.4f}")

    def final(self, summary: dict[str, Any]) -> None:
        if not self.enabled:
            return
        sets = [("val (within source)", summary.get("val"))]
        if summary.get("cross"):
            sets.append(("cross-source", summary["cross"]))
        lines = [f"saved {summary.get('arch') or summary.get('init')} after epoch {summary['best_epoch']} "
                 f"(T={summary['temperature']:.3f}, threshold={summary['threshold']:.3f} folded into the head)"]
        if Console is not None and self.console is not None:
            table = Table(title="calibrated model")
            for c in ("set", "n", "roadwork", "MCC", "accuracy", "AUC", "reward"):
                table.add_column(c, justify="right")
            for name, m in sets:
                table.add_row(name, str(m["n"]), str(m["positives"]), _fmt("{:.3f}", m["mcc"]),
                              _fmt("{:.3f}", m["accuracy"]), _fmt("{:.3f}", m["auc"]), _fmt("{:.3f}", m.get("reward")))
            self.info(lines[0])
            self.console.print(table)
            return
        for name, m in sets:
            lines.append(f"{name}: n={m['n']} MCC={_fmt('{:.3f}', m['mcc'])} acc={_fmt('{:.3f}', m['accuracy'])} "
                         f"AUC={_fmt('{:.3f}', m['auc'])}")
        self.info("\n".join(lines))
