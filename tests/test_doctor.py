"""`roadwork doctor` (issue 12 item 5) on real setups: a real wallet, a real port, the shipped model (in
process, or behind a real `roadwork serve` for --engine-url), real challenges of every validator version.
A healthy `--local` setup passes every check and exits 0; each broken one exits non-zero and names the
broken item; an unreachable chain or engine server is one line, no traceback."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import pytest

from _serve_helpers import free_port
from roadwork.challenge.protocols import PROTOCOLS
from roadwork.config import MinerConfig
from roadwork.serve.doctor import check_external

pytestmark = pytest.mark.timeout(120)
bt = pytest.importorskip("bittensor")
from _serve_helpers import make_wallet  # noqa: E402

NAMES = ["bittensor", "torch", "wallet", "axon port", "external address", "model",
         *(f"challenge {p}" for p in PROTOCOLS), "registration"]
REMOTE = [n if n != "model" else "engine server" for n in NAMES]  # with --engine-url


@pytest.fixture(scope="module")
def wallet(tmp_path_factory):
    return make_wallet(tmp_path_factory.mktemp("wallets"), "miner")


def _doctor(*args: str) -> tuple[int, list[str]]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONIOENCODING": "utf-8"}
    res = subprocess.run([sys.executable, "-m", "roadwork.cli", "doctor", *args], capture_output=True, text=True,
                         env=env, timeout=90)
    assert "Traceback" not in res.stdout + res.stderr, res.stdout + res.stderr
    return res.returncode, res.stdout.splitlines()


def _lines(out: list[str]) -> dict[str, tuple[str, str]]:
    """check name -> (mark, detail) of every check line."""
    found = {}
    for line in out:
        for name in dict.fromkeys(NAMES + REMOTE):
            m = re.match(rf"^([✓✗-]) {re.escape(name)}\s+(.*)$", line)
            if m:
                found[name] = (m.group(1), m.group(2))
    return found


def _local(wallet, *extra: str) -> list[str]:
    return ["--local", "--wallet.name", "miner", "--wallet.path", str(wallet.path), "--axon.port",
            str(free_port()), *extra]


def test_healthy_local_setup_passes_every_check(wallet):
    code, out = _doctor(*_local(wallet))
    lines = _lines(out)
    assert code == 0, "\n".join(out)
    assert list(lines) == NAMES, "\n".join(out)
    assert all(mark == "✓" for name, (mark, _) in lines.items() if name != "registration"), "\n".join(out)
    assert lines["registration"][0] == "-" and "--local" in lines["registration"][1]
    assert wallet.hotkey.ss58_address in lines["wallet"][1]
    assert lines["external address"][1].startswith("127.0.0.1:")  # loopback, no public-IP lookup
    assert "models/default" in lines["model"][1]
    for p in PROTOCOLS:  # each version answered a real probability within the miner's 8 s deadline
        m = re.search(r"answered (\d\.\d{4}) \(classifier\) in [\d.]+ s \(deadline 8 s\)", lines[f"challenge {p}"][1])
        assert m and 0.0 <= float(m.group(1)) <= 1.0, lines[f"challenge {p}"]
    assert lines["challenge 2026-01"][1].startswith("224x224 JPEG")
    assert "224x224" not in lines["challenge 2026-05"][1]  # 2026-05 sends the native size
    assert not any("fix:" in line for line in out)
    assert out[-1] == f"doctor: {len(NAMES) - 1} passed, 0 failed, 1 skipped"


def test_a_folder_that_is_not_a_model_is_named(wallet, tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    code, out = _doctor(*_local(wallet, "--model", str(tmp_path)))
    lines = _lines(out)
    assert code == 1, "\n".join(out)
    assert lines["model"][0] == "✗" and str(tmp_path) in lines["model"][1] and "config.json" in lines["model"][1]
    assert all(lines[f"challenge {p}"][0] == "-" for p in PROTOCOLS)
    assert out[-1].startswith("doctor: ") and "1 failed (model)" in out[-1]


def test_a_missing_wallet_is_named(tmp_path):
    code, out = _doctor("--local", "--wallet.name", "nobody", "--wallet.hotkey", "hk", "--wallet.path",
                        str(tmp_path), "--axon.port", str(free_port()))
    lines = _lines(out)
    assert code == 1, "\n".join(out)
    mark, detail = lines["wallet"]
    assert mark == "✗" and "'nobody'" in detail and "'hk'" in detail and str(tmp_path) in detail
    fix = out[out.index(next(line for line in out if line.startswith("✗ wallet"))) + 1]
    assert fix.strip().startswith("fix:") and "--wallet.name nobody" in fix
    assert "1 failed (wallet)" in out[-1]
    assert not (tmp_path / "nobody").exists()  # doctor never creates keys


def test_a_busy_axon_port_is_named(wallet):
    with socket.socket() as busy:  # another process's axon, as the OS sees it
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        code, out = _doctor("--local", "--wallet.name", "miner", "--wallet.path", str(wallet.path),
                            "--axon.port", str(port))
    lines = _lines(out)
    assert code == 1, "\n".join(out)
    assert lines["axon port"] == ("✗", f"port {port} on 127.0.0.1 is in use")
    fix = out[out.index(f"✗ {'axon port':<18} port {port} on 127.0.0.1 is in use") + 1]
    assert f":{port}" in fix and "--axon.port" in fix
    assert "1 failed (axon port)" in out[-1]


def test_an_unreachable_chain_is_one_line(wallet):
    dead = f"ws://127.0.0.1:{free_port()}"  # nothing listens there
    code, out = _doctor("--wallet.name", "miner", "--wallet.path", str(wallet.path), "--axon.port", str(free_port()),
                        "--axon.external_ip", "1.2.3.4", "--subtensor.chain_endpoint", dead)
    lines = _lines(out)
    assert code == 1, "\n".join(out)
    assert lines["registration"][0] == "✗" and "cannot reach the chain" in lines["registration"][1]
    assert dead in lines["registration"][1]
    assert lines["external address"][0] == "✓" and lines["external address"][1].startswith("1.2.3.4:")
    assert "1 failed (registration)" in out[-1]


def test_engine_url_answers_every_protocol(wallet):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "roadwork.cli", "serve", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        _wait_ready(url, server)
        code, out = _doctor(*_local(wallet, "--engine-url", url))
    finally:
        server.terminate()
        server.wait(timeout=30)
    lines = _lines(out)
    assert code == 0, "\n".join(out)
    assert list(lines) == REMOTE, "\n".join(out)
    assert lines["engine server"] == ("✓", f"{url}: ready")
    assert "not used" in lines["torch"][1]  # the miner process needs no torch with --engine-url
    for p in PROTOCOLS:
        assert lines[f"challenge {p}"][0] == "✓" and "(classifier)" in lines[f"challenge {p}"][1]


def test_an_engine_url_nobody_serves_is_named(wallet):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    code, out = _doctor(*_local(wallet, "--engine-url", url))
    lines = _lines(out)
    assert code == 1, "\n".join(out)
    assert lines["engine server"][0] == "✗" and lines["engine server"][1].startswith(f"{url}: unreachable")
    assert all(lines[f"challenge {p}"][0] == "-" for p in PROTOCOLS)
    assert "1 failed (engine server)" in out[-1]


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    import time

    import httpx

    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"roadwork serve did not get ready (exit {proc.poll()})")


def test_announced_address_follows_bittensor():
    assert check_external(MinerConfig(local=True, axon_port=9000)).detail.startswith("127.0.0.1:9000 ")
    given = check_external(MinerConfig(external_ip="1.2.3.4", axon_port=9000, external_port=19000))
    assert given.ok and given.detail.startswith("1.2.3.4:19000 ")
    private = check_external(MinerConfig(external_ip="192.168.1.5"))  # validators cannot reach it
    assert private.ok is False and "--axon.external_ip" in private.fix
    assert check_external(MinerConfig(external_ip="my.host")).ok is False  # the chain stores an address
    assert check_external(MinerConfig(external_ip="1.2.3.4", external_port=80)).ok is False  # axon refuses <= 1024


def test_doctor_takes_mines_flags_with_mines_defaults():
    import typer.main

    from roadwork.cli import app

    commands = typer.main.get_command(app).commands
    mine = {p.name: p for p in commands["mine"].params}
    shared = [p for p in commands["doctor"].params if p.name not in ("help", "local")]
    assert len(shared) >= 15
    for p in shared:  # same spellings, default, shown default and help as `roadwork mine`
        m = mine[p.name]
        assert (p.opts, p.default, p.show_default, p.help) == (m.opts, m.default, m.show_default, m.help), p.name
