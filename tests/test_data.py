"""Data sources on small files made here: labels, groups, sources, counts, bad files reported, splits."""

from __future__ import annotations

import io
import logging
import pickle
import struct
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import SHARED, requires_shared_data
from roadwork.data import (DataError, FolderSource, ManifestSource, ParquetSource, Record, VideoSource,
                           group_kfold, group_split, iter_video_frames, leave_sources_out, open_source,
                           read_frame_at, summarize)
from roadwork.decode import ImageError


def img_bytes(value: int, fmt: str = "JPEG", size=(32, 24)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (value, value, value)).save(buf, fmt)
    return buf.getvalue()


def noisy_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def bomb_png(width: int = 9000, height: int = 9000) -> bytes:
    """A real, complete 1-bit PNG of width x height (81 Mpx) in about 10 KB."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = (b"\x00" * (1 + (width + 7) // 8)) * height
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


# Bad files of every kind, with a word their reported reason must contain.
BAD_FILES = {
    "zero.jpg": (b"", "empty"),
    "truncated.jpg": (noisy_jpeg()[:400], "truncated"),
    "text.jpg": (b"this is a text file, not a photo\n", "not an image"),
    "bomb.png": (bomb_png(), "bomb"),
}


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def assert_reported(errors: list[tuple[str, str]], expected: dict[str, str]) -> None:
    """Each expected file name appears once in `errors`, with its reason."""
    by_name = {Path(p.split("#")[0]).name: r for p, r in errors}
    assert len(errors) == len(expected), errors
    for name, word in expected.items():
        assert word in by_name[name], (name, by_name.get(name))


# --- manifest ---------------------------------------------------------------------------------

@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    write(root / "clipA" / "a1.jpg", img_bytes(200))
    write(root / "clipA" / "a2.png", img_bytes(210, "PNG"))
    write(root / "clipB" / "b1.jpg", img_bytes(20))
    write(root / "top.jpg", img_bytes(30))
    for name, (data, _) in BAD_FILES.items():
        write(root / "bad" / name, data)
    rows = ["path,label,group,license",
            "clipA/a1.jpg,1,,CC0", "clipA/a2.png,1,,CC0", "clipB/b1.jpg,0,seq7,CC0", "top.jpg,0,,CC0",
            *[f"bad/{n},0,,CC0" for n in BAD_FILES], "bad/missing.jpg,1,,CC0"]
    csv = root / "train.csv"
    csv.write_text("\n".join(rows) + "\n")
    return csv


def test_manifest_records_and_defaults(manifest: Path):
    src = ManifestSource(manifest)
    recs = src.records()
    assert len(src) == len(recs) == 9
    a1 = recs[0]
    assert (a1.path, a1.label, a1.group, a1.source) == (str(manifest.parent / "clipA/a1.jpg"), 1, "clipA", "train")
    assert recs[2].group == "seq7"  # explicit group column wins
    assert recs[3].group == "train"  # a file beside the CSV: no parent folder, the CSV's stem
    assert [r.label for r in recs] == [1, 1, 0, 0, 0, 0, 0, 0, 1]


def test_manifest_iteration_reports_every_bad_file(manifest: Path, caplog):
    src = ManifestSource(manifest, source="mine")
    with caplog.at_level(logging.WARNING, logger="roadwork.data"):
        samples = list(src)
    assert [(Path(s.path).name, s.label, s.group, s.source) for s in samples] == [
        ("a1.jpg", 1, "clipA", "mine"), ("a2.png", 1, "clipA", "mine"),
        ("b1.jpg", 0, "seq7", "mine"), ("top.jpg", 0, "mine", "mine")]
    assert all(s.image.mode == "RGB" and s.image.size == (32, 24) for s in samples)
    assert samples[0].image.getpixel((5, 5))[0] > 190 and samples[2].image.getpixel((5, 5))[0] < 40
    assert_reported(src.errors, {**{n: w for n, (_, w) in BAD_FILES.items()}, "missing.jpg": "not found"})
    assert "missing.jpg" in caplog.text and "truncated.jpg" in caplog.text


@pytest.mark.parametrize("text, message", [
    ("file,label\na.jpg,1\n", "line 1: missing column(s) path"),
    ("path,group\na.jpg,g\n", "line 1: missing column(s) label"),
    ("path,label\na.jpg,1\nb.jpg,2\n", "line 3: label must be 0 or 1, got '2'"),
    ("path,label\na.jpg,1\nb.jpg,roadwork\n", "line 3: label must be 0 or 1"),
    ("path,label\na.jpg,1\n,0\n", "line 3: empty path"),
    ("path,label\n", "no rows"),
    ("", "missing column(s) path, label"),
])
def test_manifest_validation_names_file_and_line(tmp_path: Path, text: str, message: str):
    csv = tmp_path / "m.csv"
    csv.write_text(text)
    with pytest.raises(DataError) as e:
        ManifestSource(csv).records()
    assert str(e.value).startswith(str(csv)) and message in str(e.value)


def test_manifest_with_bom_and_float_labels(tmp_path: Path):
    write(tmp_path / "x.jpg", img_bytes(5))
    (tmp_path / "m.csv").write_text("\ufeffpath,label,source\nx.jpg,1.0,cams\n", encoding="utf-8")
    (rec,) = ManifestSource(tmp_path / "m.csv").records()
    assert (rec.label, rec.source) == (1, "cams")


# --- folder -----------------------------------------------------------------------------------

def test_folder_source(tmp_path: Path, caplog):
    root = tmp_path / "street"
    write(root / "Roadwork" / "clip1" / "f1.jpg", img_bytes(200))
    write(root / "Roadwork" / "clip1" / "sub" / "f2.jpg", img_bytes(201))
    write(root / "Roadwork" / "solo.png", img_bytes(202, "PNG"))
    write(root / "0" / "clip1" / "f3.jpg", img_bytes(10))  # same clip, other label: same group
    write(root / "0" / "other.jpg", img_bytes(11))
    write(root / "0" / "truncated.jpg", BAD_FILES["truncated.jpg"][0])
    write(root / "0" / "notes.txt", b"taken on a rainy day")
    write(root / "0" / ".DS_Store", b"\x00\x00")
    write(root / "misc" / "ignored.jpg", img_bytes(0))  # not a label folder
    src = open_source(root)
    assert isinstance(src, FolderSource)
    with caplog.at_level(logging.WARNING, logger="roadwork.data"):
        recs = src.records()
    got = sorted((Path(r.path).name, r.label, r.group, r.source) for r in recs)
    assert got == [("f1.jpg", 1, "clip1", "street"), ("f2.jpg", 1, "clip1", "street"),
                   ("f3.jpg", 0, "clip1", "street"), ("other.jpg", 0, "other", "street"),
                   ("solo.png", 1, "solo", "street"), ("truncated.jpg", 0, "truncated", "street")]
    assert_reported(src.errors, {"notes.txt": "not an image file"})  # at scan time, .DS_Store silently not
    assert "notes.txt" in caplog.text
    samples = list(src)
    assert len(samples) == 5
    assert_reported(src.errors, {"notes.txt": "not an image file", "truncated.jpg": "truncated"})


def test_folder_without_label_folders(tmp_path: Path):
    write(tmp_path / "pics" / "a.jpg", img_bytes(1))
    with pytest.raises(DataError, match="no roadwork/ or none/"):
        FolderSource(tmp_path / "pics").records()


# --- parquet ----------------------------------------------------------------------------------

@pytest.fixture
def shards(tmp_path: Path) -> Path:
    """Two shards like the Hub data set: raw-bytes images, and {"bytes", "path"} structs."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "hub"
    root.mkdir()
    import base64
    pq.write_table(pa.table({
        "image": pa.array([img_bytes(200), img_bytes(10), img_bytes(20), b"\x00garbage",
                           base64.b64encode(img_bytes(30))], pa.binary()),
        "label": [1, 0, 0, 0, 0],
        "scene_description": ["cones and a digger", None, "barrier on the right lane", "", ""],
        "id": ["a", "b", "c", "d", "e"],
    }), root / "train-00000.parquet")
    struct_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    pq.write_table(pa.table({
        "image": pa.array([{"bytes": img_bytes(220, "PNG"), "path": "x.png"},
                           {"bytes": img_bytes(40), "path": None},
                           {"bytes": img_bytes(230), "path": "y.jpg"}], struct_type),
        "label": [1, 0, 1],
        "scene_description": ["workers", "", ""],  # last row: roadwork label, no description
    }), root / "train-00001.parquet")
    return root


