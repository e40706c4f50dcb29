"""Video files sampled at a chosen fps (PyAV), labelled by a segments CSV `clip,start_s,end_s,label`.

The frame "at time t" is the one on screen at t: the last frame whose timestamp is <= t (times are
relative to the stream's start). Segments are half-open [start_s, end_s), matching how the shared
manifest's 2-fps frames were cut (detroit 0-2 roadwork, 2-6 none: the frame at 2.0 s is "none").
Frames outside every segment, or inside segments that disagree, are ambiguous and skipped.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from roadwork.data.records import DataError, Record, Sample, Source, parse_label
from roadwork.decode import MAX_PIXELS, VIDEO_SUFFIXES, ImageError

log = logging.getLogger("roadwork.data")

EPS = 1e-3  # seconds; absorbs rounding in pts * time_base so 0.5 s hits the frame stamped 0.5 s


def _av():
    # PyAV is imported on first use: image-only machines (a GPU box without it) still import roadwork.data.
    import av

    return av


def _video_errors() -> tuple[type[BaseException], ...]:
    return (_av().error.FFmpegError, OSError, IndexError, ValueError)  # IndexError: no video stream


def _start(stream) -> float:
    return float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0


def _to_image(frame, path: str) -> Image.Image:
    if frame.width * frame.height > MAX_PIXELS:
        raise ImageError(path, f"{frame.width}x{frame.height} frame is over the {MAX_PIXELS}-pixel limit")
    return frame.to_image()


def iter_video_frames(path: str | Path, fps: float) -> Iterator[tuple[float, Image.Image]]:
    """(t_seconds, RGB frame) at t = 0, 1/fps, 2/fps, ... until the end of the video.

    Decodes the stream once, front to back. A file that cannot be opened or decoded raises
    `ImageError` naming it (possibly after some frames were already yielded).
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    path = str(path)
    try:
        with _av().open(path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            start, k, prev, prev_t = _start(stream), 0, None, 0.0
            for frame in container.decode(stream):
                if frame.time is None:
                    continue
                t = frame.time - start
                while prev is not None and k / fps < t - EPS:  # frame k/fps was on screen before this one
                    yield k / fps, _to_image(prev, path)
                    k += 1
                prev, prev_t = frame, t
            if prev is None:
                raise ImageError(path, "no decodable video frames")
            end = prev_t + _frame_duration(stream)
            while k / fps < end - EPS:
                yield k / fps, _to_image(prev, path)
                k += 1
    except ImageError:
        raise
    except _video_errors() as e:
        raise ImageError(path, f"unreadable video ({type(e).__name__}: {e})") from None


def _frame_duration(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate
    return float(1 / rate) if rate else 0.0


def video_duration(path: str | Path) -> float:
    """Seconds of video from the container's metadata (no decoding); ImageError if it has none."""
    path = str(path)
    try:
        with _av().open(path) as container:
            stream = container.streams.video[0]
            if stream.duration:
                return float(stream.duration * stream.time_base)
            if stream.frames and stream.average_rate:
                return float(stream.frames / stream.average_rate)
            if container.duration:
                return container.duration / _av().time_base
    except _video_errors() as e:
        raise ImageError(path, f"unreadable video ({type(e).__name__}: {e})") from None
    raise ImageError(path, "video has no duration in its metadata")


def read_frame_at(path: str | Path, t: float) -> Image.Image:
    """The frame on screen at `t` seconds, by seeking to the keyframe before it and decoding forward."""
    path = str(path)
    try:
        with _av().open(path) as container:
            stream = container.streams.video[0]
            start = _start(stream)
            container.seek(int((t + start) / stream.time_base), stream=stream, backward=True, any_frame=False)
            chosen = None
            for frame in container.decode(stream):
                if frame.time is None:
                    continue
                if frame.time - start > t + EPS:
                    if chosen is None:  # seek landed past t (t before the first frame)
                        chosen = frame
                    break
                chosen = frame
            if chosen is None:
                raise ImageError(f"{path}#t={fmt_time(t)}s", "no frame at this time")
            return _to_image(chosen, f"{path}#t={fmt_time(t)}s")
    except ImageError:
        raise
    except _video_errors() as e:
        raise ImageError(f"{path}#t={fmt_time(t)}s", f"unreadable video ({type(e).__name__}: {e})") from None


def fmt_time(t: float) -> str:
    return f"{t:.3f}".rstrip("0").rstrip(".")


@dataclass
class VideoFrameRecord(Record):
    video: str = ""
    t: float = 0.0

    def load(self) -> Image.Image:
        return read_frame_at(self.video, self.t)


Segments = dict[str, list[tuple[float, float, int]]]


def read_segments(csv_path: str | Path) -> Segments:
    """clip -> [(start_s, end_s, label)]; bad rows raise DataError naming the file and line."""
    csv_path = Path(csv_path)
    segments: Segments = {}
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            missing = [c for c in ("clip", "start_s", "end_s", "label") if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{csv_path}: line 1: missing column(s) {', '.join(missing)}")
            for row in reader:
                where = f"{csv_path}: line {reader.line_num}"
                try:
                    start, end = float(row["start_s"]), float(row["end_s"])
                except (TypeError, ValueError):
                    raise DataError(f"{where}: start_s/end_s must be numbers, got "
                                    f"{row['start_s']!r}, {row['end_s']!r}") from None
                if not 0 <= start < end:
                    raise DataError(f"{where}: need 0 <= start_s < end_s, got {start}, {end}")
                clip = (row["clip"] or "").strip()
                if not clip:
                    raise DataError(f"{where}: empty clip name")
                segments.setdefault(clip, []).append((start, end, parse_label(row["label"], where)))
    except FileNotFoundError:
        raise DataError(f"{csv_path}: segments CSV not found") from None
    return segments


def label_at(segments: list[tuple[float, float, int]], t: float) -> int | None:
    """The label of the segments covering t, or None when none covers it or they disagree."""
    labels = {label for start, end, label in segments if start - EPS <= t < end - EPS}
    return labels.pop() if len(labels) == 1 else None


class VideoSource(Source):
    """Frames of one video or a folder of videos (recursive), at `fps`, labelled by `segments_csv`.

    clip = the video's file stem; group = clip; source = `source` or the folder's name. With
    `segments_csv=None` a `segments.csv` in the folder (or its parent) is used. `records()` takes
    timestamps from the container's metadata (no decoding); iteration decodes each video once.
    """

    def __init__(self, path: str | Path, segments_csv: str | Path | None = None, fps: float = 2.0,
                 source: str | None = None):
        super().__init__()
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.root = Path(path).absolute()
        self.fps = fps
        self.name = source or (self.root.name if self.root.is_dir() else self.root.parent.name)
        self.segments_csv = Path(segments_csv) if segments_csv is not None else self._find_segments()
        self.segments = read_segments(self.segments_csv)
        self.ambiguous = 0  # sampled frames outside every segment (or in disagreeing ones)

    def _find_segments(self) -> Path:
        folder = self.root if self.root.is_dir() else self.root.parent
        for candidate in (folder / "segments.csv", folder.parent / "segments.csv"):
            if candidate.is_file():
                return candidate
        raise DataError(f"{self.root}: no segments CSV given and no segments.csv beside the videos")

    def videos(self) -> list[Path]:
        if self.root.is_file():
            return [self.root]
        videos = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
        if not videos:
            raise DataError(f"{self.root}: no video files ({', '.join(sorted(VIDEO_SUFFIXES))})")
        return videos

    def _labelled_videos(self) -> list[tuple[Path, list[tuple[float, float, int]]]]:
        videos = self.videos()
        stems = {v.stem for v in videos}
        for clip in sorted(set(self.segments) - stems):
            log.warning("%s: clip %r has segments but no video under %s", self.segments_csv, clip, self.root)
        out = []
        for video in videos:
            if video.stem not in self.segments:
                log.warning("%s: no segments for clip %r in %s; all its frames are ambiguous",
                            video, video.stem, self.segments_csv)
                continue
            out.append((video, self.segments[video.stem]))
        return out

    def _scan(self) -> list[Record]:
        self.ambiguous = 0
        records: list[Record] = []
        for video, segs in self._labelled_videos():
            try:
                duration = video_duration(video)
            except ImageError as e:
                self.report(str(video), e.reason)
                continue
            k = 0
            while k / self.fps < duration - EPS:
                t = k / self.fps
                k += 1
                label = label_at(segs, t)
                if label is None:
                    self.ambiguous += 1
                    continue
                records.append(VideoFrameRecord(f"{video}#t={fmt_time(t)}s", label, video.stem, self.name,
                                                video=str(video), t=t))
        return records

    def __iter__(self) -> Iterator[Sample]:
        wanted = {r.video for r in self.records()}  # videos that failed at scan time are already reported
        for video, segs in self._labelled_videos():
            if str(video) not in wanted:
                continue
            try:
                for t, image in iter_video_frames(video, self.fps):
                    label = label_at(segs, t)
                    if label is not None:
                        yield Sample(image, label, video.stem, self.name, f"{video}#t={fmt_time(t)}s")
            except ImageError as e:
                self.report(str(video), e.reason)
