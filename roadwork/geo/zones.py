"""Work zones as GeoJSON and an offline map page.

Features (`properties.kind`):
  zone   LineString along a video's track from a work zone's entry to its exit, or a Point for a
         photo labelled roadwork; start/end time, peak and mean probability, the frames' paths
  track  LineString of a video's whole GPS track (drawn grey on the map)
  photo  Point for a geotagged photo without roadwork
Coordinates are GeoJSON's [lon, lat]. OUT/zones.geojson and OUT/map.html (roadwork.geo.mappage).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from roadwork.geo.track import Track, photo_position, read_track, video_clock
from roadwork.data.video import fmt_time


class GeoCollector:
    """Gathers predictions with positions; `write(out)` makes zones.geojson and map.html."""

    def __init__(self, track: str | Path | None = None, offset_s: float = 0.0, tile_url: str | None = None):
        self.track: Track | None = read_track(track) if track else None
        self.offset_s, self.tile_url = offset_s, tile_url
        self.features: list[dict] = []

    def add_image(self, path: str | Path, prob: float, label: int) -> None:
        pos = photo_position(path)
        if pos is None:
            return
        lat, lon, ts = pos
        kind = "zone" if label else "photo"
        self.features.append(_feature("Point", [round(lon, 7), round(lat, 7)], kind=kind, source=str(path),
                                      start_time=_iso(ts), end_time=_iso(ts), peak_prob=round(prob, 6),
                                      mean_prob=round(prob, 6), frames=[str(path)]))

    def add_video(self, path: str | Path, times: Sequence[float], probs: Sequence[float],
                  intervals: Sequence[tuple[float, float]]) -> None:
        track = self.track
        beside = Path(path).with_suffix(".gpx")
        if track is None and beside.is_file():  # a GPX of the same name beside the video
            track = read_track(beside)
        if track is None:
            return
        clock = video_clock(track, path, self.offset_s)
        times_a, probs_a = np.asarray(times, float), np.asarray(probs, float)
        whole = [p for t in times_a for p in [track.at(clock(t))] if p is not None]
        if len(whole) >= 2:
            self.features.append(_feature("LineString", _coords(whole), kind="track", source=str(path)))
        for s, e in intervals:
            pts = track.span(clock(s), clock(e))
            if not pts:
                continue
            inside = (times_a >= s) & (times_a < e)
            p = probs_a[inside] if inside.any() else probs_a[:0]
            geom = ("LineString", _coords(pts)) if len(pts) >= 2 else ("Point", _coords(pts)[0])
            self.features.append(_feature(
                *geom, kind="zone", source=str(path), start_s=round(s, 3), end_s=round(e, 3),
                start_time=_iso(clock(s)) if track.absolute else None,
                end_time=_iso(clock(e)) if track.absolute else None,
                peak_prob=round(float(p.max()), 6) if p.size else None,
                mean_prob=round(float(p.mean()), 6) if p.size else None,
                frames=[f"{path}#t={fmt_time(t)}s" for t in times_a[inside]]))

    def geojson(self) -> dict:
        return {"type": "FeatureCollection", "features": self.features}

    def write(self, out: str | Path) -> Path | None:
        """OUT/zones.geojson + OUT/map.html; None (nothing written) when no input had a position."""
        if not self.features:
            return None
        from roadwork.geo.mappage import map_html

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        data = self.geojson()
        (out / "zones.geojson").write_text(json.dumps(data, indent=1))
        (out / "map.html").write_text(map_html(data, self.tile_url), encoding="utf-8")
        return out / "zones.geojson"


def _feature(geometry: str, coords, **props) -> dict:
    return {"type": "Feature", "geometry": {"type": geometry, "coordinates": coords},
            "properties": {k: v for k, v in props.items() if v is not None}}


def _coords(pts) -> list[list[float]]:
    return [[round(lon, 7), round(lat, 7)] for lat, lon in pts]


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")
