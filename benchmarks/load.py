"""Load benchmark for both front-ends: N concurrent clients for a fixed time on loopback.

Each front-end runs as its own process, started through the real CLI (`roadwork serve`,
`roadwork mine --local`), so the figures include HTTP/axon overhead, and the server's peak RSS
(VmHWM) is its own. Clients send what a validator sends: one 224x224 JPEG (quality 75) per request.

    python benchmarks/load.py                          # models/default, 10 s, 1/4/16 clients
    python benchmarks/load.py --tiny --duration 3      # smoke run on a random tiny ViT

Results print as a table and are appended to docs/benchmarks.md (section "Load").
Errors must be 0: any non-200 answer, or a miner answer outside [0, 1], counts as one.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import io
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SECTION = "## Load: both front-ends on loopback (benchmarks/load.py)"
INTRO = ("Servers start through the real CLI in their own process; clients (httpx for HTTP, one bittensor\n"
         "dendrite for the miner) run concurrently in one asyncio loop for a fixed time. Latency is per answer\n"
         "as the client sees it; *mean batch* is images per engine call (server's Prometheus histogram);\n"
         "peak RSS is the server's VmHWM. Errors = non-200 answers or miner answers outside [0, 1].\n")


@dataclass
class Run:
    frontend: str
    clients: int
    seconds: float
    ok: int
    errors: int
    latencies_ms: list[float]
    peak_rss_mb: float
    mean_batch: float = float("nan")

    def row(self) -> list[str]:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        return [self.frontend, str(self.clients), f"{self.seconds:.1f}", str(self.ok),
                f"{self.ok / self.seconds:.1f}", f"{np.percentile(lat, 50):.1f}", f"{np.percentile(lat, 99):.1f}",
                str(self.errors), f"{self.mean_batch:.1f}", f"{self.peak_rss_mb:.0f}"]


HEADER = ["front-end", "clients", "s", "answers", "answers/s", "p50 ms", "p99 ms", "errors", "mean batch",
          "server peak RSS MB"]


# ---- inputs --------------------------------------------------------------------------------------
def validator_payloads() -> list[str]:
    out = []
    for p in sorted((REPO / "examples").glob("*.jpg")) or [None]:
        img = Image.open(p).convert("RGB") if p else Image.new("RGB", (640, 480), (128, 100, 60))
        s = min(img.size)
        img = img.crop(((img.width - s) // 2, (img.height - s) // 2, (img.width + s) // 2, (img.height + s) // 2))
        buf = io.BytesIO()
        img.resize((224, 224)).save(buf, format="JPEG")  # PIL default quality 75, like the validator
        out.append(base64.b64encode(buf.getvalue()).decode())
    return out


def tiny_model(path: Path) -> Path:
    """A random tiny ViT with the subnet's labels (smoke runs only: its answers mean nothing)."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, num_labels=2, id2label={0: "None", 1: "Roadwork"},
                    label2id={"None": 0, "Roadwork": 1})
    ViTForImageClassification(cfg).save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


# ---- server processes ----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, cwd=REPO)