def test_parquet_source_filters_like_the_validator(shards: Path, tmp_path: Path, caplog):
    with caplog.at_level(logging.WARNING, logger="roadwork.data"):
        src = open_source(shards, cache_dir=tmp_path / "hf")
        recs = src.records()
    assert isinstance(src, ParquetSource) and src.name == "hub"
    s0, s1 = sorted(shards.glob("*.parquet"))
    assert [(r.path, r.label) for r in recs] == [
        (f"{s0}#0", 1), (f"{s0}#1", 0), (f"{s0}#3", 0), (f"{s0}#4", 0), (f"{s1}#0", 1), (f"{s1}#1", 0)]
    assert src.skipped == [f"{s0}#2", f"{s1}#2"]  # label 0 with a description; label 1 without
    assert "skipped 1 of 5 rows" in caplog.text
    assert {r.group for r in recs} == {"train-00000#0", "train-00000#1", "train-00000#3", "train-00000#4",
                                       "train-00001#0", "train-00001#1"}
    samples = list(src)
    assert [(s.path, s.label, s.source) for s in samples] == [
        (f"{s0}#0", 1, "hub"), (f"{s0}#1", 0, "hub"), (f"{s0}#4", 0, "hub"), (f"{s1}#0", 1, "hub"),
        (f"{s1}#1", 0, "hub")]
    greys = [s.image.getpixel((3, 3))[0] for s in samples]
    assert np.allclose(greys, [200, 10, 30, 220, 40], atol=3)  # row 4: base64 text stored as bytes
    assert_reported(src.errors, {"train-00000.parquet": "not an image"})
    assert src.errors[0][0] == f"{s0}#3"


