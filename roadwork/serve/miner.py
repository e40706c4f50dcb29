"""`roadwork mine`: the engine as an SN72 miner behind a bittensor axon.

Serves `ImageSynapse` (and `ExtendedImageSynapse`, which newer validators send) exactly as the
subnet defines them. Every answer is a finite float in [0, 1]: undecodable or oversized input, an
engine error and a missed deadline all answer `miner.fallback_prediction` and log why.

The answers come from an engine in this process (through the shared batcher) or, with
`miner.engine_url`, from a running `roadwork serve` (roadwork.serve.remote): then nothing heavy is
imported here (no engine, no torch), so a thin venv with bittensor and httpx runs the miner.

Who may ask: on chain, hotkeys registered on the subnet (optionally only those with a validator
permit), prioritised by stake, from a metagraph re-synced every `sync_interval_s`. With `local`
there is no chain at all: `allowed_hotkeys` (or anyone, if unset) stands in for the metagraph, so a
real dendrite on loopback can query a real axon in development and tests.
"""
# No `from __future__ import annotations` here: bittensor's `Axon.attach` compares the handlers'
# real annotation objects, which postponed (string) annotations would break.

import asyncio
import logging
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Tuple

import bittensor as bt
from bittensor.utils import networking

from roadwork.config import Config
from roadwork.decode import ImageError, decode_base64
from roadwork.fast.encoded import Encoded, as_image
from roadwork.serve.answers import DeadlineExceeded, safe_prediction
from roadwork.serve.metrics import Metrics
from roadwork.serve.protocol import SYNAPSES, ExtendedImageSynapse, ImageSynapse
from roadwork.serve.remote import EngineUnavailable, RemoteEngine

if TYPE_CHECKING:  # the engine side is imported only when the engine runs here
    from roadwork.engine import Engine
    from roadwork.serve.batcher import Batcher
    from roadwork.serve.capture import Capture

log = logging.getLogger(__name__)
LOCAL_WALLETS = Path.home() / ".cache" / "roadwork" / "local-wallets"


@dataclass
class Registry:
    """Who may query the miner: hotkey -> uid, with stake and validator permit per uid."""

    uids: dict[str, int] = field(default_factory=dict)
    stake: list[float] = field(default_factory=list)
    permit: list[bool] = field(default_factory=list)
    open: bool = False  # local mode with no allow-list: everyone is welcome

    @classmethod
    def from_metagraph(cls, mg: "bt.Metagraph") -> "Registry":
        return cls(uids={hk: i for i, hk in enumerate(mg.hotkeys)}, stake=[float(s) for s in mg.S],
                   permit=[bool(p) for p in mg.validator_permit])

    @classmethod
    def local(cls, allowed: list[str] | None) -> "Registry":
        if allowed is None:
            return cls(open=True)
        return cls(uids={hk: i for i, hk in enumerate(allowed)}, stake=[0.0] * len(allowed),
                   permit=[True] * len(allowed))

    def check(self, hotkey: str | None, require_permit: bool) -> Tuple[bool, str]:
        """(refuse?, reason) — the axon's blacklist answer."""
        if not hotkey:
            return True, "request without a dendrite hotkey"
        if self.open:
            return False, "local mode: all hotkeys allowed"
        uid = self.uids.get(hotkey)
        if uid is None:
            return True, f"unregistered hotkey {hotkey}"
        if require_permit and not self.permit[uid]:
            return True, f"hotkey {hotkey} (uid {uid}) has no validator permit"
        return False, f"hotkey {hotkey} recognised (uid {uid})"

    def priority(self, hotkey: str | None) -> float:
        uid = self.uids.get(hotkey or "")
        return self.stake[uid] if uid is not None else 0.0


def local_mode_networking() -> None:
    """No public-IP lookups off this machine: bittensor asks the internet when a dendrite (or an
    axon without an external ip) is built; in local mode the answer is loopback."""
    networking.get_external_ip = lambda: "127.0.0.1"


def load_wallet(cfg: Config) -> "bt.Wallet":
    mc = cfg.miner
    path = mc.wallet_path or (str(LOCAL_WALLETS) if mc.local else None)
    wallet = bt.Wallet(name=mc.wallet_name, hotkey=mc.wallet_hotkey, **({"path": path} if path else {}))
    if mc.local:  # throwaway development keys; never created for a chain miner
        wallet.create_if_non_existent(coldkey_use_password=False, hotkey_use_password=False, suppress=True)
    elif not wallet.hotkey_file.exists_on_device():
        raise FileNotFoundError(f"wallet {mc.wallet_name!r} has no hotkey {mc.wallet_hotkey!r} under "
                                f"{wallet.path}; create and register it with btcli first")
    return wallet