def batch_totals(metrics_url: str) -> tuple[float, float]:
    """(engine calls, images) so far, from the server's Prometheus batch-size histogram."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    vals = {s.name: s.value for f in text_string_to_metric_families(httpx.get(metrics_url).text) for s in f.samples}
    return vals.get("roadwork_batch_size_count", 0.0), vals.get("roadwork_batch_size_sum", 0.0)


def mean_batch(before: tuple[float, float], after: tuple[float, float]) -> float:
    calls = after[0] - before[0]
    return (after[1] - before[1]) / calls if calls else float("nan")


def stop(proc: subprocess.Popen, log: Path) -> None:
    proc.send_signal(signal.SIGTERM)  # graceful: in-flight requests finish first
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    if code not in (0, -signal.SIGTERM):  # uvicorn re-raises SIGTERM after its graceful shutdown
        print(f"warning: server exited with {code}; log: {log}", file=sys.stderr)


# ---- load generators -----------------------------------------------------------------------------
async def _drive(n_clients: int, duration: float, one_request) -> tuple[int, int, list[float], float]:
    """Run `one_request(i)` in a loop from n_clients coroutines; returns (ok, errors, latencies, secs)."""
    ok = errors = 0
    lat: list[float] = []
    end = time.perf_counter() + duration

    async def client(c: int) -> None:
        nonlocal ok, errors
        i = c
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            good = await one_request(i)
            lat.append((time.perf_counter() - t0) * 1000.0)
            ok, errors = ok + good, errors + (not good)
            i += n_clients

    t0 = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(n_clients)))
    return ok, errors, lat, time.perf_counter() - t0


async def load_http(url: str, payloads: list[str], clients: int, duration: float) -> tuple:
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(max_connections=clients)) as http:
        async def one(i: int) -> bool:
            try:
                r = await http.post("/v1/predict", json={"images": [payloads[i % len(payloads)]]})
                return r.status_code == 200 and 0.0 <= r.json()["results"][0]["prob"] <= 1.0
            except httpx.HTTPError:
                return False

        for i in range(3):  # warm connections and caches
            await one(i)
        return await _drive(clients, duration, one)


async def load_miner(info, wallet, payloads: list[str], clients: int, duration: float) -> tuple:
    import bittensor as bt

    from roadwork.serve.protocol import ImageSynapse

    dendrite = bt.Dendrite(wallet=wallet)  # one dendrite, one loop: bittensor's rule

    async def one(i: int) -> bool:  # status 200 and a valid probability, or it is an error
        r = (await dendrite(axons=[info], synapse=ImageSynapse(image=payloads[i % len(payloads)]),
                            deserialize=False, timeout=9))[0]
        return r.dendrite.status_code == 200 and 0.0 <= r.prediction <= 1.0

    try:
        for i in range(3):
            await one(i)
        return await _drive(clients, duration, one)
    finally:
        await dendrite.aclose_session()


async def _until(check, what: str, timeout: float = 180.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if await check():
                return
        except Exception:
            pass
        await asyncio.sleep(0.5)
    raise RuntimeError(f"{what} did not come up within {timeout:.0f} s")


def bench_http(model: str, args, payloads: list[str], tmp: Path) -> list[Run]:
    import httpx

    port, log = free_port(), tmp / "serve.log"
    proc = start([sys.executable, "-m", "roadwork.cli", "serve", "--model", model, "--port", str(port),
                  "--config", str(args.config)], log)
    url = f"http://127.0.0.1:{port}"
    runs = []
    try:
        async def ready() -> bool:
            async with httpx.AsyncClient() as c:
                return (await c.get(f"{url}/readyz")).status_code == 200

        asyncio.run(_until(ready, "roadwork serve"))
        for n in args.clients:
            before = batch_totals(f"{url}/metrics")
            ok, err, lat, secs = asyncio.run(load_http(url, payloads, n, args.duration))
            runs.append(Run("http", n, secs, ok, err, lat, peak_rss_mb(proc.pid),
                            mean_batch(before, batch_totals(f"{url}/metrics"))))
            print(" | ".join(runs[-1].row()), flush=True)
    finally:
        stop(proc, log)
    return runs


def bench_miner(model: str, args, payloads: list[str], tmp: Path) -> list[Run]:
    import bittensor as bt

    from roadwork.serve.miner import local_mode_networking
    from roadwork.serve.protocol import ImageSynapse

    local_mode_networking()
    wallets = {}
    for name in ("bench-miner", "bench-validator"):
        wallets[name] = bt.Wallet(name=name, hotkey="default", path=str(tmp / "wallets"))
        wallets[name].create_if_non_existent(coldkey_use_password=False, hotkey_use_password=False, suppress=True)
    mw, vw = wallets["bench-miner"], wallets["bench-validator"]
    port, mport, log = free_port(), free_port(), tmp / "mine.log"
    metrics = f"http://127.0.0.1:{mport}/metrics"
    proc = start([sys.executable, "-m", "roadwork.cli", "mine", "--local", "--model", model, "--axon.port", str(port),
                  "--metrics-port", str(mport), "--config", str(args.config),
                  "--wallet.name", "bench-miner", "--wallet.path", str(tmp / "wallets"),
                  "--allowed-hotkey", vw.hotkey.ss58_address], log)
    info = bt.AxonInfo(version=0, ip="127.0.0.1", port=port, ip_type=4, hotkey=mw.hotkey.ss58_address,
                       coldkey=mw.coldkeypub.ss58_address)
    runs = []
    try:
        async def ready() -> bool:
            d = bt.Dendrite(wallet=vw)
            try:
                r = (await d(axons=[info], synapse=ImageSynapse(image=payloads[0]), deserialize=False, timeout=5))[0]
                return r.dendrite.status_code == 200
            finally:
                await d.aclose_session()

        asyncio.run(_until(ready, "roadwork mine --local"))
        for n in args.clients:
            before = batch_totals(metrics)
            ok, err, lat, secs = asyncio.run(load_miner(info, vw, payloads, n, args.duration))
            runs.append(Run("miner", n, secs, ok, err, lat, peak_rss_mb(proc.pid), mean_batch(before, batch_totals(metrics))))
            print(" | ".join(runs[-1].row()), flush=True)
    finally:
        stop(proc, log)
    return runs


# ---- report --------------------------------------------------------------------------------------
def markdown(runs: list[Run], model_desc: str, command: str) -> str:
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    lines = [f"### {dt.datetime.now():%Y-%m-%d %H:%M} — {model_desc}", "",
             f"`{command}`  ", f"Machine: {platform.node()}, {device}; server and clients share it. "
             "Each client sends one 224x224 q75 JPEG per request and waits for the answer.", "",
             "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r.row()) + " |" for r in runs]
    return "\n".join(lines) + "\n"


def append_report(block: str, path: Path) -> None:
    """Add the block at the end of this benchmark's section (creating it), leaving others' alone."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if SECTION not in text:
        text = text.rstrip("\n") + f"\n\n{SECTION}\n\n{INTRO}\n{block}"
    else:
        start = text.index(SECTION) + len(SECTION)
        nxt = text.find("\n## ", start)
        end = len(text) if nxt == -1 else nxt + 1
        text = text[:end].rstrip("\n") + f"\n\n{block}" + ("\n" + text[end:] if nxt != -1 else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="model folder or hub id (default: models/default)")
    ap.add_argument("--tiny", action="store_true", help="use a random tiny ViT (smoke run)")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per load level")
    ap.add_argument("--clients", default="1,4,16", help="comma-separated concurrency levels")
    ap.add_argument("--frontends", default="http,miner")
    ap.add_argument("--max-batch-size", type=int, default=32)
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument("--out", default=str(REPO / "docs" / "benchmarks.md"), help="'' to skip the report")
    args = ap.parse_args(argv)
    args.clients = [int(c) for c in args.clients.split(",")]
    with tempfile.TemporaryDirectory(prefix="roadwork-load-") as tmp_:
        tmp = Path(tmp_)
        if args.tiny:
            model, desc = str(tiny_model(tmp / "tiny")), "random tiny ViT (smoke run; 32 px, 2 layers)"
        elif args.model:
            model, desc = args.model, f"model `{args.model}`"
        elif (REPO / "models" / "default" / "config.json").exists():
            model, desc = str(REPO / "models" / "default"), "models/default"
        else:
            ap.error("models/default does not exist yet: pass --model PATH or --tiny")
        # One batching config for both front-ends (the miner has no batching flags of its own).
        args.config = tmp / "bench.yaml"
        args.config.write_text(f"serve:\n  max_batch_size: {args.max_batch_size}\n  max_wait_ms: {args.max_wait_ms}\n")
        payloads = validator_payloads()
        print(" | ".join(HEADER), flush=True)
        runs: list[Run] = []
        for fe in args.frontends.split(","):
            runs += {"http": bench_http, "miner": bench_miner}[fe.strip()](model, args, payloads, tmp)
    command = "python benchmarks/load.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.out:
        append_report(markdown(runs, desc, command.strip()), Path(args.out))
        print(f"appended to {args.out}")
    return 1 if any(r.errors for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
