"""Parquet shards in the layout of the subnet's Hub dataset (natix-network-org/roadwork).

Columns: `image` (raw bytes, or a struct `{"bytes": ..., "path": ...}` as `datasets.Image` stores it),
`label` (0/1) and `scene_description`. Shards are opened with `datasets` (converted once to a
memory-mapped Arrow cache, so a DataLoader worker can read any row in O(1)); image cells are taken raw
from the Arrow table and decoded by `roadwork.decode`, so the size and bomb checks apply to them too.

Label filter, as the validator does it (natix/validator/cache/image_cache.py, `ImageCache.sample`):
a row is skipped when `scene_description` is non-empty but `label == 0`, or empty/missing but
`label == 1` -- i.e. the description exists exactly for roadwork images. Skipped rows are counted in
`ParquetSource.skipped` and logged; they are not errors.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from roadwork.data.records import DataError, Record, Source, parse_label
from roadwork.decode import ImageError, decode_base64, decode_bytes, load_image

log = logging.getLogger("roadwork.data")


@functools.lru_cache(maxsize=32)
def open_shard(shard: str, cache_dir: str | None = None):
    """One shard as a `datasets.Dataset` (cached per process; cheap to reopen from the Arrow cache)."""
    from datasets import Dataset

    return Dataset.from_parquet(shard, cache_dir=cache_dir)


def description_agrees(label: int, description: object) -> bool:
    """The validator's rule: a non-empty scene description exactly for roadwork (label 1) rows."""
    if description is None or (isinstance(description, float) and math.isnan(description)):
        has_description = False
    else:
        has_description = bool(description)
    return has_description == bool(label)


def decode_cell(cell: object, where: str, shard_dir: Path) -> Image.Image:
    """An `image` cell (bytes, {"bytes", "path"} struct, or base64 text) to an RGB image."""
    if isinstance(cell, dict):
        data, path = cell.get("bytes"), cell.get("path")
        if data is None and path:  # datasets.Image may store only a path to a file beside the data
            return load_image(Path(path) if Path(path).is_absolute() else shard_dir / path)
        cell = data
    if cell is None:
        raise ImageError(where, "no image data in the row")
    if isinstance(cell, str):
        return decode_base64(cell, where)
    try:
        return decode_bytes(cell, where)
    except ImageError as first:
        # Like the validator's extractor: bytes that are not an image may be base64 text of one.
        if isinstance(cell, (bytes, bytearray)) and first.reason.startswith("not an image"):
            try:
                return decode_base64(bytes(cell), where)
            except ImageError:
                pass
        raise


@dataclass
class ParquetRecord(Record):
    shard: str = ""
    row: int = 0
    image_column: str = "image"
    cache_dir: str | None = None

    def load(self) -> Image.Image:
        try:
            table = open_shard(self.shard, self.cache_dir).data
            cell = table.column(self.image_column)[self.row].as_py()
        except (OSError, ValueError, IndexError, KeyError) as e:
            raise ImageError(self.path, f"cannot read the row ({e})") from None
        return decode_cell(cell, self.path, Path(self.shard).parent)


class ParquetSource(Source):
    """All rows of one `.parquet` shard or a folder of them (searched recursively).

    group = the `group_column` value when the shard has that column, else `shard-stem#row` (the Hub
    data set has no clip ids, so each row is its own group). source = `source` or the spec's name.
    """

    def __init__(self, path: str | Path, source: str | None = None, image_column: str = "image",
                 group_column: str = "group", cache_dir: str | Path | None = None):
        super().__init__()
        self.root = Path(path).absolute()
        self.name = source or (self.root.name if self.root.is_dir() else self.root.stem)
        self.image_column = image_column
        self.group_column = group_column
        self.cache_dir = str(cache_dir) if cache_dir is not None else None
        self.skipped: list[str] = []  # rows whose label and scene_description disagree

    def shards(self) -> list[Path]:
        if self.root.is_file():
            return [self.root]
        shards = sorted(self.root.rglob("*.parquet")) if self.root.is_dir() else []
        if not shards:
            raise DataError(f"{self.root}: no .parquet files")
        return shards

    def _scan(self) -> list[Record]:
        self.skipped = []
        records: list[Record] = []
        for shard in self.shards():
            try:
                table = open_shard(str(shard), self.cache_dir).data
            except Exception as e:  # noqa: BLE001 -- arrow/datasets raise many types for a bad file
                self.report(str(shard), f"unreadable parquet shard ({type(e).__name__}: {e})")
                continue
            columns = table.column_names
            missing = [c for c in (self.image_column, "label") if c not in columns]
            if missing:
                raise DataError(f"{shard}: missing column(s) {', '.join(missing)} (found: {', '.join(columns)})")
            records += self._shard_records(shard, table)
        return records

    def _shard_records(self, shard: Path, table) -> list[Record]:
        labels = table.column("label").to_pylist()
        has_desc = "scene_description" in table.column_names
        descriptions = table.column("scene_description").to_pylist() if has_desc else [None] * len(labels)
        if not has_desc:
            log.warning("%s: no scene_description column; label filter not applied", shard)
        groups = (table.column(self.group_column).to_pylist() if self.group_column in table.column_names
                  else [None] * len(labels))
        out: list[Record] = []
        skipped = 0
        for row, (raw, desc, group) in enumerate(zip(labels, descriptions, groups)):
            where = f"{shard}#{row}"
            try:
                label = parse_label(raw, where)
            except DataError as e:
                self.report(where, str(e).removeprefix(f"{where}: "))
                continue
            if has_desc and not description_agrees(label, desc):
                self.skipped.append(where)
                skipped += 1
                continue
            out.append(ParquetRecord(where, label, str(group) if group is not None else f"{shard.stem}#{row}",
                                     self.name, shard=str(shard), row=row, image_column=self.image_column,
                                     cache_dir=self.cache_dir))
        if skipped:
            log.warning("%s: skipped %d of %d rows whose label disagrees with scene_description",
                        shard, skipped, len(labels))
        return out
