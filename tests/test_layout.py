"""README's layout table matches the tree: every path it names exists, every package is listed."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def layout_rows() -> list[tuple[list[str], str]]:
    """(paths of the first column, text of the second) of each row under '## Layout'."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0].startswith("`"):
            rows.append((re.findall(r"`([^`]+)`", cells[0]), cells[1]))
    return rows


def named_paths() -> list[Path]:
    """Every path a row names: its first-column paths (bare names after the first one stand beside it:
    `roadwork/train/`, `publish.py` is roadwork/publish.py) and the .py files its description
    mentions (with a folder: under roadwork/; bare: in the row's folder)."""
    out = []
    for paths, what in layout_rows():
        first = ROOT / paths[0]
        home = first if paths[0].endswith("/") else first.parent
        beside = first.parent
        out += [first] + [(ROOT / p if "/" in p else beside / p) for p in paths[1:]]
        for name in re.findall(r"`([\w/.-]+\.py)`", what):
            out.append(ROOT / "roadwork" / name if "/" in name else home / name)
    return out


def test_every_path_in_the_layout_table_exists():
    missing = [str(p.relative_to(ROOT)) for p in named_paths() if not p.exists()]
    assert not missing, f"README layout names paths that are not in the tree: {missing}"


def test_every_package_is_in_the_layout_table():
    listed = {p.resolve() for p in named_paths()}
    packages = sorted(p.parent for p in (ROOT / "roadwork").glob("*/__init__.py"))
    unlisted = [str(p.relative_to(ROOT)) + "/" for p in packages if p.resolve() not in listed]
    assert not unlisted, f"packages missing from README's layout table: {unlisted}"
    assert len(listed) >= 20  # the parser read the table
