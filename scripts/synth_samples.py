"""Contact sheet of synthetic samples (docs/synth_samples.png): look before you train.

    python scripts/synth_samples.py --data ../shared/data/manifest.csv --objects ../shared/data/objects \\
        --out docs/synth_samples.png [--n 24] [--seed 0] [--set night_p=1]

Each tile is a synthetic image at 224 px wide with the outline of its roadwork mask in cyan, and a
caption: label, pasted kinds, scene effects. Hard negatives are not outlined (not in the mask).
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

from roadwork.synth.bank import load_bank
from roadwork.synth.compose import compose_sample
from roadwork.synth.config import SynthConfig
from roadwork.synth.writer import fit_max_side

TILE_W = 192


def tile(sample, caption: str) -> Image.Image:
    h = round(sample.image.shape[0] * TILE_W / sample.image.shape[1])
    img = cv2.resize(sample.image, (TILE_W, h), interpolation=cv2.INTER_AREA)
    m = cv2.resize(sample.mask, (TILE_W, h), interpolation=cv2.INTER_AREA) > 40
    edge = m & ~cv2.erode(m.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    img = img.copy()
    img[edge] = (0, 255, 255)
    out = Image.new("RGB", (TILE_W, h + 24), (20, 20, 20))
    out.paste(Image.fromarray(img), (0, 0))
    d = ImageDraw.Draw(out)
    for i, line in enumerate((caption[:34], caption[34:68])):
        d.text((2, h + 1 + 11 * i), line, fill=(230, 230, 230))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="Scene manifest (label-0 rows are used).")
    ap.add_argument("--objects", default="none", help="objects/ folder, a saved bank, or none.")
    ap.add_argument("--out", default="docs/synth_samples.png")
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--cols", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], help="SynthConfig KEY=VALUE; repeatable.")
    ap.add_argument("--legacy", action="store_true")
    args = ap.parse_args()
    cfg = (SynthConfig.legacy() if args.legacy else SynthConfig()).with_overrides(args.set)
    root = Path(args.data).parent
    with open(args.data, newline="") as f:
        paths = [root / r["path"] for r in csv.DictReader(f) if r["label"] == "0"]
    rng = np.random.default_rng(args.seed)
    # the cut cones are research-use photos: cache them outside the repository
    bank = load_bank(args.objects, Path(tempfile.gettempdir()) / "roadwork_synth_bank")
    tiles = []
    for i in range(args.n):
        scene = np.asarray(fit_max_side(Image.open(paths[rng.integers(len(paths))]).convert("RGB"), 320))
        s = compose_sample(scene, bank, np.random.default_rng([args.seed, i]), negative=i % 4 == 3, config=cfg)
        kinds = sorted(set(s.meta["kinds"]))
        tiles.append(tile(s, f"{'POS' if s.label else 'neg'} {','.join(s.meta['effects'])} | {' '.join(kinds)}"))
    rows = [tiles[i:i + args.cols] for i in range(0, len(tiles), args.cols)]
    H = sum(max(t.height for t in r) for r in rows)
    sheet = Image.new("RGB", (TILE_W * args.cols, H), (0, 0, 0))
    y = 0
    for r in rows:
        for j, t in enumerate(r):
            sheet.paste(t, (j * TILE_W, y))
        y += max(t.height for t in r)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    # a palette PNG keeps the sheet small enough to live in the repository
    sheet.quantize(colors=160, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(args.out, optimize=True)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
