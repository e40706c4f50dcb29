"""Encoded images: the bytes a shell received, checked but not yet decoded.

A GPU engine decodes JPEGs in batches with nvjpeg, so the shells (HTTP, miner, eval) hand it the bytes
instead of decoding them one by one on the CPU. What every input must pass before any decoder sees it
(size limits, format, dimensions from the header) is checked here, when the `Encoded` is made, so a
bad input is still refused by the shell with its reason. The pixels are decoded later: in batches on
the device, or on the CPU by `image()` for tiers that take PIL images (the same `decode_bytes` the
shells use on their own). A JPEG whose header parses but whose data is corrupt can only be found by
decoding it: such an image is logged and answered 0.5 (NaN through `clean_probs`) by the tier
that found it, without failing its batch.
"""

from __future__ import annotations

import logging
from typing import Union

from PIL import Image

from roadwork.decode import (MAX_BYTES, MAX_PIXELS, ImageError, base64_payload, check_size, decode_bytes,
                             open_bytes)

log = logging.getLogger(__name__)

_SOI = b"\xff\xd8\xff"
# start-of-frame markers that carry the image size: baseline, extended, progressive, lossless
# (C4 = huffman tables, C8 = reserved, CC = arithmetic conditioning are not frames)
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def jpeg_header(data: bytes) -> tuple[int, int, int] | None:
    """(height, width, components) from a JPEG's frame header, or None if `data` is not a JPEG whose
    header can be read. A few microseconds: markers are skipped by their lengths, nothing decoded."""
    if not data.startswith(_SOI):
        return None
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        length = (data[i + 2] << 8) | data[i + 3]
        if marker in _SOF:
            if i + 10 > n:
                return None
            h = (data[i + 5] << 8) | data[i + 6]
            w = (data[i + 7] << 8) | data[i + 8]
            return h, w, data[i + 9]
        if marker in (0xD9, 0xDA) or length < 2:  # end of image / start of scan before any frame
            return None
        i += 2 + length
    return None


class Encoded:
    """One encoded image and its source name; `jpeg` is True when nvjpeg can decode it (a baseline or
    progressive JPEG of 1 or 3 components). Make it with `from_bytes`/`from_base64`, which check it."""

    __slots__ = ("data", "source", "width", "height", "jpeg", "max_pixels", "broken", "_image")

    def __init__(self, data: bytes, source: str, width: int, height: int, jpeg: bool,
                 max_pixels: int = MAX_PIXELS):
        self.data, self.source, self.width, self.height, self.jpeg = bytes(data), source, width, height, jpeg
        self.max_pixels = max_pixels
        self.broken = False  # set when decoding found the data corrupt
        self._image: Image.Image | None = None

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "<bytes>", max_pixels: int = MAX_PIXELS,
                   max_bytes: int = MAX_BYTES) -> "Encoded":
        """Check `data` from its header (the limits of `decode_bytes`); an ImageError names what is wrong."""
        if isinstance(data, (bytes, bytearray, memoryview)) and 0 < len(data) <= max_bytes:
            head = jpeg_header(bytes(data))
            if head is not None and head[2] in (1, 3):
                h, w, _ = head
                check_size(w, h, source, max_pixels)
                return cls(data, source, w, h, True, max_pixels)
        img = open_bytes(data, source, max_pixels, max_bytes)  # every other format, and every refusal
        return cls(data, source, img.size[0], img.size[1], False, max_pixels)

    @classmethod
    def from_base64(cls, text: str | bytes, source: str = "<base64>", max_pixels: int = MAX_PIXELS,
                    max_bytes: int = MAX_BYTES) -> "Encoded":
        return cls.from_bytes(base64_payload(text, source, max_bytes), source, max_pixels, max_bytes)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), as PIL says it."""
        return self.width, self.height

    def image(self) -> Image.Image:
        """The RGB image, decoded on the CPU once (a corrupt one: a grey image, `broken` set)."""
        if self._image is None:
            try:
                self._image = decode_bytes(self.data, self.source, max_pixels=self.max_pixels,
                                           max_bytes=max(len(self.data), 1))
            except ImageError as e:
                log.warning("%s; answered 0.5", e)
                self.broken = True
                self._image = Image.new("RGB", (max(self.width, 1), max(self.height, 1)), (128, 128, 128))
        return self._image

    def __repr__(self) -> str:
        return f"Encoded({self.source!r}, {self.width}x{self.height}, {'jpeg' if self.jpeg else 'other'})"


ImageInput = Union[Image.Image, Encoded]


def as_image(item: ImageInput) -> Image.Image:
    """An RGB PIL image of either kind of input."""
    im = item.image() if isinstance(item, Encoded) else item
    return im if im.mode == "RGB" else im.convert("RGB")


__all__ = ["Encoded", "ImageInput", "as_image", "jpeg_header"]
