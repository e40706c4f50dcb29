"""A CSV manifest: `path,label` plus optional `group,source`; other columns (license, ...) ignored."""

from __future__ import annotations

import csv
from pathlib import Path

from roadwork.data.records import DataError, Record, Source, parse_label, relative_group


class ManifestSource(Source):
    """Rows of a CSV. Paths are relative to the CSV's folder (absolute paths are kept as they are).

    Defaults: `group` = the file's parent folder relative to the CSV (so frames of one clip folder
    stay together), `source` = the CSV's stem. Problems with the CSV itself raise `DataError` naming
    the file and line; unreadable images are reported when iterated.
    """

    REQUIRED = ("path", "label")

    def __init__(self, csv_path: str | Path, source: str | None = None):
        super().__init__()
        self.csv_path = Path(csv_path).absolute()
        self.name = source or self.csv_path.stem

    def _scan(self) -> list[Record]:
        root = self.csv_path.parent
        try:
            # utf-8-sig: spreadsheets often write a BOM that would otherwise rename the first column
            with self.csv_path.open(newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f)
                header = [c.strip() for c in reader.fieldnames or []]
                missing = [c for c in self.REQUIRED if c not in header]
                if missing:
                    raise DataError(f"{self.csv_path}: line 1: missing column(s) {', '.join(missing)} "
                                    f"(found: {', '.join(header) or 'nothing'})")
                reader.fieldnames = header
                records = [self._row(row, root, f"{self.csv_path}: line {reader.line_num}") for row in reader]
        except FileNotFoundError:
            raise DataError(f"{self.csv_path}: manifest not found") from None
        except UnicodeDecodeError as e:
            raise DataError(f"{self.csv_path}: not a UTF-8 text file ({e.reason})") from None
        except csv.Error as e:
            raise DataError(f"{self.csv_path}: malformed CSV ({e})") from None
        if not records:
            raise DataError(f"{self.csv_path}: manifest has no rows")
        return records

    def _row(self, row: dict[str, str | None], root: Path, where: str) -> Record:
        rel = (row.get("path") or "").strip()
        if not rel:
            raise DataError(f"{where}: empty path")
        label = parse_label(row.get("label") or "", where)
        path = root / rel
        group = (row.get("group") or "").strip() or relative_group(path, root, default=self.name)
        source = (row.get("source") or "").strip() or self.name
        return Record(str(path), label, group, source)