def test_parquet_written_by_datasets_with_image_feature(tmp_path: Path):
    """The Hub layout proper: `datasets.Image` feature metadata; we still decode the raw bytes ourselves."""
    import datasets

    ds = datasets.Dataset.from_dict(
        {"image": [Image.new("RGB", (16, 8), (250, 0, 0)), Image.new("RGB", (16, 8), (0, 0, 250))],
         "label": [1, 0], "scene_description": ["road closed", None], "group": ["g1", "g2"]},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64"),
                                    "scene_description": datasets.Value("string"),
                                    "group": datasets.Value("string")}))
    shard = tmp_path / "data" / "train-0.parquet"
    shard.parent.mkdir()
    ds.to_parquet(str(shard))
    src = ParquetSource(shard, source="natix", cache_dir=tmp_path / "hf")
    recs = src.records()
    assert [(r.label, r.group, r.source) for r in recs] == [(1, "g1", "natix"), (0, "g2", "natix")]
    loaded = pickle.loads(pickle.dumps(recs[0])).load()  # as a DataLoader worker would
    assert loaded.size == (16, 8) and loaded.getpixel((2, 2))[0] > 240


def test_parquet_missing_columns_and_unreadable_shard(tmp_path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"image": [b"x"], "target": [1]}), tmp_path / "a.parquet")
    with pytest.raises(DataError, match=r"a\.parquet: missing column\(s\) label"):
        ParquetSource(tmp_path / "a.parquet", cache_dir=tmp_path / "hf").records()
    bad = write(tmp_path / "broken" / "b.parquet", b"PAR1 this is not parquet")
    src = ParquetSource(bad.parent, cache_dir=tmp_path / "hf")
    assert src.records() == []
    assert src.errors[0][0] == str(bad) and "unreadable parquet" in src.errors[0][1]


# --- video ------------------------------------------------------------------------------------

