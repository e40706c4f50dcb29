"""GPS in `roadwork predict --out`: a short video made here with a matching GPX track (gpxpy
writes it), and photos carrying EXIF GPS written with Pillow; the GeoJSON and the offline map."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image
from typer.testing import CliRunner

from roadwork.cli import app
from roadwork.geo import GeoCollector, photo_position, read_track
from roadwork.geo.mappage import map_html

START = datetime(2026, 5, 4, 9, 30, tzinfo=timezone.utc)
runner = CliRunner()


def _video(path: Path, seconds: int = 4, rate: int = 8) -> Path:
    import av

    with av.open(str(path), "w") as c:
        c.metadata["creation_time"] = START.strftime("%Y-%m-%dT%H:%M:%S.000000Z")
        s = c.add_stream("mpeg4", rate=rate)
        s.width, s.height, s.pix_fmt = 48, 32, "yuv420p"
        for i in range(seconds * rate):
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.full((32, 48, 3), 7 * i % 256, np.uint8), format="rgb24")))
        c.mux(s.encode())
    return path


def _gpx(path: Path, n: int = 6) -> Path:
    """A drive north along a meridian, one point a second from the video's start."""
    import gpxpy.gpx

    gpx = gpxpy.gpx.GPX()
    seg = gpxpy.gpx.GPXTrackSegment()
    for i in range(n):
        seg.points.append(gpxpy.gpx.GPXTrackPoint(52.5 + 0.0001 * i, 13.4, time=START + timedelta(seconds=i)))
    trk = gpxpy.gpx.GPXTrack()
    trk.segments.append(seg)
    gpx.tracks.append(trk)
    path.write_text(gpx.to_xml())
    return path


def _photo(path: Path, lat: float, lon: float) -> Path:
    exif = Image.Exif()
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef], gps[ExifTags.GPS.GPSLatitude] = ("S" if lat < 0 else "N"), _dms(abs(lat))
    gps[ExifTags.GPS.GPSLongitudeRef], gps[ExifTags.GPS.GPSLongitude] = ("W" if lon < 0 else "E"), _dms(abs(lon))
    exif[ExifTags.Base.DateTime] = "2026:05:04 09:31:00"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(path, exif=exif)
    return path


def _dms(v: float):
    d = int(v)
    m = int((v - d) * 60)
    return (float(d), float(m), round((v - d - m / 60) * 3600, 4))




def test_exif_gps_round_trips(tmp_path):
    lat, lon, ts = photo_position(_photo(tmp_path / "a.jpg", -33.8688, 151.2093))
    assert lat == pytest.approx(-33.8688, abs=1e-5) and lon == pytest.approx(151.2093, abs=1e-5)
    assert ts == datetime(2026, 5, 4, 9, 31, tzinfo=timezone.utc).timestamp()
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.jpg")
    assert photo_position(tmp_path / "plain.jpg") is None


def test_zone_follows_the_gpx_track_by_time(tmp_path):
    video = _video(tmp_path / "drive.mp4")
    geo = GeoCollector(_gpx(tmp_path / "track.gpx"), offset_s=0.0)
    times = [0.5 * k for k in range(8)]
    probs = [0.1, 0.1, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1]  # a zone from 1.0 s to 2.5 s
    geo.add_video(video, times, probs, [(1.0, 2.5)])
    zone = next(f for f in geo.features if f["properties"]["kind"] == "zone")
    lats = [c[1] for c in zone["geometry"]["coordinates"]]
    assert zone["geometry"]["type"] == "LineString"
    assert lats[0] == pytest.approx(52.5001, abs=1e-6) and lats[-1] == pytest.approx(52.50025, abs=1e-6)
    p = zone["properties"]
    assert p["start_time"] == "2026-05-04T09:30:01+00:00" and p["peak_prob"] == 0.9 and p["mean_prob"] == 0.9
    assert p["frames"] == [f"{video}#t=1s", f"{video}#t=1.5s", f"{video}#t=2s"]
    shifted = GeoCollector(tmp_path / "track.gpx", offset_s=2.0)  # the camera clock 2 s behind the GPS
    shifted.add_video(video, times, probs, [(1.0, 2.5)])
    z2 = next(f for f in shifted.features if f["properties"]["kind"] == "zone")
    assert z2["geometry"]["coordinates"][0][1] == pytest.approx(52.5003, abs=1e-6)


