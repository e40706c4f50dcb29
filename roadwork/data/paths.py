"""Command-line inputs -> files: paths, folders (recursively) and globs, as predict and label take them."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Iterable, NamedTuple

from roadwork.decode import IMAGE_SUFFIXES, VIDEO_SUFFIXES


class Miss(NamedTuple):
    """An argument that gave no file, and why."""
    item: str
    why: str


def expand_inputs(items: Iterable[str]) -> list[Path | Miss]:
    """Files, folders (recursively, images and videos) and globs -> paths in argument order (a folder's or
    glob's own matches sorted), each file once (the first time it is named); a Miss where an argument
    gave nothing."""
    out: list[Path | Miss] = []
    seen: set[Path] = set()
    for item in items:
        p = Path(item)
        if p.is_dir():
            hits = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
            why = "no images or videos in this folder"
        elif p.exists():
            hits, why = [p], ""
        else:
            hits = sorted(h for h in map(Path, glob.glob(item, recursive=True)) if h.is_file())
            why = "no such file, folder or glob match"
        if not hits:
            out.append(Miss(item, why))
        for h in hits:
            if h.resolve() not in seen:
                seen.add(h.resolve())
                out.append(h)
    return out


def expand_paths(items: Iterable[str]) -> tuple[list[Path], list[Miss]]:
    """`expand_inputs` split into the files and the arguments that gave none."""
    entries = expand_inputs(items)
    return [e for e in entries if isinstance(e, Path)], [e for e in entries if isinstance(e, Miss)]