def write_video(path: Path, seconds: int = 2, fps: int = 10) -> Path:
    """Frame i is flat grey 12*i, so a decoded frame tells which one it is."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=fps)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(seconds * fps):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 12 * i, np.uint8), format="rgb24")
            c.mux(s.encode(frame))
        c.mux(s.encode())
    return path


def frame_index(img: Image.Image) -> int:
    return int(round(np.asarray(img).mean() / 12))


@pytest.fixture
def clips(tmp_path: Path) -> Path:
    root = tmp_path / "dashcam"
    good = write_video(root / "videos" / "street1.mp4")
    data = good.read_bytes()
    write(root / "videos" / "cut.mp4", data[: len(data) // 2])  # truncated: the index is at the end
    write(root / "videos" / "noise.mp4", bytes(np.random.default_rng(0).integers(0, 255, 3000, dtype=np.uint8)))
    (root / "segments.csv").write_text("clip,start_s,end_s,label\nstreet1,0,1,1\nstreet1,1.5,99,0\n"
                                       "cut,0,99,1\nnoise,0,99,0\nelsewhere,0,5,1\n")
    return root


def test_iter_video_frames_picks_the_frame_on_screen(clips: Path):
    got = [(t, frame_index(img)) for t, img in iter_video_frames(clips / "videos" / "street1.mp4", fps=4)]
    assert got == [(0.0, 0), (0.25, 2), (0.5, 5), (0.75, 7), (1.0, 10), (1.25, 12), (1.5, 15), (1.75, 17)]
    assert frame_index(read_frame_at(clips / "videos" / "street1.mp4", 1.25)) == 12  # seeking agrees
    with pytest.raises(ImageError) as e:
        list(iter_video_frames(clips / "videos" / "noise.mp4", fps=4))
    assert e.value.source == str(clips / "videos" / "noise.mp4") and "unreadable video" in e.value.reason


def test_video_source(clips: Path):
    src = open_source(clips, segments=clips / "segments.csv", fps=4)
    assert isinstance(src, VideoSource) and src.name == "dashcam"
    recs = src.records()
    video = clips / "videos" / "street1.mp4"
    assert [(r.path, r.label, r.group) for r in recs] == [
        (f"{video}#t=0s", 1, "street1"), (f"{video}#t=0.25s", 1, "street1"), (f"{video}#t=0.5s", 1, "street1"),
        (f"{video}#t=0.75s", 1, "street1"), (f"{video}#t=1.5s", 0, "street1"), (f"{video}#t=1.75s", 0, "street1")]
    assert src.ambiguous == 2  # 1.0 s and 1.25 s lie between the segments
    assert_reported(src.errors, {"cut.mp4": "unreadable video", "noise.mp4": "unreadable video"})
    samples = list(src)
    assert [(s.path, s.label) for s in samples] == [(r.path, r.label) for r in recs]
    assert [frame_index(s.image) for s in samples] == [0, 2, 5, 7, 15, 17]
    lazy = [frame_index(pickle.loads(pickle.dumps(r)).load()) for r in recs]
    assert lazy == [0, 2, 5, 7, 15, 17]


def test_segments_validation(clips: Path, tmp_path: Path):
    bad = tmp_path / "seg.csv"
    bad.write_text("clip,start_s,end_s,label\nstreet1,0,1,1\nstreet1,3,2,0\n")
    with pytest.raises(DataError, match=r"seg\.csv: line 3: need 0 <= start_s < end_s"):
        VideoSource(clips / "videos" / "street1.mp4", bad)
    bad.write_text("clip,start,end,label\n")
    with pytest.raises(DataError, match="missing column"):
        VideoSource(clips / "videos", bad)


# --- open_source ------------------------------------------------------------------------------

def test_open_source_detects_and_refuses(tmp_path: Path, manifest: Path):
    assert isinstance(open_source(manifest), ManifestSource)
    (manifest.parent / "manifest.csv").write_text(manifest.read_text())
    assert isinstance(open_source(manifest.parent), ManifestSource)
    for bad, message in [(tmp_path / "nope", "no such file"), (write(tmp_path / "a.txt", b"x"), "not a data source")]:
        with pytest.raises(DataError, match=message):
            open_source(bad)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no roadwork/ and none/"):
        open_source(tmp_path / "empty")


# --- splits -----------------------------------------------------------------------------------

def make_records(seed: int = 0) -> list[Record]:
    """40 groups of 1-12 records from 3 sources; 8 positive groups, 2 of them mixed."""
    rng = np.random.default_rng(seed)
    recs = []
    for g in range(40):
        labels = [1] * int(rng.integers(1, 12)) if g < 8 else [0] * int(rng.integers(1, 12))
        if g in (0, 8):
            labels += [1 - labels[0]] * 3
        recs += [Record(f"g{g}/{i}.jpg", lab, f"g{g}", f"src{g % 3}") for i, lab in enumerate(labels)]
    return recs


def assert_no_shared_group(train, val):
    assert train and val and not {r.group for r in train} & {r.group for r in val}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_group_split_keeps_groups_whole_and_stratifies(seed: int):
    recs = make_records(seed)
    train, val = group_split(recs, val_fraction=0.25, seed=seed)
    assert_no_shared_group(train, val)
    assert sorted(map(id, train + val)) == sorted(map(id, recs))
    for label in (0, 1):
        total = sum(r.label == label for r in recs)
        share = sum(r.label == label for r in val) / total
        assert 0.1 < share < 0.4, (label, share)  # near 0.25 given whole groups of up to 14


def test_group_split_is_seeded():
    recs = make_records()
    assert group_split(recs, seed=5) == group_split(recs, seed=5)
    vals = {frozenset(r.group for r in group_split(recs, seed=s)[1]) for s in range(5)}
    assert len(vals) > 1


def test_group_split_puts_a_rare_label_on_both_sides():
    recs = [Record(f"{g}/{i}", 0, g, "s") for g in "abcdefghij" for i in range(10)]
    recs += [Record(f"p{i}", 1, "pos1", "s") for i in range(2)] + [Record(f"q{i}", 1, "pos2", "s") for i in range(3)]
    for seed in range(5):
        train, val = group_split(recs, val_fraction=0.1, seed=seed)
        assert_no_shared_group(train, val)
        assert {r.label for r in val} == {0, 1} and {r.label for r in train} == {0, 1}


def test_group_split_needs_two_groups():
    with pytest.raises(DataError, match="at least 2 groups"):
        group_split([Record("a", 1, "g", "s"), Record("b", 0, "g", "s")])


def test_leave_sources_out():
    recs = make_records()
    train, val = leave_sources_out(recs, {"src1"})
    assert {r.source for r in val} == {"src1"} and "src1" not in {r.source for r in train}
    assert len(train) + len(val) == len(recs)
    with pytest.raises(DataError, match="unknown source.*nope"):
        leave_sources_out(recs, {"nope"})


def test_group_kfold_covers_each_group_once():
    recs = make_records()
    folds = group_kfold(recs, k=4, seed=0)
    assert len(folds) == 4
    seen = Counter()
    for train, val in folds:
        assert_no_shared_group(train, val)
        assert len(train) + len(val) == len(recs)
        seen.update({r.group for r in val})
    assert set(seen) == {r.group for r in recs} and set(seen.values()) == {1}
    with pytest.raises(DataError, match="cannot make 50 folds"):
        group_kfold(recs, k=50)


# --- the shared data set ----------------------------------------------------------------------

@requires_shared_data
def test_shared_manifest_and_its_clips():
    src = open_source(SHARED / "data")
    recs = src.records()  # no decoding
    assert len(recs) == 3691 and sum(r.label for r in recs) == 491
    assert summarize(recs)["roadwork_clips"] == {"none": 55, "roadwork": 407, "groups": 16}
    train, val = group_split(recs, val_fraction=0.2, seed=0)
    assert_no_shared_group(train, val)
    clip_side = {}
    for side, part in (("train", train), ("val", val)):
        for r in part:
            if r.source == "roadwork_clips":
                assert clip_side.setdefault(r.group, side) == side  # a clip never straddles the split
    assert {r.label for r in val} == {0, 1} and abs(len(val) / len(recs) - 0.2) < 0.03

    # The clips' videos at 2 fps with segments.csv give exactly the manifest's frames (metadata only).
    videos = VideoSource(SHARED / "data" / "roadwork_clips" / "videos", fps=2.0)
    vrecs = videos.records()
    assert Counter((r.group, r.label) for r in vrecs) == Counter(
        (r.group.removeprefix("roadwork:"), r.label) for r in recs if r.source == "roadwork_clips")


# --- the CLI ----------------------------------------------------------------------------------

def test_cli_data_command(manifest: Path, tmp_path: Path):
    import json

    from typer.testing import CliRunner

    from roadwork.cli import app

    result = CliRunner().invoke(app, ["data", str(manifest), "--decode", "--json", "--split", "0.4"])
    assert result.exit_code == 1, result.output  # unreadable files: listed, exit 1
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert (info["n"], info["roadwork"], info["decoded"]) == (9, 3, 4)
    assert {Path(e["path"]).name for e in info["errors"]} == {*BAD_FILES, "missing.jpg"}
    assert info["split"]["train"]["n"] + info["split"]["val"]["n"] == 9
    result = CliRunner().invoke(app, ["data", str(tmp_path / "nothing-here")])
    assert result.exit_code == 2 and "no such file" in result.output
