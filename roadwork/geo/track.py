"""GPS for images and videos: a track (seconds -> lat, lon) from a GPX file (gpxpy) or a CSV
`time_s,lat,lon`, and a photo's own position from its EXIF GPS block (Pillow).

A GPX track has wall-clock times; a video's frames have seconds from its start. The frame at t
sits at GPX time `video start + t + offset`, the video start being its container's
`creation_time` when it has one, else the track's first point. A CSV's `time_s` are seconds from
the video's start already (plus the offset). Positions between points are interpolated linearly;
a frame outside the track's time span has no position.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image


class GeoError(ValueError):
    """A track or photo position that cannot be read (the message names the file)."""


@dataclass
class Track:
    t: np.ndarray  # seconds: since the epoch (GPX) or since the video's start (CSV)
    lat: np.ndarray
    lon: np.ndarray
    absolute: bool  # True when `t` are wall-clock seconds

    def at(self, t: float) -> tuple[float, float] | None:
        if not len(self.t) or t < self.t[0] - 1e-6 or t > self.t[-1] + 1e-6:
            return None
        return float(np.interp(t, self.t, self.lat)), float(np.interp(t, self.t, self.lon))

    def span(self, t0: float, t1: float) -> list[tuple[float, float]]:
        """Points of the track from t0 to t1 (the interpolated ends plus every point between)."""
        inside = [(float(a), float(b)) for ti, a, b in zip(self.t, self.lat, self.lon) if t0 < ti < t1]
        ends = [self.at(t0), *inside, self.at(t1)]
        return [p for p in ends if p is not None]


def read_track(path: str | Path) -> Track:
    path = Path(path)
    if not path.is_file():
        raise GeoError(f"{path}: no such GPS track")
    return _read_csv(path) if path.suffix.lower() == ".csv" else _read_gpx(path)


def _read_gpx(path: Path) -> Track:
    import gpxpy

    try:
        gpx = gpxpy.parse(path.read_text(encoding="utf-8"))
    except (gpxpy.gpx.GPXException, ValueError, UnicodeDecodeError) as e:
        raise GeoError(f"{path}: not a readable GPX file ({e})") from None
    pts = [p for trk in gpx.tracks for seg in trk.segments for p in seg.points] or \
          [p for r in gpx.routes for p in r.points]
    pts = [p for p in pts if p.time is not None]
    if len(pts) < 1:
        raise GeoError(f"{path}: no timed track points")
    pts.sort(key=lambda p: p.time)
    t = np.array([_utc(p.time).timestamp() for p in pts])
    return Track(t, np.array([p.latitude for p in pts]), np.array([p.longitude for p in pts]), absolute=True)


def _read_csv(path: Path) -> Track:
    rows = []
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not {"time_s", "lat", "lon"} <= set(reader.fieldnames or []):
            raise GeoError(f"{path}: line 1: need columns time_s,lat,lon")
        for row in reader:
            try:
                t, la, lo = float(row["time_s"]), float(row["lat"]), float(row["lon"])
            except (TypeError, ValueError):
                raise GeoError(f"{path}: line {reader.line_num}: time_s, lat, lon must be numbers") from None
            if not (-90 <= la <= 90 and -180 <= lo <= 180):
                raise GeoError(f"{path}: line {reader.line_num}: lat/lon out of range")
            rows.append((t, la, lo))
    if not rows:
        raise GeoError(f"{path}: no rows")
    a = np.array(sorted(rows))
    return Track(a[:, 0], a[:, 1], a[:, 2], absolute=False)


def video_start(path: str | Path) -> float | None:
    """The video's `creation_time` (epoch seconds) from its container metadata, if it has one."""
    import av

    try:
        with av.open(str(path)) as c:
            stamp = c.metadata.get("creation_time") or c.streams.video[0].metadata.get("creation_time")
    except (av.error.FFmpegError, OSError, IndexError):
        return None
    if not stamp:
        return None
    try:
        return _utc(datetime.fromisoformat(stamp.replace("Z", "+00:00"))).timestamp()
    except ValueError:
        return None


def video_clock(track: Track, video: str | Path, offset_s: float = 0.0):
    """frame time (s from the video's start) -> track time."""
    if not track.absolute:
        return lambda t: t + offset_s
    start = video_start(video)
    base = (start if start is not None else float(track.t[0])) + offset_s
    return lambda t: base + t


def photo_position(path: str | Path) -> tuple[float, float, float | None] | None:
    """(lat, lon, epoch seconds or None) from a photo's EXIF GPS block; None when it has none."""
    try:
        with Image.open(path) as im:
            # Pillow decodes a whole PNG to look for an eXIf chunk after the pixels; `label` asks this
            # of every image, so only a chunk before them (where cameras and Pillow write it) counts
            if im.format == "PNG" and "exif" not in im.info:
                return None
            exif = im.getexif()
    except OSError:
        return None
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    tags = {ExifTags.GPSTAGS.get(k, k): v for k, v in gps.items()}
    try:
        lat = _degrees(tags["GPSLatitude"]) * (-1 if str(tags.get("GPSLatitudeRef", "N")).upper().startswith("S") else 1)
        lon = _degrees(tags["GPSLongitude"]) * (-1 if str(tags.get("GPSLongitudeRef", "E")).upper().startswith("W") else 1)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    when = exif.get_ifd(ExifTags.IFD.Exif).get(ExifTags.Base.DateTimeOriginal) or exif.get(ExifTags.Base.DateTime)
    try:
        ts = datetime.strptime(str(when), "%Y:%m:%d %H:%M:%S").replace(tzinfo=timezone.utc).timestamp() if when else None
    except ValueError:
        ts = None
    return lat, lon, ts


def _degrees(dms) -> float:
    d, m, s = (float(x) for x in dms)
    return d + m / 60.0 + s / 3600.0


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)