class ChainUnreachable(RuntimeError):
    """The subtensor endpoint did not answer (the message says which one and what to do)."""


def setup_logging(mc) -> None:
    """bittensor's logging flags with bittensor's meaning: --logging.debug, --logging.trace (more than
    debug, bittensor's own trace output too), --logging.logging_dir (a miner.log there as well)."""
    level = 5 if mc.logging_trace else logging.DEBUG if mc.logging_debug else logging.INFO
    logging.addLevelName(5, "TRACE")
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if mc.logging_dir:
        Path(mc.logging_dir).expanduser().mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(Path(mc.logging_dir).expanduser() / "miner.log"))
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers,
                        force=True)
    if mc.logging_trace:
        bt.logging.set_trace(True)
    elif mc.logging_debug:
        bt.logging.set_debug(True)


class Miner:
    def __init__(self, engine: "Engine | None", cfg: Config, wallet: "bt.Wallet | None" = None,
                 batcher: "Batcher | None" = None, capture: "Capture | None" = None):
        """`engine` is None with `cfg.miner.engine_url` (answers come from that server)."""
        self.cfg, mc, sc = cfg, cfg.miner, cfg.serve
        if mc.local:
            local_mode_networking()
        self.remote = RemoteEngine(mc.engine_url, mc.engine_api_key) if mc.engine_url else None
        self.owns_batcher = batcher is None and self.remote is None
        if self.remote is not None:
            if cfg.capture.enabled or capture is not None:
                raise ValueError("--capture needs the engine in this process; with --engine-url capture on "
                                 "the server: roadwork serve --capture DIR")
            self.batcher, self.metrics = None, Metrics()
        else:
            from roadwork.serve.batcher import Batcher

            self.batcher = batcher or Batcher(engine, sc.max_batch_size, sc.max_wait_ms, sc.deadline_s)
            self.metrics = self.batcher.metrics
        if capture is None and cfg.capture.enabled:
            from roadwork.serve.capture import Capture

            capture = Capture(cfg.capture)
        self.capture = capture
        self.wallet = wallet or load_wallet(cfg)
        self.subtensor = None
        self.metagraph = None
        if mc.local:
            self.registry = Registry.local(mc.allowed_hotkeys)
        else:
            endpoint = mc.chain_endpoint or mc.network  # bittensor: a chain endpoint overrides the network
            try:
                self.subtensor = bt.Subtensor(network=endpoint)
                self.metagraph = self.subtensor.metagraph(mc.netuid)
            except Exception as e:  # refused, DNS, TLS, timeout: each its own class across bittensor's stack
                raise ChainUnreachable(f"cannot reach the chain at {endpoint!r} ({type(e).__name__}: {e}); check "
                                       "the network, --subtensor.network / --subtensor.chain_endpoint, or run "
                                       "--local") from None
            self.registry = Registry.from_metagraph(self.metagraph)
        ext_ip = mc.external_ip or ("127.0.0.1" if mc.local else None)
        ip = mc.axon_ip or ("127.0.0.1" if mc.local else None)
        self.axon = bt.Axon(wallet=self.wallet, port=mc.axon_port, ip=ip, external_ip=ext_ip,
                            external_port=mc.external_port, max_workers=mc.max_workers)
        if ip is not None:
            self.axon.fast_config.host = ip  # bittensor binds 0.0.0.0 whatever ip says; local mode stays on loopback
        for cls in SYNAPSES:
            _attach(self.axon, cls, self)
        self._stop = threading.Event()
        self._sync_thread: threading.Thread | None = None
        self._active = 0  # forwards in progress, so shutdown can wait for their answers
        self._idle = threading.Condition()
        self._log_lock = threading.Lock()
        self._last_log, self._unlogged = 0.0, 0

    # ---- the three axon hooks -----------------------------------------------------------------
    def blacklist(self, synapse: bt.Synapse) -> Tuple[bool, str]:
        hotkey = synapse.dendrite.hotkey if synapse.dendrite is not None else None
        refuse, why = self.registry.check(hotkey, self.cfg.miner.require_validator_permit)
        if refuse:
            log.info("blacklisted: %s", why)
            self.metrics.requests.labels("miner", "blacklisted").inc()
        return refuse, why

    def priority(self, synapse: bt.Synapse) -> float:
        return self.registry.priority(synapse.dendrite.hotkey if synapse.dendrite is not None else None)

    async def forward(self, synapse: ImageSynapse) -> ImageSynapse:
        with self._idle:
            self._active += 1
        try:
            return await self._answer(synapse)
        finally:
            with self._idle:
                self._active -= 1
                self._idle.notify_all()

    async def _answer(self, synapse: ImageSynapse) -> ImageSynapse:
        t0 = time.monotonic()
        mc, sc = self.cfg.miner, self.cfg.serve
        # Answer before the validator stops listening, whichever comes first.
        budget = min(sc.deadline_s, max(0.5, float(synapse.timeout or 12.0) - 1.0))
        deadline = t0 + budget
        prob: float = mc.fallback_prediction
        why, result, image, tier = "", None, None, "fallback"
        try:
            text = synapse.image
            if isinstance(text, str) and len(text) > sc.max_image_bytes * 4 // 3 + 4:
                raise ImageError("synapse.image", f"{len(text)} base64 characters is over the limit")
            if self.remote is not None:  # the server decodes, checks the limits and answers
                if not isinstance(text, str) or not text:
                    raise ImageError("synapse.image", "empty or not a base64 string")
                answer = await self.remote.predict_base64(text, deadline)
                prob, tier = answer.prob, answer.tier
            else:
                # a GPU engine gets the checked bytes and decodes them in its batch (nvjpeg)
                encoded = getattr(self.batcher.engine, "takes_encoded", False)
                decode = Encoded.from_base64 if encoded else decode_base64
                image = await asyncio.get_running_loop().run_in_executor(
                    None, lambda: decode(text, "synapse.image", max_pixels=sc.max_pixels,
                                         max_bytes=sc.max_image_bytes))
                result = (await self.batcher.predict([image], deadline))[0]
                prob, tier = result.prob, result.tier
        except ImageError as e:
            why = f"bad input: {e.reason}"
        except DeadlineExceeded:
            why = f"no answer within {budget:.1f} s"
        except EngineUnavailable as e:  # logged below as one line: expected while the server restarts
            why = f"engine unavailable: {e}"
        except Exception as e:  # the validator must still get a valid number
            why = f"{type(e).__name__}: {e}"
            log.exception("miner forward failed")
        synapse.prediction = safe_prediction(prob, mc.fallback_prediction, why)
        if isinstance(synapse, ExtendedImageSynapse):
            synapse.model_url = mc.model_url
        outcome = "fallback" if why else "ok"
        if why:
            log.warning("answered fallback %.3f to %s: %s", synapse.prediction, _caller(synapse), why)
            self.metrics.fallbacks.labels("miner", why.split(":")[0][:40]).inc()
        self._log_answer(synapse, time.monotonic() - t0, tier if not why else "fallback")
        self.metrics.requests.labels("miner", outcome).inc()
        self.metrics.images.labels("miner").inc()
        self.metrics.latency.labels("miner").observe(time.monotonic() - t0)
        if self.capture is not None and result is not None and self.capture.wants(result.prob):
            await asyncio.get_running_loop().run_in_executor(None, self._capture, synapse, image, result)
        return synapse

    def _log_answer(self, synapse: ImageSynapse, seconds: float, tier: str) -> None:
        """One INFO line per answer (caller, latency, probability, tier), at most one per
        `answer_log_interval_s`; the answers skipped meanwhile are counted on the next line."""
        now = time.monotonic()
        with self._log_lock:
            if now - self._last_log < self.cfg.miner.answer_log_interval_s:
                self._unlogged += 1
                return
            skipped, self._unlogged, self._last_log = self._unlogged, 0, now
        log.info("answered %s in %.0f ms: %.4f (%s)%s", _caller(synapse), seconds * 1000, synapse.prediction, tier,
                 f" (+{skipped} answers not logged)" if skipped else "")

    def _capture(self, synapse: ImageSynapse, image, result) -> None:
        import base64

        try:
            self.capture.save(as_image(image), result.prob, result.label, result.tier, "miner",
                              raw=base64.b64decode(synapse.image), testnet_label=synapse.testnet_label)
        except Exception:  # capturing must never cost an answer
            log.exception("capture failed")

    # ---- lifecycle ----------------------------------------------------------------------------
    def start(self) -> "Miner":
        mc = self.cfg.miner
        if self.owns_batcher:
            self.batcher.start(warmup=self.cfg.serve.warmup)
        if self.remote is not None:  # not fatal: the miner answers the fallback until the server is up
            state = self.remote.ready()
            (log.info if state == "ready" else log.warning)("engine server %s: %s", self.remote.url, state)
        if not mc.local:
            hotkey = self.wallet.hotkey.ss58_address
            if not self.subtensor.is_hotkey_registered(hotkey_ss58=hotkey, netuid=mc.netuid):
                raise RuntimeError(f"hotkey {hotkey} is not registered on netuid {mc.netuid} ({mc.network}); "
                                   f"register it with btcli first")
            self.axon.serve(netuid=mc.netuid, subtensor=self.subtensor)  # publish ip:port on chain
            self._sync_thread = threading.Thread(target=self._resync_loop, name="roadwork-metagraph", daemon=True)
            self._sync_thread.start()
        if mc.metrics_port is not None:
            from prometheus_client import start_http_server

            start_http_server(mc.metrics_port, addr="127.0.0.1", registry=self.metrics.registry)
        self.axon.start()
        if not _wait_port(self.axon.fast_config.host, self.axon.port, up=True, timeout=30):
            raise RuntimeError(f"axon did not start listening on port {self.axon.port} (port in use?)")
        log.info("miner axon %s listening on %s:%d (%s)", self.wallet.hotkey.ss58_address,
                 self.axon.fast_config.host, self.axon.port, "local" if mc.local else f"netuid {mc.netuid}")
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking requests, let in-flight ones finish, then drain and stop the batcher."""
        self._stop.set()
        self.axon.stop()  # uvicorn stops listening and waits for open requests
        _wait_port(self.axon.fast_config.host, self.axon.port, up=False, timeout=timeout)
        with self._idle:
            self._idle.wait_for(lambda: self._active == 0, timeout=timeout)
        if self.owns_batcher:
            self.batcher.stop(timeout=timeout)
        if self.capture is not None:
            self.capture.close()

    def sync(self) -> None:
        """Re-read the metagraph; on failure keep the last one (refusing everyone would cost more)."""
        if self.subtensor is None:
            return
        try:
            self.metagraph.sync(subtensor=self.subtensor)
            self.registry = Registry.from_metagraph(self.metagraph)
            log.info("metagraph synced: %d hotkeys", len(self.registry.uids))
        except Exception:
            log.exception("metagraph sync failed; keeping the previous one")

    def _resync_loop(self) -> None:
        while not self._stop.wait(self.cfg.miner.sync_interval_s):
            self.sync()

    def run(self) -> None:
        """Start, serve until SIGINT/SIGTERM, then shut down gracefully."""
        done = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: done.set())
        self.start()
        done.wait()
        log.info("shutting down: finishing in-flight requests")
        self.stop()


def _attach(axon: "bt.Axon", cls: type, miner: Miner) -> None:
    """Attach the miner's hooks for one synapse class (bittensor routes on the class name and
    checks each hook's exact signature, hence one closure set per class)."""

    async def forward(synapse: cls) -> cls:
        return await miner.forward(synapse)

    async def blacklist(synapse: cls) -> Tuple[bool, str]:
        return miner.blacklist(synapse)

    async def priority(synapse: cls) -> float:
        return miner.priority(synapse)

    axon.attach(forward_fn=forward, blacklist_fn=blacklist, priority_fn=priority)


