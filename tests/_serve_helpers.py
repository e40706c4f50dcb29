"""Helpers for the serving tests: free ports, a uvicorn server in a thread, validator-style JPEGs and
crafted image headers (the validator-side dendrite is roadwork.serve.query.DendriteClient)."""

from __future__ import annotations

import io
import socket
import struct
import threading
import time
import zlib
from pathlib import Path

from PIL import Image


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def validator_jpeg(img: Image.Image) -> bytes:
    """What an SN72 validator sends at augmentation level 0: RGB, centre square crop, 224x224,
    JPEG at PIL's default quality (75)."""
    img = img.convert("RGB")
    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    img = img.crop((left, top, left + side, top + side)).resize((224, 224))
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    return buf.getvalue()


def png_header(width: int, height: int, mode_bits: tuple[int, int] = (1, 0)) -> bytes:
    """A PNG whose IHDR claims `width` x `height` (bit depth 1, greyscale by default) followed by a
    tiny IDAT: costs nothing to build, and a decoder that trusts the header would allocate it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, mode_bits[0], mode_bits[1], 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


class ThreadedServer:
    """A real uvicorn server on loopback, in a thread (uvicorn skips signal handlers off the main thread)."""

    def __init__(self, app, port: int | None = None):
        import uvicorn

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    timeout_graceful_shutdown=10))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "ThreadedServer":
        self.thread.start()
        end = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > end or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()


def make_wallet(root: Path, name: str):
    import bittensor as bt

    w = bt.Wallet(name=name, hotkey="default", path=str(root))
    w.create_if_non_existent(coldkey_use_password=False, hotkey_use_password=False, suppress=True)
    return w
