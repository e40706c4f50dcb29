"""Learning from traffic (opt-in): keep the inputs the model was unsure about, to label and train on.

An input whose probability lies inside `band` is written byte for byte (the JPEG a validator sent
is exactly the distribution we want to train on) to `<dir>/images/<sha256>.<ext>`, and a row
(file, sha256, prob, label, tier, source, timestamp, size, testnet_label) goes to a parquet index.
Parquet files cannot be appended to, so the index is a folder of part files
(`<dir>/index/part-*.parquet`) written in small batches; `read_index` returns them as one table.
"""

from __future__ import annotations

import hashlib
import io
import logging
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from roadwork.config import CaptureConfig

log = logging.getLogger(__name__)

SCHEMA = pa.schema([
    ("file", pa.string()),  # relative to the capture folder
    ("sha256", pa.string()),
    ("prob", pa.float64()),
    ("label", pa.int8()),
    ("tier", pa.string()),
    ("source", pa.string()),  # "miner" | "http"
    ("timestamp", pa.float64()),  # unix seconds
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("testnet_label", pa.int8()),  # -1 unless a testnet validator revealed the truth
])

_EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif"}


class Capture:
    def __init__(self, cfg: CaptureConfig, flush_rows: int = 32, flush_s: float = 10.0):
        self.cfg = cfg
        self.root = Path(cfg.dir)
        self.lo, self.hi = cfg.band
        self.flush_rows = flush_rows
        self.flush_s = flush_s
        self._rows: list[dict] = []
        self._last_flush = time.monotonic()
        self._lock = threading.Lock()
        self._part = 0

    def wants(self, prob: float) -> bool:
        return self.cfg.enabled and self.lo <= prob <= self.hi

    def save(self, image: Image.Image, prob: float, label: int, tier: str, source: str,
             raw: bytes | None = None, testnet_label: int = -1) -> Path | None:
        """Store the input if `prob` is in the band; returns the image path (None if not kept)."""
        if not self.wants(prob):
            return None
        if raw is None:  # no original bytes (e.g. a decoded upload): keep a lossless copy
            buf = io.BytesIO()
            image.save(buf, format="PNG")
            raw, ext = buf.getvalue(), "png"
        else:
            ext = _EXT.get(getattr(image, "format", None) or _sniff(raw), "bin")
        digest = hashlib.sha256(raw).hexdigest()
        rel = Path("images") / f"{digest}.{ext}"
        path = self.root / rel
        with self._lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                path.write_bytes(raw)
            self._rows.append({"file": rel.as_posix(), "sha256": digest, "prob": float(prob), "label": int(label),
                               "tier": tier, "source": source, "timestamp": time.time(), "width": image.width,
                               "height": image.height, "testnet_label": int(testnet_label)})
            if len(self._rows) >= self.flush_rows or time.monotonic() - self._last_flush >= self.flush_s:
                self._flush_locked()
        return path

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    close = flush

    def _flush_locked(self) -> None:
        self._last_flush = time.monotonic()
        if not self._rows:
            return
        out = self.root / "index"
        out.mkdir(parents=True, exist_ok=True)
        self._part += 1
        name = out / f"part-{time.time_ns()}-{self._part:05d}.parquet"
        tmp = name.with_suffix(".tmp")
        pq.write_table(pa.Table.from_pylist(self._rows, schema=SCHEMA), tmp)
        tmp.rename(name)  # readers never see a half-written part
        log.info("capture: %d row(s) -> %s", len(self._rows), name)
        self._rows.clear()


def read_index(root: str | Path) -> pa.Table:
    """All captured rows under `root` as one table (empty with the schema if none yet)."""
    parts = sorted((Path(root) / "index").glob("part-*.parquet"))
    if not parts:
        return SCHEMA.empty_table()
    return pa.concat_tables([pq.read_table(p, schema=SCHEMA) for p in parts])


def _sniff(raw: bytes) -> str:
    if raw[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if raw[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    return ""
