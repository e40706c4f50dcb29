"""`roadwork query`: talk to your own miner the way a validator does.

A real `bt.Dendrite` (signed with a wallet's hotkey) sends `ImageSynapse`s to the miner's axon. The
`AxonInfo` carries the miner's own hotkey, because the axon checks the signature against it; with
local mode networking nothing asks the internet for this machine's public IP.
"""
# No `from __future__ import annotations`: see roadwork/serve/miner.py (bittensor reads real annotations).

import asyncio
import base64
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import bittensor as bt

from roadwork.serve.miner import local_mode_networking
from roadwork.serve.protocol import ImageSynapse

VALIDATOR_TIMEOUT_S = 9.0  # what the subnet's validator waits for an answer (docs/SN72.md)


class DendriteClient:
    """A validator: one `bt.Dendrite` living on one event loop in its own thread (bittensor's
    dendrite breaks when reused across `asyncio.run` calls), queried synchronously."""

    def __init__(self, wallet: "bt.Wallet"):
        local_mode_networking()  # the dendrite would otherwise look up its public IP online
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.dendrite = self._run(self._make(wallet))

    @staticmethod
    async def _make(wallet: "bt.Wallet") -> "bt.Dendrite":
        return bt.Dendrite(wallet=wallet)

    def _run(self, coro, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def query(self, axon_info: "bt.AxonInfo", synapse: bt.Synapse, timeout: float = VALIDATOR_TIMEOUT_S):
        """The full synapse back (prediction, status code), as a validator with deserialize=False."""
        out = self._run(self.dendrite(axons=[axon_info], synapse=synapse, deserialize=False, timeout=timeout),
                        timeout=timeout + 30)
        return out[0]

    def close(self) -> None:
        self._run(self.dendrite.aclose_session())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


def axon_info(host: str, port: int, wallet: "bt.Wallet") -> "bt.AxonInfo":
    """Where the miner listens, under the hotkey it signs with (the miner's wallet)."""
    return bt.AxonInfo(version=0, ip=host, port=port, ip_type=4, hotkey=wallet.hotkey.ss58_address,
                       coldkey=wallet.coldkeypub.ss58_address)


@dataclass
class Answer:
    path: str
    prediction: float | None  # None: no answer (status says why)
    status: int
    message: str
    ms: float


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def query_images(paths: list[str], host: str, port: int, miner_wallet: "bt.Wallet", caller: "bt.Wallet",
                 timeout: float = VALIDATOR_TIMEOUT_S) -> list[Answer]:
    """Send each file's bytes (base64, as the validator sends its JPEG) to the axon; one Answer each."""
    local_mode_networking()
    info = axon_info(host, port, miner_wallet)
    client = DendriteClient(caller)
    answers = []
    try:
        for path in paths:
            data = Path(path).read_bytes()
            t0 = time.monotonic()
            resp = client.query(info, ImageSynapse(image=base64.b64encode(data).decode()), timeout=timeout)
            code = int(resp.dendrite.status_code or 0)
            answers.append(Answer(path, float(resp.prediction) if code == 200 else None, code,
                                  str(resp.dendrite.status_message or ""), (time.monotonic() - t0) * 1000))
    finally:
        client.close()
    return answers


def load_local_wallet(name: str, hotkey: str, path: str | None) -> "bt.Wallet":
    """An existing wallet (`mine --local` creates its own under LOCAL_WALLETS); FileNotFoundError names it."""
    from roadwork.serve.miner import LOCAL_WALLETS

    wallet = bt.Wallet(name=name, hotkey=hotkey, path=path or str(LOCAL_WALLETS))
    if not wallet.hotkey_file.exists_on_device() or not wallet.coldkeypub_file.exists_on_device():
        raise FileNotFoundError(f"no wallet {name!r} with hotkey {hotkey!r} under {wallet.path}; start the miner "
                                f"once (roadwork mine --local) or name its wallet with --wallet.name/--wallet.path")
    return wallet


def query_main(paths: list[str], host: str, port: int, wallet_name: str, wallet_hotkey: str,
               wallet_path: str | None, caller_name: str | None, timeout: float, print_line, fail_line) -> int:
    """`roadwork query --local`: one line per image (path, probability, latency). Returns the exit code:
    1 when the miner is not there or any image got no answer, 2 for a bad argument."""
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        fail_line(f"{missing[0]}: no such file")
        return 2
    try:
        miner_wallet = load_local_wallet(wallet_name, wallet_hotkey, wallet_path)
        caller = load_local_wallet(caller_name, wallet_hotkey, wallet_path) if caller_name else miner_wallet
    except FileNotFoundError as e:
        fail_line(str(e))
        return 1
    if not port_open(host, port):
        fail_line(f"nothing listens on {host}:{port}; start the miner (roadwork mine --local --axon.port {port}) "
                  f"or give its --port")
        return 1
    code = 0
    for a in query_images(paths, host, port, miner_wallet, caller, timeout):
        if a.prediction is None:
            fail_line(f"{a.path}: no answer (status {a.status}: {a.message})")
            code = 1
        else:
            print_line(f"{a.path} {a.prediction:.4f} ({a.ms:.0f} ms)")
    return code
