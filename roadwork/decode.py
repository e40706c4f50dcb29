"""Bytes, files and base64 in; validated RGB PIL images out. Every failure names its input.

A miner decodes whatever the network sends, so decoding is deliberately narrow: only common photo
formats are tried (PIL's other plugins -- EPS via Ghostscript, headerless TGA that accepts random
text -- are attack surface and false positives), sizes are checked from the header before any pixels
are decoded, and every PIL/OS failure becomes an `ImageError(source, reason)`.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

# The limits on one image, defined here once (ServeConfig's defaults and the config's comments read them).
# 2026-05 validators send photos at native size: a 4000x3000, 20 MiB phone JPEG must decode; more pixels than
# ~7000x7000 is a decompression bomb for a 224-px model and is refused from the header, before any decoding.
MAX_PIXELS = 50_000_000
MAX_BYTES = 20 * 1024 * 1024
# Large JPEGs are decoded at the smallest DCT scale (1/2, 1/4, 1/8: PIL's `draft`) that keeps both sides
# >= this: about half the decode time of a 12 MP photo (the Huffman pass is not scaled), a quarter of the
# memory, and still over 4x what the largest tier input (224 px) needs. None decodes at full size.
DRAFT_SIDE = 1024
# What phones, dashcams and the validator produce (the JPEG plugin also opens phones' MPO files).
# AVIF only where this Pillow has it (>= 11.2): naming a missing plugin makes Image.open fail.
Image.init()
FORMATS = tuple(f for f in ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "AVIF") if f in Image.OPEN)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".avif"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"}

_B64_WS = re.compile(rb"\s+")


class ImageError(ValueError):
    """An input that is not a usable image. `source` names it (path, field, index)."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason

    def __reduce__(self):  # keep (source, reason) when raised in a DataLoader worker and pickled back
        return type(self), (self.source, self.reason)


def _preview(data: bytes) -> str:
    """The first bytes, so 'not an image' says what it was instead (HTML, JSON, text, ...)."""
    head = bytes(data[:16])
    text = head.decode("utf-8", errors="ignore")  # a multi-byte character cut at byte 16 is dropped
    is_text = text and len(head) - len(text.encode()) < 4 and all(c.isprintable() or c in "\t\r\n" for c in text)
    return text if is_text else head.hex(" ")  # shown with repr(): a newline reads as \n