def test_csv_track_and_bad_tracks(tmp_path):
    (tmp_path / "t.csv").write_text("time_s,lat,lon\n0,10,20\n2,10.002,20\n")
    assert read_track(tmp_path / "t.csv").at(1.0) == pytest.approx((10.001, 20.0))
    (tmp_path / "bad.csv").write_text("t,x\n1,2\n")
    from roadwork.geo import GeoError

    with pytest.raises(GeoError, match="time_s,lat,lon"):
        read_track(tmp_path / "bad.csv")
    (tmp_path / "bad.gpx").write_text("<gpx><oops")
    with pytest.raises(GeoError, match="bad.gpx"):
        read_track(tmp_path / "bad.gpx")


def test_predict_out_writes_geojson_and_an_offline_map(tiny_vit_dir, tmp_path):
    data = tmp_path / "in"
    data.mkdir()
    video = _video(data / "drive.mp4")
    _gpx(data / "drive.gpx")  # beside the video, same name: used without --gpx
    _photo(data / "p1.jpg", 52.5002, 13.4003)
    out = tmp_path / "out"
    res = runner.invoke(app, ["predict", str(data), "--model", str(tiny_vit_dir), "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    fc = json.loads((out / "zones.geojson").read_text())
    kinds = sorted(f["properties"]["kind"] for f in fc["features"])
    assert "track" in kinds and len([k for k in kinds if k in ("zone", "photo")]) >= 1
    track = next(f for f in fc["features"] if f["properties"]["kind"] == "track")
    assert track["properties"]["source"] == str(video) and len(track["geometry"]["coordinates"]) == 8
    page = (out / "map.html").read_text()
    assert "<svg" in page and "<polyline" in page and "http" not in page.replace("http://www.w3.org/2000/svg", "")
    bad = runner.invoke(app, ["predict", str(data), "--model", str(tiny_vit_dir), "--out", str(out),
                              "--gpx", str(tmp_path / "missing.gpx")])
    assert bad.exit_code == 2 and "missing.gpx" in bad.output


def test_map_escapes_text_and_uses_tiles_only_when_configured(tmp_path):
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [13.4, 52.5]},
         "properties": {"kind": "zone", "source": "<script>alert(1)</script>.jpg", "peak_prob": 0.9,
                        "mean_prob": 0.9, "frames": ["x"]}}]}
    page = map_html(fc)
    assert "<script>" not in page and "&lt;script&gt;" in page and "<image" not in page
    tiled = map_html(fc, "https://tiles.example/{z}/{x}/{y}.png")
    assert "<image" in tiled and "tiles.example/" in tiled


def test_label_gpx_puts_the_drive_and_its_zones_on_the_map(tiny_vit_dir, tmp_path):
    """`roadwork label --gpx` through the real label path: every frame 'on' (enter 0) makes one zone
    spanning the video, placed along the track by the frames' times; bad tracks are one line, exit 2."""
    video = _video(tmp_path / "drive.mp4", seconds=3, rate=4)
    gpx = _gpx(tmp_path / "track.gpx")
    conf = tmp_path / "c.yaml"
    conf.write_text("sequence: {enter: 0.0, exit: 0.0, min_duration_s: 0.0}\n")
    base = ["label", str(video), "--model", str(tiny_vit_dir), "--config", str(conf), "--local", "--fps", "2"]
    res = runner.invoke(app, [*base, "--out", str(tmp_path / "out"), "--gpx", str(gpx)])
    assert res.exit_code == 0, res.output
    assert "1 work zone(s)" in res.output
    fc = json.loads((tmp_path / "out" / "zones.geojson").read_text())
    zone = next(f for f in fc["features"] if f["properties"]["kind"] == "zone")
    assert zone["properties"]["start_time"] == "2026-05-04T09:30:00+00:00"
    assert zone["properties"]["end_time"] == "2026-05-04T09:30:03+00:00"  # one frame after the last (2.5 s)
    lats = [c[1] for c in zone["geometry"]["coordinates"]]
    assert lats[0] == pytest.approx(52.5) and lats[-1] == pytest.approx(52.5003)
    assert len(zone["properties"]["frames"]) == 6
    assert "<polyline" in (tmp_path / "out" / "map.html").read_text()

    (tmp_path / "bad.gpx").write_text("not xml at all")
    empty = tmp_path / "empty.gpx"
    empty.write_text('<?xml version="1.0"?><gpx version="1.1" creator="t"><trk><trkseg></trkseg></trk></gpx>')
    late = tmp_path / "late.gpx"
    _gpx(late)
    late.write_text(late.read_text().replace("2026-05-04", "2026-06-04"))  # a month after the drive
    for track, words in [(tmp_path / "bad.gpx", "not a readable GPX"), (empty, "no timed track points"),
                         (late, "no labelled video frame falls inside")]:
        res = runner.invoke(app, [*base, "--out", str(tmp_path / track.stem), "--gpx", str(track)])
        assert res.exit_code == 2 and words in res.output and len(res.output.strip().splitlines()) == 1, res.output
        assert "Traceback" not in res.output


