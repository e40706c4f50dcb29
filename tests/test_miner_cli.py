"""`roadwork mine` from the command line: bittensor's flags with bittensor's meaning, and one clear line
(never a traceback) for the mistakes an operator makes first. The chain itself cannot run here: an
unreachable endpoint is a real closed port on loopback."""

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from _serve_helpers import free_port
from roadwork.cli import app

pytestmark = pytest.mark.timeout(120)


def _mine(*args, env=None, timeout=90):
    full = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "roadwork.cli", "mine", *args], capture_output=True, text=True,
                          env=full, timeout=timeout)


def _short_and_clear(res, *needles):
    err = res.stderr.strip()
    assert res.returncode != 0, res.stderr
    assert "Traceback" not in res.stderr and len(err.splitlines()) <= 4, err
    for n in needles:
        assert n in " ".join(err.split()), err


def test_mine_without_bittensor_names_the_install_command(tmp_path):
    fake = tmp_path / "no_bittensor" / "bittensor"
    fake.mkdir(parents=True)  # an import of bittensor fails exactly as when it is not installed
    (fake / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'bittensor'\", name='bittensor')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(fake.parent), os.environ.get("PYTHONPATH", "")])}
    res = _mine("--local", env=env)
    _short_and_clear(res, "bittensor", 'pip install -e ".[miner]" && pip install --no-deps -r requirements-miner.txt')
    assert res.returncode == 2


def test_mine_version():
    res = _mine("--version")
    assert res.returncode == 0 and res.stdout.startswith("roadwork ")


bt = pytest.importorskip("bittensor")
from _serve_helpers import make_wallet  # noqa: E402


def test_chain_mode_with_no_chain_is_one_line(tiny_vit_dir, tmp_path):
    wallet = make_wallet(tmp_path, "miner")
    dead = f"ws://127.0.0.1:{free_port()}"  # nothing listens there
    res = _mine("--model", str(tiny_vit_dir), "--wallet.name", "miner", "--wallet.path", str(wallet.path),
                "--subtensor.chain_endpoint", dead)
    _short_and_clear(res, "cannot reach the chain", dead, "--local")
    assert res.returncode == 1


def test_missing_wallet_is_one_line(tiny_vit_dir, tmp_path):
    res = _mine("--model", str(tiny_vit_dir), "--wallet.name", "nobody", "--wallet.path", str(tmp_path / "none"))
    _short_and_clear(res, "nobody", "btcli")
    assert res.returncode == 1


def test_bittensor_flags_reach_the_miner_config(monkeypatch, tmp_path):
    import logging

    from roadwork.serve import miner as miner_mod

    seen = {}
    monkeypatch.setattr(miner_mod, "run_miner", lambda engine, cfg: seen.setdefault("cfg", cfg))
    monkeypatch.setattr(miner_mod, "build_engine", lambda cfg: None)
    logs = tmp_path / "logs"
    res = CliRunner().invoke(app, [
        "mine", "--axon.ip", "127.0.0.2", "--axon.port", "9001", "--axon.external_ip", "203.0.113.7",
        "--axon.external_port", "19001", "--axon.max_workers", "3", "--logging.debug", "--logging.logging_dir",
        str(logs), "--subtensor.chain_endpoint", "ws://10.0.0.1:9944", "--subtensor.network", "test",
        "--wallet.name", "w", "--wallet.hotkey", "h", "--netuid", "323"])
    assert res.exit_code == 0, res.output
    mc = seen["cfg"].miner
    assert (mc.axon_ip, mc.axon_port, mc.external_ip, mc.external_port, mc.max_workers) == \
        ("127.0.0.2", 9001, "203.0.113.7", 19001, 3)
    assert (mc.chain_endpoint, mc.network, mc.wallet_name, mc.wallet_hotkey, mc.netuid) == \
        ("ws://10.0.0.1:9944", "test", "w", "h", 323)
    assert mc.logging_debug and not mc.logging_trace and logging.getLogger().level == logging.DEBUG
    logging.getLogger("roadwork.test").info("to the file")
    assert "to the file" in (logs / "miner.log").read_text()
    logging.basicConfig(level=logging.WARNING, force=True)  # leave no file handler behind
