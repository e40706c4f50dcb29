"""The fast path end to end: encoded bytes to probabilities, on whatever device this machine has.

    python benchmarks/fast_path.py [--model models/default] [--protocol 2026-04] [--json runs/fast_path.json]

One run prints one table (markdown) and writes the same rows as JSON:
- the subnet's base miner (transformers `image-classification` pipeline over ViT-B/16, random weights:
  speed does not depend on them), one image per call from bytes (PIL decode + pipeline);
- our engine from bytes (`Encoded.from_bytes` + `Engine.predict`, what the miner/HTTP/eval shells
  call) at batch 1/8/64/256/1024: p50/p99 ms per call, images/s;
- the forward-only ceiling (the tier's runner on a device tensor of random pixels) and the decode
  ceiling (`torchvision.io.decode_jpeg` of a list: nvjpeg on CUDA, libjpeg-turbo on a CPU);
- on CUDA, each execution switch of `TorchOptions` (plus dtype) off in turn from all-on, at batch 1
  and 256; on a CPU, the torch, ONNX fp32 and ONNX INT8 backends (an export in the model folder or
  `--onnx DIR`, made by `roadwork export-onnx`).
The inputs are validator challenges (`roadwork.challenge`, `--protocol`: 2026-04 = 224x224 JPEG
q75, 2026-05 = the native frame as JPEG q75) of the example frames.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from roadwork.challenge import make_challenge  # noqa: E402
from roadwork.config import load_config  # noqa: E402
from roadwork.engine import Engine  # noqa: E402
from roadwork.fast.encoded import Encoded  # noqa: E402

ROWS: list[dict[str, Any]] = []
META: dict[str, Any] = {}
JSON_PATH: list[Path] = []  # written after every row: a run cut short keeps what it measured


def jpegs(n: int, protocol: str, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    frames = [Image.open(p).convert("RGB") for p in sorted((REPO / "examples").glob("*.jpg"))]
    return [make_challenge(frames[i % len(frames)], rng, protocol=protocol).jpeg for i in range(n)]


def measure(fn: Callable[[list[bytes]], Any], data: list[bytes], batch: int, min_images: int, sync: Callable,
            warm: int = 2) -> dict[str, float]:
    """Per-call latency of fn over batches cycled from data (after `warm` untimed calls)."""
    def chunk(k: int) -> list[bytes]:
        s = (k * batch) % len(data)
        return (data[s:] + data)[:batch] if s + batch > len(data) else data[s:s + batch]

    for k in range(warm):
        fn(chunk(k))
    sync()
    calls = max(5, -(-min_images // batch))
    lat = []
    t0 = time.perf_counter()
    for k in range(calls):
        s = time.perf_counter()
        fn(chunk(k))
        sync()
        lat.append((time.perf_counter() - s) * 1000.0)
    wall = time.perf_counter() - t0
    q = statistics.quantiles(lat, n=100) if len(lat) > 1 else lat * 99
    return {"images_per_s": calls * batch / wall, "p50_ms": statistics.median(lat), "p99_ms": q[98],
            "ms_per_image": statistics.median(lat) / batch, "calls": calls}


def row(section: str, setup: str, batch: int, m: dict[str, float], **extra: Any) -> None:
    r = {"section": section, "setup": setup, "batch": batch, **{k: round(v, 4) for k, v in m.items()}, **extra}
    ROWS.append(r)
    if JSON_PATH:
        JSON_PATH[0].write_text(json.dumps({"meta": META, "rows": ROWS}, indent=2) + "\n")
    print(f"  {section:9} {setup:48} b={batch:<5} {m['images_per_s']:10.1f} img/s  p50 {m['p50_ms']:8.3f} ms  "
          f"p99 {m['p99_ms']:8.3f} ms", flush=True)


def engine_for(model: str, device: str, dtype: str = "auto", **options: Any) -> Engine:
    tier: dict[str, Any] = {"model": model, "device": device, "dtype": dtype, "batch_size": 4096,
                            "band": [0.5, 0.5], "options": options}
    kind = options.pop("kind", None)
    if kind:
        tier["kind"] = kind
    cfg = load_config(overrides={"tiers": [tier], "router": {"deadline_s": None}})
    engine = Engine.from_config(cfg)
    engine.warmup()
    return engine


def from_bytes(engine: Engine) -> Callable[[list[bytes]], Any]:
    return lambda chunk: engine.predict([Encoded.from_bytes(d) for d in chunk])


def base_miner(data: list[bytes], n: int, device: int, sync: Callable) -> float:
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor, pipeline

    from roadwork.decode import decode_bytes

    with tempfile.TemporaryDirectory() as tmp:
        cfg = ViTConfig(num_labels=2, id2label={0: "None", 1: "Roadwork"}, label2id={"None": 0, "Roadwork": 1})
        ViTForImageClassification(cfg).save_pretrained(tmp)
        ViTImageProcessor().save_pretrained(tmp)
        pipe = pipeline("image-classification", model=tmp, device=device)
        m = measure(lambda chunk: pipe(decode_bytes(chunk[0])), data, 1, n, sync, warm=5)
    row("base", "base miner: ViT-B/16 pipeline, PIL decode", 1, m)
    return m["images_per_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(REPO / "models" / "default"))
    ap.add_argument("--protocol", default="2026-04")
    ap.add_argument("--distinct", type=int, default=512, help="distinct challenge JPEGs (cycled)")
    ap.add_argument("--images", type=int, default=2048, help="images per measurement (at least 5 calls)")
    ap.add_argument("--base-n", type=int, default=200)
    ap.add_argument("--batches", default="1,8,64,256,1024")
    ap.add_argument("--onnx", default=None, help="CPU: folder with a `roadwork export-onnx` export")
    ap.add_argument("--skip", default="", help="comma list of sections to skip: base,engine,ceiling,switches")
    ap.add_argument("--json", default=str(REPO / "runs" / "fast_path.json"))
    ap.add_argument("--table", default=None, help="only print the table of an earlier run's JSON")
    a = ap.parse_args()
    if a.table:
        saved = json.loads(Path(a.table).read_text())
        ROWS.extend(saved["rows"])
        base = [r["images_per_s"] for r in ROWS if r["section"] == "base"]
        print_table(saved["meta"], base[0] if base else None)
        return
    import torch

    cuda = torch.cuda.is_available()
    dev = "cuda" if cuda else "cpu"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    skip = set(filter(None, a.skip.split(",")))
    batches = [int(b) for b in a.batches.split(",")] if cuda else [b for b in (1, 8, 64) if b <= 64]
    name = torch.cuda.get_device_name(0) if cuda else f"CPU ({platform.processor() or platform.machine()}, "\
        f"{__import__('os').cpu_count()} cores)"
    meta = {"device": name, "torch": torch.__version__, "protocol": a.protocol, "date": time.strftime("%Y-%m-%d %H:%M"),
            "command": "python " + " ".join(sys.argv)}
    import torchvision

    meta["torchvision"] = torchvision.__version__
    META.update(meta)
    JSON_PATH.append(Path(a.json))
    JSON_PATH[0].parent.mkdir(parents=True, exist_ok=True)
    print(f"# fast path on {name}, torch {torch.__version__}, protocol {a.protocol}", flush=True)
    data = jpegs(a.distinct, a.protocol)
    images = a.images if cuda else min(a.images, 128)
    base_ips = base_miner(data, a.base_n if cuda else 20, 0 if cuda else -1, sync) if "base" not in skip else None

    if cuda:
        configs = {"eager (shipped defaults: nvjpeg, bf16, channels-last)": {},
                   "all on (+ compile, CUDA graphs <= 64)": {"compile": True, "cuda_graphs": True}}
    else:
        configs = {"torch fp32 (transformers processor)": {"backend": "torch"}}
        onnx_dir = a.onnx or a.model
        from roadwork.fast.onnx_tier import fresh_export

        if fresh_export(onnx_dir, "fp32"):
            configs["onnx fp32"] = {"kind": "onnx", "precision": "fp32", "model": onnx_dir}
        if fresh_export(onnx_dir, "int8"):
            configs["onnx int8"] = {"kind": "onnx", "precision": "int8", "model": onnx_dir}
    engines: dict[str, Engine] = {}
    if "engine" not in skip:
        for label, opts in configs.items():
            opts = dict(opts)
            model = opts.pop("model", a.model)
            t0 = time.perf_counter()
            engines[label] = eng = engine_for(model, dev, **opts)
            start_s = time.perf_counter() - t0
            for b in batches:
                row("engine", label, b, measure(from_bytes(eng), data, b, max(images, 5 * b) if b < 256 else
                                                 max(images, 3 * b), sync), start_s=round(start_s, 1))
    if "ceiling" not in skip:
        ceilings(engines, data, batches, images, sync, cuda)
    if cuda and "switches" not in skip:
        switches(a.model, data, images, sync)
    print_table(meta, base_ips)
    print(f"\nwrote {a.json}")


def ceilings(engines: dict[str, Engine], data: list[bytes], batches: list[int], images: int, sync: Callable,
             cuda: bool) -> None:
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    dev = "cuda" if cuda else "cpu"
    for b in [x for x in batches if x >= 64] or batches[-1:]:
        def dec(chunk: list[bytes]) -> Any:
            return decode_jpeg([torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in chunk],
                               mode=ImageReadMode.RGB, device=dev)
        row("ceiling", f"decode_jpeg list ({'nvjpeg' if cuda else 'libjpeg-turbo'})", b,
            measure(dec, data, b, max(images, 3 * b), sync))
    for label, eng in engines.items():
        tier = eng.tiers[0]
        runner = getattr(tier, "runner", None)
        if runner is None or runner.input_shape is None:
            continue
        for b in batches:
            x = torch.randn((b, *runner.input_shape), device=dev)  # random pixels: zeros run unrealistically fast

            def fwd(_chunk: list[bytes], x: Any = x) -> Any:
                with torch.inference_mode():
                    return runner(x)
            row("ceiling", f"forward only: {label}", b, measure(fwd, data, b, max(images, 3 * b), sync))
        pre = getattr(tier, "device_pre", None)
        if pre is not None:
            for b in [x for x in batches if x >= 64]:
                row("ceiling", "decode + preprocess on device (DevicePreprocessor)", b,
                    measure(lambda chunk: pre([Encoded.from_bytes(d) for d in chunk]), data, b,
                            max(images, 3 * b), sync))
            break


def switches(model: str, data: list[bytes], images: int, sync: Callable) -> None:
    """Each switch off in turn from all-on, at the miner's batch (1) and a server's (256)."""
    on = {"compile": True, "cuda_graphs": True, "buckets": [1, 256]}
    variants = {"all on": (on, "bfloat16"), "gpu_decode off (PIL + processor)": ({**on, "gpu_decode": False}, "bfloat16"),
                "bf16 off (float32)": (on, "float32"), "channels_last off": ({**on, "channels_last": False}, "bfloat16"),
                "compile off": ({**on, "compile": False}, "bfloat16"),
                "cuda_graphs off": ({**on, "cuda_graphs": False}, "bfloat16")}
    for label, (opts, dtype) in variants.items():
        t0 = time.perf_counter()
        eng = engine_for(model, "cuda", dtype, **opts)
        start_s = round(time.perf_counter() - t0, 1)
        for b in (1, 256):
            row("switches", label, b, measure(from_bytes(eng), data, b, max(images // 4, 3 * b), sync), start_s=start_s)
        del eng


def print_table(meta: dict[str, Any], base_ips: float | None) -> None:
    print(f"\n### {meta['date']} — {meta['device']}, torch {meta['torch']}, protocol {meta['protocol']}\n")
    print(f"`{meta['command']}`\n")
    print("| section | setup | batch | images/s | p50 ms/call | p99 ms/call | ms/image | vs base miner |")
    print("|---|---|---|---|---|---|---|---|")
    for r in ROWS:
        vs = f"{r['images_per_s'] / base_ips:.1f}x" if base_ips and r["section"] != "ceiling" else "—"
        print(f"| {r['section']} | {r['setup']} | {r['batch']} | {r['images_per_s']:.1f} | {r['p50_ms']:.3f} | "
              f"{r['p99_ms']:.3f} | {r['ms_per_image']:.4f} | {vs} |")


if __name__ == "__main__":
    main()
