"""An image folder: `roadwork/` (or `1/`) and `none/` (or `0/`) sub-folders, any depth below them."""

from __future__ import annotations

from pathlib import Path

from roadwork.data.records import DataError, Record, Source
from roadwork.decode import IMAGE_SUFFIXES

LABEL_FOLDERS = {"roadwork": 1, "1": 1, "none": 0, "0": 0}
# Files that file managers drop everywhere; reporting them as broken images would be noise.
JUNK = {"thumbs.db", "desktop.ini"}


def label_folders(root: Path) -> list[tuple[Path, int]]:
    """The label sub-folders of `root` (case-insensitive names), sorted for a stable order."""
    if not root.is_dir():
        return []
    return sorted((p, LABEL_FOLDERS[p.name.lower()]) for p in root.iterdir()
                  if p.is_dir() and p.name.lower() in LABEL_FOLDERS)


class FolderSource(Source):
    """Images under `root/roadwork/...` (label 1) and `root/none/...` (label 0).

    group = the first folder below the label folder (a clip or sequence, shared by its roadwork and
    none frames), or the file stem for files directly in the label folder. source = the folder name.
    Files without an image suffix are reported at scan time, not silently ignored.
    """

    def __init__(self, root: str | Path, source: str | None = None):
        super().__init__()
        self.root = Path(root).absolute()
        self.name = source or self.root.name

    def _scan(self) -> list[Record]:
        folders = label_folders(self.root)
        if not folders:
            raise DataError(f"{self.root}: no roadwork/ or none/ (1/ or 0/) sub-folders")
        records = []
        for folder, label in folders:
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                rel = path.relative_to(folder)
                if any(part.startswith(".") for part in rel.parts) or path.name.lower() in JUNK:
                    continue
                if path.suffix.lower() not in IMAGE_SUFFIXES:
                    self.report(str(path), f"not an image file (suffix {path.suffix or 'none'!r})")
                    continue
                group = rel.parts[0] if len(rel.parts) > 1 else path.stem
                records.append(Record(str(path), label, group, self.name))
        if not records:
            raise DataError(f"{self.root}: no image files under {', '.join(f.name + '/' for f, _ in folders)}")
        return records
