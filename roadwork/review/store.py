"""The review's data: captured images (from the capture's parquet index) and their human labels.

Labels live in `<capture dir>/labels.csv`, beside `index/`, as a manifest `roadwork train --data`
reads as it is: `path` (relative to the capture folder), `label` (0/1), `group` (capture day and
source, so all images of one day's traffic stay on one side of a split: near-duplicates of one
validator round never straddle it), `source`, plus the image's sha256, the model's probability and
tier, when it was captured and labelled, and by whom.

Every change rewrites the file whole under a file lock: read the current file, change one row,
write a temp file in the same folder, fsync, `os.replace`. A reader (or a crash) sees the old file
or the new one, never half of one; several reviewers on one folder each merge their change into
what the others wrote, so nobody's labels are lost (the last label given to one image wins).
"""

from __future__ import annotations

import csv
import math
import os
import re
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from filelock import FileLock

from roadwork.serve.capture import read_index

LABELS_FILE = "labels.csv"
COLUMNS = ("path", "label", "group", "source", "sha256", "prob", "tier", "captured_at", "labelled_at", "reviewer")
LABELS = {"roadwork": 1, "none": 0}  # what a reviewer can say; "skip" is not a label, nothing is written
DECISION_POINT = 0.5  # the calibrated probability where the model is least sure
_ID = re.compile(r"[0-9a-f]{64}")  # an image id is the sha256 the capture named the file by


class ReviewError(ValueError):
    """A request the review cannot serve: `status` is the HTTP status it maps to."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


@dataclass(frozen=True)
class Item:
    """One captured image, as the review page shows it."""

    id: str
    file: str  # relative to the capture folder
    prob: float
    tier: str
    source: str
    timestamp: float

    @property
    def day(self) -> str:
        return datetime.fromtimestamp(self.timestamp, timezone.utc).strftime("%Y-%m-%d")

    @property
    def uncertainty(self) -> float:
        """Binary entropy of the probability in bits: 1 at the decision point, 0 when sure."""
        p = min(max(self.prob, 1e-12), 1 - 1e-12)
        return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))

    @property
    def group(self) -> str:
        return f"{self.day}/{self.source}"


def check_id(image_id: str) -> str:
    """The id as given if it is a sha256 hex digest; anything else (a path, `..`) is refused."""
    if not _ID.fullmatch(image_id):
        raise ReviewError(404, f"unknown image id {image_id[:80]!r} (ids are 64 lowercase hex digits)")
    return image_id


def label_value(value: object) -> int:
    if not isinstance(value, str) or value not in LABELS:
        raise ReviewError(422, f"label must be one of {', '.join(LABELS)}, got {str(value)[:40]!r}")
    return LABELS[value]


class ReviewStore:
    """Captured items of one capture folder and the labels.csv beside its index."""

    def __init__(self, root: str | Path):
        self.root = Path(root).absolute()
        self.labels_path = self.root / LABELS_FILE
        self._lock = FileLock(str(self.root / f".{LABELS_FILE}.lock"))
        self._index_key: tuple | None = None
        self._items: dict[str, Item] = {}

    # ---- captured images --------------------------------------------------------------------
    def items(self) -> dict[str, Item]:
        """id -> Item, re-read when the index gained part files (a running capture adds them)."""
        parts = sorted((self.root / "index").glob("part-*.parquet"))
        key = tuple((p.name, p.stat().st_size) for p in parts)
        if key != self._index_key:
            items: dict[str, Item] = {}
            for row in read_index(self.root).to_pylist():
                if row["sha256"] and _ID.fullmatch(row["sha256"]):  # the same bytes captured twice: one item
                    items.setdefault(row["sha256"], Item(row["sha256"], row["file"], float(row["prob"]),
                                                         row["tier"] or "", row["source"] or "",
                                                         float(row["timestamp"] or 0.0)))
            self._items, self._index_key = items, key
        return self._items

    def item(self, image_id: str) -> Item:
        item = self.items().get(check_id(image_id))
        if item is None:
            raise ReviewError(404, f"unknown image id {image_id!r}")
        return item

    def image_path(self, image_id: str) -> Path:
        """The file of an item, refused unless it lies inside the capture's images/ folder."""
        path = (self.root / self.item(image_id).file).resolve()
        images = (self.root / "images").resolve()
        if images not in path.parents or not path.is_file():
            raise ReviewError(404, f"no image file for {image_id}")
        return path

    # ---- labels -----------------------------------------------------------------------------
    def labels(self) -> dict[str, dict[str, str]]:
        """sha256 -> its labels.csv row (empty before the first label)."""
        try:
            with self.labels_path.open(newline="", encoding="utf-8") as f:
                return {row["sha256"]: row for row in csv.DictReader(f) if row.get("sha256")}
        except FileNotFoundError:
            return {}

    def set_label(self, image_id: str, label: str, reviewer: str = "") -> dict[str, str]:
        item = self.item(image_id)
        value = label_value(label)
        reviewer = _clean_reviewer(reviewer)
        row = {"path": item.file, "label": str(value), "group": item.group, "source": f"capture-{item.source}",
               "sha256": item.id, "prob": f"{item.prob:.6f}", "tier": item.tier,
               "captured_at": _iso(item.timestamp), "labelled_at": _iso(time.time()), "reviewer": reviewer}
        with self._lock:
            rows = self.labels()
            rows[item.id] = row
            self._write(rows)
        return row

    def clear_label(self, image_id: str) -> bool:
        """Remove an image's label (undo); False if it had none."""
        check_id(image_id)
        with self._lock:
            rows = self.labels()
            if rows.pop(image_id, None) is None:
                return False
            self._write(rows)
        return True

    def _write(self, rows: dict[str, dict[str, str]]) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{LABELS_FILE}.", suffix=".tmp", dir=self.root)
        try:
            with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
                w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
                w.writeheader()
                w.writerows(rows.values())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.labels_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(self.root)


def _clean_reviewer(name: str) -> str:
    name = (name or "").strip()
    if len(name) > 64 or any(not c.isprintable() for c in name):
        raise ReviewError(422, "reviewer: at most 64 printable characters")
    return name


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def _fsync_dir(path: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
