"""Data sources yielding (image, label, group, source), and group-aware splits.

    src = open_source("../shared/data")            # folder with manifest.csv -> ManifestSource
    train, val = group_split(src.records(), 0.2)   # records load lazily: rec.load() -> PIL RGB
    for s in src: ...                              # Samples; unreadable files land in src.errors
"""

from __future__ import annotations

from pathlib import Path

from roadwork.data.folder import FolderSource, label_folders
from roadwork.data.manifest import ManifestSource
from roadwork.data.parquet import ParquetRecord, ParquetSource
from roadwork.data.paths import expand_paths
from roadwork.data.records import DataError, Record, Sample, Source
from roadwork.data.split import group_kfold, group_split, leave_sources_out, summarize
from roadwork.data.video import VideoFrameRecord, VideoSource, iter_video_frames, read_frame_at
from roadwork.decode import VIDEO_SUFFIXES

__all__ = [
    "DataError", "FolderSource", "ManifestSource", "ParquetRecord", "ParquetSource", "Record", "Sample",
    "Source", "VideoFrameRecord", "VideoSource", "expand_paths", "group_kfold", "group_split", "iter_video_frames",
    "leave_sources_out", "open_source", "read_frame_at", "summarize",
]


def open_source(spec: str | Path, **kw) -> Source:
    """A source chosen by what `spec` is.

    - a `.csv` file: a manifest; a folder holding `manifest.csv`: that manifest
    - a folder with `roadwork/` and `none/` (or `1/`, `0/`) sub-folders: an image folder
    - a `.parquet` file, or a folder with `.parquet` files: parquet shards
    - a video file or a folder of videos: a video source (`segments=` CSV, else `segments.csv` beside
      the videos; `fps=`, default 2)
    Other keyword arguments go to the source's constructor (e.g. `source=` to rename it); `segments`
    and `fps` are used only for videos.
    """
    path = Path(spec)
    if not path.exists():
        raise DataError(f"{spec}: no such file or folder")
    # video-only options, so one call site can pass them whatever the spec turns out to be
    segments, fps = kw.pop("segments", None), kw.pop("fps", 2.0)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".csv":
            return ManifestSource(path, **kw)
        if suffix == ".parquet":
            return ParquetSource(path, **kw)
        if suffix in VIDEO_SUFFIXES:
            return VideoSource(path, segments, fps=fps, **kw)
        raise DataError(f"{spec}: not a data source (expected .csv, .parquet or a video file, "
                        f"or a folder of them)")
    if label_folders(path):
        return FolderSource(path, **kw)
    if (path / "manifest.csv").is_file() and segments is None:
        return ManifestSource(path / "manifest.csv", **kw)
    if next(path.rglob("*.parquet"), None) is not None:
        return ParquetSource(path, **kw)
    if any(p.suffix.lower() in VIDEO_SUFFIXES for p in path.rglob("*")):
        return VideoSource(path, segments, fps=fps, **kw)
    raise DataError(f"{spec}: no roadwork/ and none/ sub-folders, manifest.csv, .parquet or video files")
