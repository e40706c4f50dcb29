"""Bytes, files and base64 in; validated RGB PIL images out. Every failure names its input."""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

MAX_PIXELS = 50_000_000  # ~7000x7000; larger is a decompression bomb for a 224-px model
MAX_BYTES = 20 * 1024 * 1024


class ImageError(ValueError):
    """An input that is not a usable image. `source` names it (path, field, index)."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


def decode_bytes(data: bytes, source: str = "<bytes>", max_pixels: int = MAX_PIXELS,
                 max_bytes: int = MAX_BYTES) -> Image.Image:
    """Decode image bytes to an RGB image, refusing empty, oversized, truncated and bomb inputs."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageError(source, f"expected bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise ImageError(source, "empty input")
    if len(data) > max_bytes:
        raise ImageError(source, f"{len(data)} bytes is over the {max_bytes}-byte limit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(bytes(data)))
            w, h = img.size
            if w <= 0 or h <= 0:
                raise ImageError(source, f"zero-size image ({w}x{h})")
            if w * h > max_pixels:
                raise ImageError(source, f"{w}x{h} = {w * h} pixels is over the {max_pixels}-pixel limit")
            img.load()  # forces the full decode: truncated files fail here, not later
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(source, f"decompression bomb refused ({e})") from None
    except UnidentifiedImageError:
        raise ImageError(source, "not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(source, f"corrupt or truncated image ({e})") from None
    return img.convert("RGB") if img.mode != "RGB" else img


def decode_base64(text: str, source: str = "<base64>", **limits: int) -> Image.Image:
    """Decode a base64 string (the SN72 wire format) to an RGB image."""
    if not isinstance(text, (str, bytes)):
        raise ImageError(source, f"expected a base64 string, got {type(text).__name__}")
    if isinstance(text, str):
        if text.startswith("data:") and "," in text:  # tolerate data URLs from browsers
            text = text.split(",", 1)[1]
        try:
            text = text.encode("ascii")
        except UnicodeEncodeError:
            raise ImageError(source, "invalid base64 (non-ASCII characters)") from None
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ImageError(source, f"invalid base64 ({e})") from None
    return decode_bytes(data, source, **limits)


def load_image(path: str | Path, **limits: int) -> Image.Image:
    """Read and decode an image file; errors name the path."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageError(str(path), "file not found") from None
    except IsADirectoryError:
        raise ImageError(str(path), "is a directory") from None
    except OSError as e:
        raise ImageError(str(path), f"unreadable ({e.strerror or e})") from None
    return decode_bytes(data, str(path), **limits)


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"}
