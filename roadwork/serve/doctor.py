"""`roadwork doctor`: check a miner setup before it meets a validator, one line per check.

Every check returns a `Check` (name, ok, detail, fix): ok is True, False, or None for a check that
was skipped because what it needs failed earlier or does not apply (the chain with `--local`).
The checks read the same `Config` `roadwork mine` builds from the same flags, and follow what the
miner does with it (roadwork.serve.miner): the wallet path, the address the axon binds, the address it
announces, the engine it loads or the server it asks, the deadline it answers within.

Nothing here imports bittensor, torch or httpx at module level: a missing package is a failed check
with the command that installs it, never an ImportError. Nothing here creates keys, registers or
writes to the chain.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar

from roadwork.config import REPO_ROOT, Config, MinerConfig

CHAIN_TIMEOUT_S = 10.0  # a reachable subtensor answers in about a second; offline must fail fast, in one line
IP_LOOKUP_TIMEOUT_S = 5.0  # bittensor's public-IP lookup asks several web services in turn, without timeouts
EXAMPLE = REPO_ROOT / "examples" / "roadwork_boston.jpg"
# What installs the engine (README's first line, without its pins, which the README keeps).
ENGINE_INSTALL = 'pip install torch torchvision && pip install -e . (README, first line)'

T = TypeVar("T")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: skipped (needs something that failed above, or does not apply)
    detail: str
    fix: str = ""


def _one_line(e: BaseException, limit: int = 200) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _within(fn: Callable[[], T], timeout: float) -> T:
    """`fn()`, or TimeoutError after `timeout` s. The call runs on a daemon thread, so one that never
    returns (a black-holed address, a lookup service that hangs) cannot keep the process alive."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = e

    thread = threading.Thread(target=run, name="roadwork-doctor", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"no answer in {timeout:.0f} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


# ---- packages ------------------------------------------------------------------------------------
def check_bittensor() -> Check:
    from roadwork.serve import MINER_INSTALL

    try:
        import bittensor as bt
    except ImportError as e:
        return Check("bittensor", False, f"not installed or does not import ({_one_line(e)})", MINER_INSTALL)
    have = getattr(bt, "__version__", None) or version("bittensor")
    if not hasattr(bt, "Axon"):  # the 10+ "lean" SDK dropped the axon the miner serves on
        return Check("bittensor", False, f"{have} has no Axon (bittensor 10+ is the lean SDK)",
                     f"install the subnet's 9.x: {MINER_INSTALL}")
    return Check("bittensor", True, have)


def check_torch(engine_url: str | None) -> Check:
    try:
        have = version("torch")
    except PackageNotFoundError:
        if engine_url:  # the point of --engine-url: the miner process needs no torch
            return Check("torch", True, f"not installed (not needed: answers come from {engine_url})")
        return Check("torch", False, "not installed (the model runs in this process)",
                     f"{ENGINE_INSTALL}, or answer from a server: --engine-url http://HOST:8000")
    if engine_url:
        return Check("torch", True, f"{have} (not used: answers come from {engine_url})")
    try:
        import torch
    except Exception as e:  # a broken wheel: CUDA libraries missing, ABI mismatch
        return Check("torch", False, f"{have} does not import ({_one_line(e)})", ENGINE_INSTALL)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return Check("torch", True, f"{have} ({f'{gpus} CUDA GPU(s)' if gpus else 'CPU only, no CUDA'})")


# ---- wallet --------------------------------------------------------------------------------------
def check_wallet(mc: MinerConfig) -> tuple[Check, str | None]:
    """The wallet `roadwork mine` would load, and its hotkey's SS58 address (None if unusable)."""
    from roadwork.serve import MINER_INSTALL

    try:
        from bittensor_wallet import Wallet

        from roadwork.serve.miner import LOCAL_WALLETS
    except ImportError as e:
        return Check("wallet", False, f"cannot read wallets: {_one_line(e)}", MINER_INSTALL), None
    path = mc.wallet_path or (str(LOCAL_WALLETS) if mc.local else None)  # as miner.load_wallet
    wallet = Wallet(name=mc.wallet_name, hotkey=mc.wallet_hotkey, **({"path": path} if path else {}))
    where = f"wallet {mc.wallet_name!r} hotkey {mc.wallet_hotkey!r}"
    missing = [f"{what} file {f.path}" for what, f in (("hotkey", wallet.hotkey_file),
                                                       ("coldkeypub", wallet.coldkeypub_file))
               if not f.exists_on_device()]
    if missing:
        flags = f"--wallet.name {mc.wallet_name} --wallet.hotkey {mc.wallet_hotkey}" + \
                (f" --wallet.path {mc.wallet_path}" if mc.wallet_path else "")
        if mc.local:  # mine --local makes throwaway keys; doctor never writes any
            fix = (f"`roadwork mine --local {flags}` creates throwaway keys on its first start; "
                   "or give the right --wallet.name / --wallet.hotkey / --wallet.path")
        else:
            fix = (f"create them (btcli wallet new_coldkey / new_hotkey {flags}) and register the hotkey, "
                   "or give the right --wallet.name / --wallet.hotkey / --wallet.path")
        return Check("wallet", False, f"{where}: no {' and no '.join(missing)}", fix), None
    try:
        if wallet.hotkey_file.is_encrypted():  # the axon would stop and ask for the password
            return Check("wallet", False, f"{where}: the hotkey file {wallet.hotkey_file.path} is encrypted",
                         "a miner runs unattended: regenerate the hotkey without a password "
                         "(btcli wallet regen_hotkey --no-use-password)"), None
        hotkey, coldkey = wallet.hotkey.ss58_address, wallet.coldkeypub.ss58_address
    except Exception as e:  # a corrupt or unreadable key file
        return Check("wallet", False, f"{where}: unreadable key file ({_one_line(e)})",
                     "check the files' permissions, or regenerate them with btcli"), None
    return Check("wallet", True, f"{where} under {wallet.path}: hotkey {hotkey}, coldkey {coldkey}"), hotkey


# ---- axon address --------------------------------------------------------------------------------
def bind_host(mc: MinerConfig) -> str:
    """The address the axon listens on: bittensor binds 0.0.0.0; the miner narrows it to --axon.ip,
    or to loopback with --local."""
    return mc.axon_ip or ("127.0.0.1" if mc.local else "0.0.0.0")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_range(port: int, flag: str) -> str | None:
    # bittensor's Axon.check_config asserts 1024 < port < 65535 for both ports
    return None if 1024 < port < 65535 else f"{flag} {port}: bittensor's axon takes ports 1025-65534"


def check_axon_port(mc: MinerConfig) -> Check:
    host, port = bind_host(mc), mc.axon_port
    bad = _port_range(port, "--axon.port")
    if bad:
        return Check("axon port", False, bad, "--axon.port 8091 (or another free port above 1024)")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a port in TIME_WAIT is free
            s.bind((host.strip("[]"), port))
            s.listen(1)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            return Check("axon port", False, f"port {port} on {host} is in use",
                         f"stop what listens on {port} (`ss -ltnp 'sport = :{port}'` names it) or use another "
                         f"port: --axon.port {_free_port()} (free now)")
        if e.errno == errno.EADDRNOTAVAIL:
            return Check("axon port", False, f"{host} is not an address of this machine",
                         "--axon.ip one of this machine's addresses (or leave it out: all of them)")
        return Check("axon port", False, f"cannot bind {host}:{port} ({_one_line(e)})",
                     "--axon.port another port, or --axon.ip another address")
    return Check("axon port", True, f"{host}:{port} can be bound")


def _lookup_public_ip() -> str:
    from bittensor.utils import networking

    return str(networking.get_external_ip()).strip()


def check_external(mc: MinerConfig, lookup: Callable[[], str] = _lookup_public_ip) -> Check:
    """The ip:port the axon announces on chain, as bittensor picks them: --axon.external_ip, else
    BT_AXON_EXTERNAL_IP, else a public-IP lookup (never with --local: the miner announces loopback)."""
    port = mc.external_port or mc.axon_port
    env_ip = os.environ.get("BT_AXON_EXTERNAL_IP")
    if mc.external_ip:
        ip, source = mc.external_ip, "--axon.external_ip"
    elif mc.local:
        ip, source = "127.0.0.1", "--local: loopback, no public-IP lookup"
    elif env_ip:
        ip, source = env_ip, "BT_AXON_EXTERNAL_IP"
    else:
        try:
            ip, source = _within(lookup, IP_LOOKUP_TIMEOUT_S), "looked up by bittensor"
        except Exception as e:
            return Check("external address", False, f"bittensor could not look up the public IP "
                         f"({type(e).__name__}: {_one_line(e, 80)})",
                         "--axon.external_ip YOUR_PUBLIC_IP")
    bad = _port_range(port, "--axon.external_port") if mc.external_port else None
    if bad:
        return Check("external address", False, bad, f"--axon.external_port {mc.axon_port} (or leave it out)")
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return Check("external address", False, f"{ip!r} ({source}) is not an IP address",
                     "--axon.external_ip A.B.C.D (the chain stores an address, not a host name)")
    shown = f"[{ip}]:{port}" if addr.version == 6 else f"{ip}:{port}"
    if not mc.local and not addr.is_global:  # validators on the internet cannot reach it
        return Check("external address", False, f"{shown} ({source}) is not reachable from the internet",
                     f"--axon.external_ip YOUR_PUBLIC_IP, and forward port {port} to this machine")
    return Check("external address", True, f"{shown} ({source})")


# ---- model or engine server ----------------------------------------------------------------------
def _example() -> tuple[Any, bool]:
    """The image every challenge is made from: an example street frame (a flat grey frame when the
    package was installed without examples/), and whether it came from a JPEG file."""
    from PIL import Image

    if EXAMPLE.is_file():
        return Image.open(EXAMPLE).convert("RGB"), True
    return Image.new("RGB", (1280, 720), (128, 128, 128)), False


def challenges() -> list[Any]:
    """One self-made challenge of every validator version (level 3, the heaviest, where there are
    levels), seeded: the same bytes each run."""
    import numpy as np

    from roadwork.challenge.protocols import PROTOCOLS
    from roadwork.challenge.sim import make_challenge

    img, from_jpeg = _example()
    rng = np.random.default_rng(0)
    return [make_challenge(img, rng, level=3 if p.augmented else None, protocol=p.name, from_jpeg=from_jpeg)
            for p in PROTOCOLS.values()]


def _answer_check(ch: Any, seconds: float, prob: float, tier: str, timed_out: bool, deadline: float) -> Check:
    name = f"challenge {ch.protocol}"
    size = "x".join(map(str, ch.image.size))
    detail = f"{size} JPEG answered {prob:.4f} ({tier}) in {seconds:.2f} s (deadline {deadline:g} s)"
    if not 0.0 <= prob <= 1.0:  # NaN fails this too
        return Check(name, False, f"{size} JPEG answered {prob!r}, not a probability", "check the model's output")
    if timed_out or seconds > deadline:
        return Check(name, False, detail + (": cut short by the deadline" if timed_out else ": too slow"),
                     "a faster model or device (--config with a GPU tier), or answer from a GPU server "
                     "(--engine-url)")
    return Check(name, True, detail)


def check_model(cfg: Config, model: str | None) -> Iterator[Check]:
    """Load the engine `mine` would load (or reach its --engine-url server), then answer one challenge
    of every protocol version the way the miner does, each timed against `serve.deadline_s`."""
    mc, sc = cfg.miner, cfg.serve
    if mc.engine_url:
        yield from _check_server(cfg, model)
        return
    from roadwork.challenge.protocols import PROTOCOLS

    ref = cfg.tiers[0].model
    try:
        from roadwork.engine import Engine

        t0 = time.monotonic()
        engine = Engine.from_config(cfg)
        if sc.warmup:  # the miner warms up before it serves; the first answer must not pay for it
            engine.warmup()
        loaded = time.monotonic() - t0
    except ImportError as e:
        yield Check("model", False, f"{ref}: the engine does not import ({_one_line(e)})",
                    f"{ENGINE_INSTALL}, or answer from a server: --engine-url http://HOST:8000")
        return
    except Exception as e:  # ModelError and ConfigError say what to do; anything else is the loader's own
        yield Check("model", False, f"{ref} does not load: {_one_line(e)}",
                    "--model a save_pretrained folder (config.json + weights) or a hub id; leave it out for "
                    "the embedded models/default")
        for name in PROTOCOLS:
            yield Check(f"challenge {name}", None, "skipped: no model")
        return
    tiers = ", ".join(t.name for t in engine.tiers)
    yield Check("model", True, f"{ref} ({len(engine.tiers)} tier(s): {tiers}) loaded in {loaded:.1f} s")
    from roadwork.decode import decode_base64
    from roadwork.fast.encoded import Encoded

    decode = Encoded.from_base64 if getattr(engine, "takes_encoded", False) else decode_base64
    for ch in challenges():
        t0 = time.monotonic()  # the miner's clock starts when the synapse arrives, before decoding
        try:
            image = decode(ch.wire, "synapse.image", max_pixels=sc.max_pixels, max_bytes=sc.max_image_bytes)
            result = engine.predict([image], deadline=t0 + sc.deadline_s)[0]
        except Exception as e:
            yield Check(f"challenge {ch.protocol}", False, f"no answer: {_one_line(e)}",
                        "the miner would answer its fallback: fix the model or config")
            continue
        yield _answer_check(ch, time.monotonic() - t0, result.prob, result.tier, result.timed_out, sc.deadline_s)


def _check_server(cfg: Config, model: str | None) -> Iterator[Check]:
    from roadwork.challenge.protocols import PROTOCOLS
    from roadwork.serve import MINER_INSTALL

    mc, sc = cfg.miner, cfg.serve
    skipped = [Check(f"challenge {name}", None, "skipped: no engine server") for name in PROTOCOLS]
    if model or cfg.capture.enabled:  # as mine_main refuses them
        yield Check("engine server", False, "--engine-url: the model and --capture belong to the server",
                    "leave out --model/--capture here; start the server with them: roadwork serve --model M")
        yield from skipped
        return
    try:
        from roadwork.serve.remote import EngineUnavailable, RemoteEngine
    except ImportError as e:
        yield Check("engine server", False, f"--engine-url needs httpx ({_one_line(e)})", MINER_INSTALL)
        yield from skipped
        return
    remote = RemoteEngine(mc.engine_url, mc.engine_api_key)
    state = remote.ready()
    if state != "ready":
        yield Check("engine server", False, f"{remote.url}: {state}",
                    "start it (roadwork serve --host HOST --port PORT [--api-key KEY]) and wait for /readyz; "
                    "its key goes in --engine-api-key")
        yield from skipped
        return
    yield Check("engine server", True, f"{remote.url}: ready")

    async def ask_all() -> list[Check]:
        out = []
        try:
            for ch in challenges():
                t0 = time.monotonic()
                try:
                    a = await remote.predict_base64(ch.wire, t0 + sc.deadline_s)
                except Exception as e:  # DeadlineExceeded, EngineUnavailable, ImageError: each one line
                    slow = not isinstance(e, EngineUnavailable)
                    out.append(Check(f"challenge {ch.protocol}", False, f"no answer: {_one_line(e)}",
                                     "a faster server (GPU) or a longer --deadline" if slow else
                                     "check the server's log"))
                    continue
                out.append(_answer_check(ch, time.monotonic() - t0, a.prob, a.tier, a.timed_out, sc.deadline_s))
        finally:
            await remote.aclose()
        return out

    yield from asyncio.run(ask_all())


# ---- chain ---------------------------------------------------------------------------------------
def check_registration(mc: MinerConfig, hotkey: str | None, timeout: float = CHAIN_TIMEOUT_S) -> Check:
    from roadwork.challenge.protocols import SUBNET_STATUS

    if mc.local:
        return Check("registration", None, "skipped: --local needs no chain")
    if hotkey is None:
        return Check("registration", None, "skipped: no hotkey to look up (see wallet)")
    endpoint = mc.chain_endpoint or mc.network  # bittensor: a chain endpoint overrides the network

    def lookup() -> int | None:
        import bittensor as bt

        subtensor = bt.Subtensor(network=endpoint)
        try:
            return subtensor.get_uid_for_hotkey_on_subnet(hotkey, mc.netuid)
        finally:
            subtensor.close()

    try:
        uid = _within(lookup, timeout)
    except Exception as e:  # refused, DNS, TLS, timeout: each its own class across bittensor's stack
        return Check("registration", False, f"cannot reach the chain at {endpoint!r} ({type(e).__name__}: "
                     f"{_one_line(e, 120)})",
                     "check the network, --subtensor.network / --subtensor.chain_endpoint, or run --local")
    if uid is None:
        return Check("registration", False, f"hotkey {hotkey} is not registered on netuid {mc.netuid} ({endpoint})",
                     f"btcli subnet register --netuid {mc.netuid} --wallet.name {mc.wallet_name} --wallet.hotkey "
                     f"{mc.wallet_hotkey}; first read the status: {SUBNET_STATUS}")
    return Check("registration", True, f"hotkey is uid {uid} on netuid {mc.netuid} ({endpoint})")


# ---- all of them ---------------------------------------------------------------------------------
def run_checks(cfg: Config, model: str | None = None) -> Iterator[Check]:
    """Every check, in order, each as soon as it is done. `model`: the --model given (None: the config's)."""
    mc = cfg.miner
    yield check_bittensor()
    yield check_torch(mc.engine_url)
    wallet, hotkey = check_wallet(mc)
    yield wallet
    yield check_axon_port(mc)
    yield check_external(mc)
    yield from check_model(cfg, model)
    yield check_registration(mc, hotkey)


def _marks() -> dict[bool | None, str]:
    import sys

    try:  # ✓/✗ read without colour; a terminal that cannot print them gets ASCII
        "✓✗".encode(sys.stdout.encoding or "ascii")
        return {True: "✓", False: "✗", None: "-"}
    except (UnicodeEncodeError, LookupError):
        return {True: "ok", False: "XX", None: "--"}


def format_check(c: Check, marks: dict[bool | None, str]) -> str:
    line = f"{marks[c.ok]} {c.name:<18} {c.detail}"
    return line + (f"\n    fix: {c.fix}" if c.ok is False and c.fix else "")


def summary(checks: list[Check]) -> str:
    failed = [c.name for c in checks if c.ok is False]
    skipped = [c.name for c in checks if c.ok is None]
    passed = len(checks) - len(failed) - len(skipped)
    line = f"doctor: {passed} passed, {len(failed)} failed" + (f" ({', '.join(failed)})" if failed else "")
    return line + (f", {len(skipped)} skipped" if skipped else "")


def doctor_main(model: str | None, config: str | None, miner: dict, serve: dict,
                out: Callable[[str], None] = print) -> int:
    """`roadwork doctor`: the config `mine` would build from the same flags, every check printed as it
    finishes, a summary line last. 0 when nothing failed, 1 otherwise, 2 for an unusable config."""
    from roadwork.config import ConfigError, shell_config

    over: dict = {"miner": {k: v for k, v in miner.items() if v is not None},
                  "serve": {k: v for k, v in serve.items() if v is not None}}
    try:
        cfg = shell_config(config, model, over)
    except ConfigError as e:
        out(f"doctor: {_one_line(e, 400)}")
        return 2
    marks, checks = _marks(), []
    for c in run_checks(cfg, model):
        checks.append(c)
        out(format_check(c, marks))
    out(summary(checks))
    return 1 if any(c.ok is False for c in checks) else 0