def test_label_puts_geotagged_photos_on_the_map(tiny_vit_dir, tmp_path):
    """`roadwork label` on photos: each photo's EXIF GPS (JPEG, and a PNG's eXIf chunk) becomes a Point
    at its coordinates, a zone when labelled roadwork, else a photo; one without GPS is left off, and
    a run where nothing has a position writes no map."""
    from roadwork.label import read_labels

    data = tmp_path / "in"
    data.mkdir()
    where = {"a.jpg": (52.5002, 13.4003), "b.png": (-33.8688, 151.2093)}
    for name, (lat, lon) in where.items():
        _photo(data / name, lat, lon)
    Image.new("RGB", (40, 30), (90, 90, 90)).save(data / "plain.jpg")
    out = tmp_path / "out"
    res = runner.invoke(app, ["label", str(data), "--model", str(tiny_vit_dir), "--local", "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = {Path(r["path"]).name: r for r in read_labels(out).to_pylist()}
    assert sorted(rows) == ["a.jpg", "b.png", "plain.jpg"] and all(r["error"] is None for r in rows.values())
    fc = json.loads((out / "zones.geojson").read_text())
    points = {Path(f["properties"]["source"]).name: f for f in fc["features"]}
    assert sorted(points) == ["a.jpg", "b.png"]  # plain.jpg has no GPS
    for name, (lat, lon) in where.items():
        f, row = points[name], rows[name]
        assert f["geometry"]["type"] == "Point"
        assert f["geometry"]["coordinates"] == pytest.approx([lon, lat], abs=1e-5)
        assert f["properties"]["kind"] == ("zone" if row["label"] else "photo")
        assert f["properties"]["peak_prob"] == pytest.approx(row["prob"], abs=1e-6)
        assert f["properties"]["start_time"] == "2026-05-04T09:31:00+00:00"
    zones = sum(f["properties"]["kind"] == "zone" for f in fc["features"])
    assert f"{zones} work zone(s)" in res.output
    assert json.loads((out / "summary.json").read_text())["zones"] == zones
    page = (out / "map.html").read_text()
    assert page.count("<circle") == 2 and "<image" not in page  # no --tiles: no base map

    res = runner.invoke(app, ["label", str(data / "plain.jpg"), "--model", str(tiny_vit_dir), "--local",
                              "--out", str(tmp_path / "plain")])
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "plain" / "zones.geojson").exists() and "zone" not in res.output
    assert "zones" not in json.loads((tmp_path / "plain" / "summary.json").read_text())


def test_label_tiles_put_a_base_map_under_the_zones(tiny_vit_dir, tmp_path):
    """`label --tiles URL` (or the config's label.tiles) draws base-map tiles in map.html, as predict's does."""
    _photo(tmp_path / "a.jpg", 52.5002, 13.4003)
    conf = tmp_path / "c.yaml"
    conf.write_text("label: {tiles: 'https://conf.example/{z}/{x}/{y}.png'}\n")
    base = ["label", str(tmp_path / "a.jpg"), "--model", str(tiny_vit_dir), "--local"]
    for extra, host in [(["--tiles", "https://tiles.example/{z}/{x}/{y}.png"], "tiles.example"),
                        (["--config", str(conf)], "conf.example")]:
        out = tmp_path / host
        res = runner.invoke(app, [*base, *extra, "--out", str(out)])
        assert res.exit_code == 0, res.output
        page = (out / "map.html").read_text()
        assert f'<image href="https://{host}/' in page and f"Base map: https://{host}/" in page