def _caller(synapse: bt.Synapse) -> str:
    return synapse.dendrite.hotkey if synapse.dendrite is not None and synapse.dendrite.hotkey else "?"


def _wait_port(host: str, port: int, up: bool, timeout: float = 10.0) -> bool:
    """Wait until `host:port` accepts (up) or refuses (not up) connections."""
    host = "127.0.0.1" if host in ("0.0.0.0", "", None) else host
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                if up:
                    return True
        except OSError:
            if not up:
                return True
        time.sleep(0.02)
    return False


def build_engine(cfg: Config) -> "Engine | None":
    """The in-process engine, or None when `miner.engine_url` names a server (nothing heavy imported)."""
    if cfg.miner.engine_url:
        return None
    from roadwork.engine import Engine

    return Engine.from_config(cfg)


def run_miner(engine: "Engine | None", cfg: Config) -> None:
    Miner(engine, cfg).run()


def mine_main(model: str | None, config: str | None, miner: dict, serve: dict, capture_dir: str | None) -> int:
    """`roadwork mine`: config (defaults < YAML < flags), engine, axon. Returns the exit code."""
    from roadwork.config import ConfigError, shell_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    over: dict = {"miner": {k: v for k, v in miner.items() if v is not None},
                  "serve": {k: v for k, v in serve.items() if v is not None}}
    try:
        cfg = shell_config(config, model, over, capture_dir)
    except ConfigError as e:
        log.error("%s", e)
        return 2
    if cfg.miner.engine_url and (model or cfg.capture.enabled):
        log.error("--engine-url: the model%s belong to the server (roadwork serve --model M%s)",
                  " and --capture" if cfg.capture.enabled else "", " --capture DIR" if cfg.capture.enabled else "")
        return 2
    setup_logging(cfg.miner)
    try:
        run_miner(build_engine(cfg), cfg)
    except (FileNotFoundError, RuntimeError) as e:  # missing wallet, unregistered hotkey
        log.error("%s", e)
        return 1
    return 0
