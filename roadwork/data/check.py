"""`roadwork data SPEC`: what a data source holds, and (with --decode) every file that cannot be read."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.progress import track
from rich.table import Table

from roadwork.data import DataError, open_source
from roadwork.data.split import group_split, summarize


def describe(src, decode: bool = False, val_fraction: float | None = None, seed: int = 0,
             progress: bool = False) -> dict:
    """Counts per source (none / roadwork / groups), skipped and unreadable items, optional split sizes."""
    recs = src.records()
    out: dict = {"spec": repr(src), "n": len(recs), "roadwork": sum(r.label for r in recs),
                 "sources": summarize(recs)}
    if hasattr(src, "skipped"):
        out["skipped_label_disagrees_with_description"] = len(src.skipped)
    if hasattr(src, "ambiguous"):
        out["ambiguous_video_frames"] = src.ambiguous
    if decode:
        n_read = 0
        for _ in (track(src, total=len(recs), description="decoding") if progress else src):
            n_read += 1
        out["decoded"] = n_read
    if val_fraction is not None:
        train, val = group_split(recs, val_fraction=val_fraction, seed=seed)
        out["split"] = {part: {"n": len(rs), "roadwork": sum(r.label for r in rs), "groups": len({r.group for r in rs})}
                        for part, rs in (("train", train), ("val", val))}
    out["errors"] = [{"path": p, "reason": r} for p, r in src.errors]
    return out


def run_data_check(spec: str, segments: str | Path | None = None, fps: float = 2.0, decode: bool = False,
                   val_fraction: float | None = None, seed: int = 0, as_json: bool = False,
                   console: Console | None = None) -> int:
    """Exit code: 0 fine, 1 some items unreadable (listed), 2 the source itself is unusable."""
    console = console or Console(stderr=True)
    try:
        src = open_source(spec, segments=segments, fps=fps)
        info = describe(src, decode=decode, val_fraction=val_fraction, seed=seed, progress=not as_json)
        info["spec"] = f"{spec} ({type(src).__name__})"
    except DataError as e:
        console.print(f"[red]error[/red] {e}", soft_wrap=True)
        return 2
    if as_json:
        print(json.dumps(info), flush=True)
    else:
        _print(info, Console())
    return 1 if info["errors"] else 0


def _print(info: dict, console: Console) -> None:
    table = Table(title=f"{info['spec']}: {info['n']} images, {info['roadwork']} roadwork")
    for col in ("source", "none", "roadwork", "groups"):
        table.add_column(col, justify="left" if col == "source" else "right")
    for name, row in info["sources"].items():
        table.add_row(name, str(row["none"]), str(row["roadwork"]), str(row["groups"]))
    console.print(table)
    for key in ("skipped_label_disagrees_with_description", "ambiguous_video_frames", "decoded"):
        if key in info:
            console.print(f"{key.replace('_', ' ')}: {info[key]}")
    for part, row in info.get("split", {}).items():
        console.print(f"{part}: {row['n']} images ({row['roadwork']} roadwork) in {row['groups']} groups")
    for err in info["errors"]:
        console.print(f"[red]unreadable[/red] {err['path']}: {err['reason']}", soft_wrap=True)
