"""roadwork.decode: good images come out RGB; every kind of bad input is an ImageError naming it."""

from __future__ import annotations

import base64
import io
import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from roadwork.decode import DRAFT_SIDE, MAX_PIXELS, ImageError, decode_base64, decode_bytes, load_image


def png_bytes(width: int, height: int, bit_depth: int = 1, idat: bool = True) -> bytes:
    """A greyscale PNG written by hand, so a huge image costs a few KB and no PIL allocation."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0))
    if idat:
        row = b"\x00" + b"\x00" * ((width * bit_depth + 7) // 8)  # filter byte + zero pixels
        out += chunk(b"IDAT", zlib.compress(row * height, 9))
    return out + chunk(b"IEND", b"")


def encode(img: Image.Image, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


@pytest.fixture
def jpeg() -> bytes:
    rng = np.random.default_rng(0)  # noise: a JPEG with real entropy, so truncation really cuts data
    return encode(Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)))


def reason(fn, *args, **kw) -> ImageError:
    with pytest.raises(ImageError) as e:
        fn(*args, **kw)
    return e.value


# --- good inputs -------------------------------------------------------------------------------

def test_jpeg_png_decode_to_rgb(jpeg):
    img = decode_bytes(jpeg)
    assert img.mode == "RGB" and img.size == (64, 48)
    grey = decode_bytes(encode(Image.new("L", (10, 7), 128), "PNG"))
    assert grey.mode == "RGB" and grey.getpixel((3, 3)) == (128, 128, 128)


def test_transparent_pixels_become_white():
    img = Image.new("RGBA", (4, 4), (10, 20, 30, 0))
    img.putpixel((0, 0), (10, 20, 30, 255))
    out = decode_bytes(encode(img, "PNG"))
    assert out.getpixel((1, 1)) == (255, 255, 255) and out.getpixel((0, 0)) == (10, 20, 30)


def test_16bit_png_is_rescaled_not_clipped_white():
    a = np.linspace(0, 65535, 16 * 16).reshape(16, 16).astype(np.uint16)
    out = np.asarray(decode_bytes(encode(Image.fromarray(a), "PNG")))
    assert out.min() == 0 and out.max() == 255 and 100 < out.mean() < 155


def test_pixel_limit_is_a_parameter():
    data = png_bytes(100, 100)
    assert decode_bytes(data).size == (100, 100)
    assert "pixel limit" in reason(decode_bytes, data, max_pixels=5000).reason


# --- bad bytes --------------------------------------------------------------------------------

def test_empty_and_wrong_type():
    assert "empty" in reason(decode_bytes, b"", "upload.jpg").reason
    e = reason(decode_bytes, "not bytes", "field image")
    assert e.source == "field image" and "expected bytes" in e.reason


def test_text_is_not_an_image_and_says_what_it_starts_with():
    e = reason(decode_bytes, b"<html><body>404</body></html>", "resp.jpg")
    assert str(e).startswith("resp.jpg: not an image") and "<html>" in e.reason


def test_truncated_jpeg_and_png(jpeg):
    assert "truncated" in reason(decode_bytes, jpeg[: len(jpeg) // 2], "half.jpg").reason
    png = encode(Image.fromarray(np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8)), "PNG")
    assert "truncated" in reason(decode_bytes, png[: len(png) // 2], "half.png").reason


def test_corrupt_png_checksum():
    png = bytearray(encode(Image.new("RGB", (16, 16), (1, 2, 3)), "PNG"))
    idat = png.index(b"IDAT")
    png[idat + 6] ^= 0xFF  # flip a byte of compressed data: CRC no longer matches
    assert "corrupt" in reason(decode_bytes, bytes(png), "bad.png").reason


@pytest.mark.parametrize("size", [(20000, 20000), (7100, 7100)])  # PIL's own check; ours
def test_header_claiming_huge_dimensions_is_refused_before_decoding(size):
    e = reason(decode_bytes, png_bytes(*size, idat=False), "claims.png")
    assert e.source == "claims.png" and "bomb" in e.reason


def test_real_9000x9000_one_bit_png_is_refused():
    data = png_bytes(9000, 9000)  # 81 Mpx in ~10 KB: a real, complete decompression bomb
    assert len(data) < 100_000 and 9000 * 9000 > MAX_PIXELS
    e = reason(decode_bytes, data, "bomb.png")
    assert "9000x9000" in e.reason and "bomb" in e.reason


def test_byte_limit(jpeg):
    assert "byte limit" in reason(decode_bytes, jpeg, max_bytes=100).reason


def test_formats_outside_the_allow_list_are_refused():
    tga = encode(Image.new("RGB", (8, 8), (200, 0, 0)), "TGA")  # PIL reads TGA, the miner does not
    assert "not an image" in reason(decode_bytes, tga, "x.tga").reason


def test_image_error_survives_pickling():
    e = pickle.loads(pickle.dumps(ImageError("a.jpg", "broken")))
    assert (e.source, e.reason, str(e)) == ("a.jpg", "broken", "a.jpg: broken")


# --- files ------------------------------------------------------------------------------------

def test_load_image_errors_name_the_path(tmp_path: Path, jpeg):
    good = tmp_path / "good.jpg"
    good.write_bytes(jpeg)
    assert load_image(good).size == (64, 48)
    cases = {"missing.jpg": "not found", "zero.jpg": "empty", "notes.jpg": "not an image", "dir.jpg": "directory"}
    (tmp_path / "zero.jpg").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("shopping list\n")
    (tmp_path / "dir.jpg").mkdir()
    for name, why in cases.items():
        e = reason(load_image, tmp_path / name)
        assert e.source == str(tmp_path / name) and why in e.reason, (name, e)


def test_load_image_refuses_big_files_and_fifos_without_reading(tmp_path: Path, jpeg):
    big = tmp_path / "big.jpg"
    big.write_bytes(jpeg)
    assert "byte limit" in reason(load_image, big, max_bytes=100).reason
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "pipe.jpg"
        os.mkfifo(fifo)  # reading it would block forever
        assert "not a regular file" in reason(load_image, fifo).reason


# --- base64 -----------------------------------------------------------------------------------

@pytest.fixture
def b64(jpeg) -> str:
    return base64.b64encode(jpeg).decode()


def test_base64_accepted_forms(b64):
    ref = np.asarray(decode_base64(b64))
    for text in (f"data:image/jpeg;base64,{b64}", "\n".join(b64[i:i + 76] for i in range(0, len(b64), 76)),
                 b64.rstrip("="), base64.urlsafe_b64encode(base64.b64decode(b64)).decode(), b64.encode()):
        assert np.array_equal(np.asarray(decode_base64(text)), ref)


def test_base64_bad_padding_and_truncation(b64):
    body = b64.rstrip("=")
    stray = body + "A" * ((1 - len(body)) % 4)  # length = 1 mod 4: no padding can make it valid
    assert "stray character" in reason(decode_base64, stray, "req.image").reason
    e = reason(decode_base64, "QUJD=A==")  # '=' in the middle
    assert e.source == "<base64>" and "invalid base64" in e.reason
    half = b64[: len(b64) // 2 // 4 * 4]  # valid base64 of half a JPEG
    assert "truncated" in reason(decode_base64, half).reason


def test_base64_non_ascii_and_junk():
    assert "non-ASCII character at position 3" in reason(decode_base64, "QUJ\u00e9QUJD", "field").reason
    assert "invalid base64" in reason(decode_base64, "!!!!").reason
    assert "invalid base64" in reason(decode_base64, b"\xff\xfe\xfd\xfc").reason
    assert "empty" in reason(decode_base64, "").reason
    assert "empty" in reason(decode_base64, "  \n ").reason
    assert "expected a base64 string" in reason(decode_base64, 12345).reason


def test_base64_of_text_and_bad_data_urls():
    assert "not an image" in reason(decode_base64, base64.b64encode(b"hello there").decode()).reason
    assert "without a ','" in reason(decode_base64, "data:image/png;base64").reason
    assert "not base64" in reason(decode_base64, "data:text/plain,hello").reason


def test_base64_size_refused_before_decoding():
    assert "byte limit" in reason(decode_base64, "QUJD" * 1000, max_bytes=100).reason


# ---- native-resolution photos (issue 12 item 2) ---------------------------------------------------
def test_a_20_mib_4000x3000_photo_decodes_reduced_to_a_faithful_2000x1500(phone_jpeg, tmp_path):
    small = decode_bytes(phone_jpeg, "phone.jpg")
    assert small.mode == "RGB" and small.size == (2000, 1500)  # 1/2 is the smallest scale keeping >= 1024 px
    full = decode_bytes(phone_jpeg, "phone.jpg", draft_side=None)
    assert full.size == (4000, 3000)
    # the whole picture scaled (not a crop): it matches the full decode box-filtered to the same size
    diff = np.abs(np.asarray(small, dtype=np.float64) - np.asarray(full.resize(small.size, Image.BOX), dtype=np.float64))
    assert diff.mean() < 4.0, diff.mean()
    (tmp_path / "phone.jpg").write_bytes(phone_jpeg)
    assert np.array_equal(np.asarray(load_image(tmp_path / "phone.jpg")), np.asarray(small))  # files as the wire


@pytest.mark.parametrize("size, reduced", [((2047, 4000), (2047, 4000)), ((2048, 2048), (1024, 1024)),
                                           ((9000, 2100), (4500, 1050))])
def test_only_jpegs_twice_the_draft_side_are_reduced_and_never_below_it(size, reduced):
    data = encode(Image.new("RGB", size, (200, 120, 30)))
    assert decode_bytes(data).size == reduced and min(reduced) >= DRAFT_SIDE
    assert decode_bytes(encode(Image.new("RGB", size), "PNG")).size == size  # PNG has no reduced decode


def test_a_jpeg_claiming_bomb_dimensions_is_refused_from_its_header():
    data = bytearray(encode(Image.new("RGB", (64, 48))))
    sof = data.index(b"\xff\xc0")  # baseline frame header: length (2), precision (1), height (2), width (2)
    data[sof + 5:sof + 9] = struct.pack(">HH", 9000, 9000)  # 81 MP claimed: refused before any decoding
    e = reason(decode_bytes, bytes(data), "claims.jpg")
    assert "9000x9000" in e.reason and "bomb" in e.reason
