"""Make a compact copy of an image data set (same relative paths, manifest copied) to carry it to a
GPU machine: every image re-encoded as a JPEG whose longer side is at most --max-side pixels.

    python scripts/pack_data.py ../shared/data devdata --max-side 256 --quality 75
"""

from __future__ import annotations

import argparse
import csv
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image


def _one(args: tuple[Path, Path, int, int]) -> str | None:
    src, dst, side, quality = args
    try:
        if dst.suffix == ".png":  # a synthetic image's object mask (`mask` column): grey, lossless
            im = Image.open(src).convert("L")
            im.thumbnail((side, side), Image.Resampling.BILINEAR)
            dst.parent.mkdir(parents=True, exist_ok=True)
            im.save(dst)
            return None
        im = Image.open(src).convert("RGB")
        im.thumbnail((side, side), Image.Resampling.BICUBIC)
        dst.parent.mkdir(parents=True, exist_ok=True)
        im.save(dst, "JPEG", quality=quality)
        return None
    except Exception as e:  # report, never drop silently
        return f"{src}: {e}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--max-side", type=int, default=256)
    ap.add_argument("--quality", type=int, default=75)
    ap.add_argument("--manifest", default="manifest.csv")
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    rows = list(csv.DictReader(open(a.src / a.manifest)))
    jobs = [(a.src / r["path"], (a.dst / r["path"]).with_suffix(".jpg"), a.max_side, a.quality) for r in rows]
    # `roadwork synth` manifests name each image's mask (masks/NAME.png): it travels along, same stem
    jobs += [(a.src / r["mask"], a.dst / r["mask"], a.max_side, a.quality) for r in rows if r.get("mask")]
    a.dst.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(a.workers) as ex:
        errors = [e for e in ex.map(_one, jobs, chunksize=32) if e]
    for r in rows:
        r["path"] = str(Path(r["path"]).with_suffix(".jpg"))
    with open(a.dst / a.manifest, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    for extra in ("README.md",):
        if (a.src / extra).exists():
            shutil.copy(a.src / extra, a.dst / extra)
    print(f"{len(rows) - len(errors)} images written to {a.dst}, {len(errors)} failed")
    for e in errors:
        print("  ", e)


if __name__ == "__main__":
    main()
