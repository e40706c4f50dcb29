"""Engine speed against the subnet's official base miner, side by side on the same device.

The base miner is a transformers `image-classification` pipeline over ViT-B/16 (224 px) answering one
image at a time. Its weights cannot be downloaded here, so it is built from `ViTConfig()` with random
weights: speed does not depend on the weights. Both answer the same 224x224 JPEG challenges.

    python benchmarks/engine_vs_base_miner.py [--model models/default] [--n 200] [--batch 64]

Prints images/s and p50/p99 latency for: base miner (one at a time), roadwork engine (one at a time,
as a miner answers), roadwork engine batched (as the HTTP service / labeller run), and ratios.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from roadwork.challenge import make_challenge  # noqa: E402
from roadwork.engine import Engine  # noqa: E402


def challenges(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    frames = [Image.open(p).convert("RGB") for p in sorted((REPO / "examples").glob("*.jpg"))]
    return [Image.open(io.BytesIO(make_challenge(frames[i % len(frames)], rng).jpeg)).convert("RGB")
            for i in range(n)]


def timed(fn, items) -> tuple[float, list[float]]:
    lat = []
    t0 = time.perf_counter()
    for it in items:
        s = time.perf_counter()
        fn(it)
        lat.append((time.perf_counter() - s) * 1000)
    return time.perf_counter() - t0, lat


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(REPO / "models" / "default"))
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--batch", type=int, default=64)
    a = ap.parse_args()
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor, pipeline

    dev = 0 if torch.cuda.is_available() else -1
    name = torch.cuda.get_device_name(0) if dev == 0 else "CPU"
    imgs = challenges(a.n)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = ViTConfig(num_labels=2, id2label={0: "None", 1: "Roadwork"}, label2id={"None": 0, "Roadwork": 1})
        ViTForImageClassification(cfg).save_pretrained(tmp)
        ViTImageProcessor().save_pretrained(tmp)
        base = pipeline("image-classification", model=tmp, device=dev)
        for im in imgs[:5]:
            base(im)
        sync()
        wall, lat = timed(lambda im: (base(im), sync()), imgs)
        rows.append(("base miner ViT-B/16 pipeline, 1 image/call", a.n / wall, lat))
        del base
    engine = Engine.from_pretrained(a.model)
    engine.warmup()
    wall, lat = timed(lambda im: (engine.predict([im]), sync()), imgs)
    rows.append((f"roadwork engine ({Path(a.model).name}), 1 image/call", a.n / wall, lat))
    batches = [imgs[i:i + a.batch] for i in range(0, len(imgs), a.batch)]
    engine.predict(batches[0])
    sync()
    wall, lat = timed(lambda b: (engine.predict(b), sync()), batches)
    rows.append((f"roadwork engine, batch {a.batch}", a.n / wall, [x / a.batch for x in lat]))
    base_ips = rows[0][1]
    print(f"\n## engine vs base miner on {name} (n={a.n}, torch {torch.__version__})\n")
    print("| setup | images/s | p50 ms/image | p99 ms/image | speed vs base miner |")
    print("|---|---|---|---|---|")
    for label, ips, lat in rows:
        q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [lat[0]] * 99
        print(f"| {label} | {ips:.1f} | {statistics.median(lat):.2f} | {q[98]:.2f} | {ips / base_ips:.2f}x |")


if __name__ == "__main__":
    main()
