"""What every data source yields: pixel-free `Record`s that load lazily, and decoded `Sample`s.

Records are plain dataclasses so they pickle into DataLoader workers; subclasses (video frames,
parquet rows) carry the extra coordinates they need to find their pixels again.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from roadwork.decode import ImageError, load_image

log = logging.getLogger("roadwork.data")

LABEL_NAMES = {0: "none", 1: "roadwork"}


class DataError(ValueError):
    """A data source that cannot be read as a whole (bad manifest, missing column, unknown layout).

    The message names the file and, where there is one, the line or row.
    """


@dataclass
class Sample:
    image: Image.Image
    label: int
    group: str
    source: str
    path: str


@dataclass
class Record:
    """One labelled image, not yet decoded. `path` is the file (or `file#t=..s`, `shard#row`)."""

    path: str
    label: int
    group: str
    source: str

    def load(self) -> Image.Image:
        """Decode the pixels; raises `ImageError` naming `path` when they are unusable."""
        return load_image(self.path)

    def sample(self) -> Sample:
        return Sample(self.load(), self.label, self.group, self.source, self.path)


def parse_label(value: object, where: str) -> int:
    """0/1 (also '0.0'/'1.0' as pandas writes them, and booleans); anything else is a DataError."""
    if isinstance(value, bool):
        return int(value)
    text = str(value).strip().lower()
    if text in ("0", "0.0", "false"):
        return 0
    if text in ("1", "1.0", "true"):
        return 1
    raise DataError(f"{where}: label must be 0 or 1, got {value!r}")


class Source(ABC):
    """Base of every source: cached `records()`, decoding `__iter__` that reports and skips bad files."""

    name: str

    def __init__(self) -> None:
        self.errors: list[tuple[str, str]] = []
        self._records: list[Record] | None = None

    @abstractmethod
    def _scan(self) -> list[Record]:
        """List the records (cheap: no pixel decoding)."""

    def records(self) -> list[Record]:
        if self._records is None:
            self._records = self._scan()
        return list(self._records)

    def __len__(self) -> int:
        return len(self.records())

    def __iter__(self) -> Iterator[Sample]:
        for rec in self.records():
            try:
                yield rec.sample()
            except ImageError as e:
                self.report(rec.path, e.reason)

    def report(self, path: str, reason: str) -> None:
        """An unreadable item: warn, remember it in `errors`, and let the caller skip it."""
        log.warning("skipping %s: %s", path, reason)
        self.errors.append((path, reason))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def relative_group(path: Path, root: Path, default: str) -> str:
    """The parent folder of `path` relative to `root` (posix); `default` for files directly in root."""
    try:
        parent = path.parent.relative_to(root)
    except ValueError:  # outside root (absolute paths in a manifest): the full parent folder
        return path.parent.as_posix()
    return parent.as_posix() if parent.parts else default