def open_bytes(data: bytes, source: str = "<bytes>", max_pixels: int = MAX_PIXELS,
               max_bytes: int = MAX_BYTES) -> Image.Image:
    """Open image bytes and check what the header says (format, size, pixel count) without decoding
    the pixels: the check every input passes, whichever decoder (PIL here, nvjpeg on a GPU) runs next."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageError(source, f"expected bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise ImageError(source, "empty input (0 bytes)")
    if len(data) > max_bytes:
        raise ImageError(source, f"{len(data)} bytes is over the {max_bytes}-byte limit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(bytes(data)), formats=FORMATS)
            check_size(img.size[0], img.size[1], source, max_pixels)
            return img
    except ImageError:
        raise
    except Exception as e:  # noqa: BLE001 - every PIL/OS failure becomes one ImageError
        raise _image_error(e, source, data) from None


def check_size(w: int, h: int, source: str, max_pixels: int = MAX_PIXELS) -> None:
    """Refuse zero-size and decompression-bomb dimensions (from a header, before any decoding)."""
    if w <= 0 or h <= 0:
        raise ImageError(source, f"zero-size image ({w}x{h})")
    if w * h > max_pixels:
        raise ImageError(source, f"{w}x{h} = {w * h} pixels is over the {max_pixels}-pixel limit "
                                 "(decompression bomb?)")


def _image_error(e: BaseException, source: str, data: bytes) -> ImageError:
    if isinstance(e, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return ImageError(source, f"decompression bomb refused ({e})")
    if isinstance(e, UnidentifiedImageError):
        return ImageError(source, f"not an image (unrecognised format; starts with {_preview(data)!r})")
    if isinstance(e, (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, MemoryError)):
        return ImageError(source, f"corrupt or truncated image ({type(e).__name__}: {e})")
    raise e


def decode_bytes(data: bytes, source: str = "<bytes>", max_pixels: int = MAX_PIXELS,
                 max_bytes: int = MAX_BYTES, draft_side: int | None = DRAFT_SIDE) -> Image.Image:
    """Decode image bytes to an RGB image, refusing empty, oversized, truncated and bomb inputs. A JPEG
    larger than `draft_side` on both sides comes out reduced (see DRAFT_SIDE); the pixel limit applies to
    its full size.

    EXIF orientation is deliberately not applied: the validator's images reach miners without it.
    """
    img = open_bytes(data, source, max_pixels, max_bytes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            w, h = img.size
            if draft_side and img.format == "JPEG" and min(w, h) >= 2 * draft_side:
                img.draft(img.mode, (draft_side, draft_side))
            img.load()  # forces the full decode: truncated files fail here, not later
            return _to_rgb(img)
    except Exception as e:  # noqa: BLE001
        raise _image_error(e, source, data) from None


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # PIL's convert("RGB") clips 16-bit/float values at 255 (a white image); rescale instead.
        a = np.asarray(img, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
        return Image.fromarray(a.astype(np.uint8)).convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Transparent pixels go on white like a browser shows them, not on whatever colour they hide.
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return img.convert("RGB")


def decode_base64(text: str | bytes, source: str = "<base64>", **limits: int) -> Image.Image:
    """Decode a base64 string (the SN72 wire format) to an RGB image.

    Tolerates data URLs (`data:image/jpeg;base64,...`), line breaks, and the URL-safe alphabet.
    """
    return decode_bytes(base64_payload(text, source, limits.get("max_bytes", MAX_BYTES)), source, **limits)


def base64_payload(text: str | bytes, source: str = "<base64>", max_bytes: int = MAX_BYTES) -> bytes:
    """The bytes a base64 string (or data URL) carries, with `decode_base64`'s leniency and limits."""
    if not isinstance(text, (str, bytes, bytearray)):
        raise ImageError(source, f"expected a base64 string, got {type(text).__name__}")
    if isinstance(text, str):
        if text.startswith("data:"):
            if "," not in text:
                raise ImageError(source, "data URL without a ',' before its payload")
            header, text = text.split(",", 1)
            if not header.endswith(";base64"):
                raise ImageError(source, f"data URL is not base64 ({header[:40]!r})")
        try:
            text = text.encode("ascii")
        except UnicodeEncodeError as e:
            raise ImageError(source, f"invalid base64 (non-ASCII character at position {e.start})") from None
    raw = _B64_WS.sub(b"", bytes(text))
    if not raw:
        raise ImageError(source, "empty input (no base64 data)")
    if len(raw) * 3 // 4 > max_bytes:  # refuse before allocating the decoded copy
        raise ImageError(source, f"~{len(raw) * 3 // 4} bytes of base64 is over the {max_bytes}-byte limit")
    if b"-" in raw or b"_" in raw:
        raw = raw.replace(b"-", b"+").replace(b"_", b"/")
    if len(raw) % 4 == 1:  # no padding can fix this: a character is missing or one too many
        raise ImageError(source, f"invalid base64 (length {len(raw)} leaves one stray character: truncated?)")
    raw += b"=" * (-len(raw) % 4)  # some clients strip the '=' padding; the payload is still whole
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ImageError(source, f"invalid base64 ({e})") from None


def load_image(path: str | Path, **limits: int) -> Image.Image:
    """Read and decode an image file; errors name the path."""
    path = Path(path)
    max_bytes = limits.get("max_bytes", MAX_BYTES)
    try:
        st = path.stat()
        if stat.S_ISDIR(st.st_mode):
            raise ImageError(str(path), "is a directory")
        if not stat.S_ISREG(st.st_mode):  # a FIFO or device would block or never end
            raise ImageError(str(path), "not a regular file")
        if st.st_size > max_bytes:  # don't read a multi-GB file just to refuse it
            raise ImageError(str(path), f"{st.st_size} bytes is over the {max_bytes}-byte limit")
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageError(str(path), "file not found") from None
    except IsADirectoryError:
        raise ImageError(str(path), "is a directory") from None
    except OSError as e:
        raise ImageError(str(path), f"unreadable ({e.strerror or e})") from None
    return decode_bytes(data, str(path), **limits)
