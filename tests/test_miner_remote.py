"""One engine behind several miners: real `roadwork mine --engine-url` processes (real bittensor axons on
loopback, local mode) sharing one real `roadwork serve` process, queried by a real dendrite. The server's
answer cache counts the second miner's copy of an image as a hit; killing the server makes the miners
answer the fallback within the deadline; restarting it brings real answers back."""

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest

bt = pytest.importorskip("bittensor")

from _serve_helpers import free_port, make_wallet, validator_jpeg  # noqa: E402
from roadwork.serve.query import DendriteClient  # noqa: E402
from roadwork.decode import decode_bytes  # noqa: E402
from roadwork.engine import Engine  # noqa: E402
from roadwork.serve.protocol import ImageSynapse  # noqa: E402

pytestmark = pytest.mark.timeout(240)
FALLBACK = 0.25
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def _serve(model, port):
    return subprocess.Popen([sys.executable, "-m", "roadwork.cli", "serve", "--model", str(model), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)


def _wait_ready(url, proc, timeout=90.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"roadwork serve did not get ready (exit {proc.poll()})")


def _cache_counts(url):
    text = httpx.get(f"{url}/metrics", timeout=5).text
    get = lambda name: float(re.search(rf"^{name}_total (\S+)$", text, re.M).group(1))  # noqa: E731
    return get("roadwork_answer_cache_hits"), get("roadwork_answer_cache_misses")


def _stop(proc, sig=signal.SIGTERM):
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def setup(tiny_vit_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("wallets")
    wallets = {n: make_wallet(root, n) for n in ("miner1", "miner2", "validator")}
    server_port = free_port()
    url = f"http://127.0.0.1:{server_port}"
    server = _serve(tiny_vit_dir, server_port)
    miners, infos = [], []
    try:
        _wait_ready(url, server)
        for name in ("miner1", "miner2"):
            port = free_port()
            miners.append(subprocess.Popen(
                [sys.executable, "-m", "roadwork.cli", "mine", "--local", "--engine-url", url, "--axon.port", str(port),
                 "--wallet.name", name, "--wallet.path", str(root), "--fallback", str(FALLBACK),
                 "--allowed-hotkey", wallets["validator"].hotkey.ss58_address],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV))
            w = wallets[name]
            infos.append(bt.AxonInfo(version=0, ip="127.0.0.1", port=port, ip_type=4, hotkey=w.hotkey.ss58_address,
                                     coldkey=w.coldkeypub.ss58_address))
        validator = DendriteClient(wallets["validator"])
        state = {"url": url, "port": server_port, "server": [server], "miners": miners, "infos": infos,
                 "validator": validator, "model": tiny_vit_dir, "wallets": root}
        yield state
        validator.close()
        server = state["server"][0]  # the test restarts it: stop the one running now
    finally:
        for m in miners:
            _stop(m)
        _stop(server)


def _ask(setup, info, jpeg, timeout=9.0):
    t0 = time.monotonic()
    resp = setup["validator"].query(info, ImageSynapse(image=base64.b64encode(jpeg).decode()), timeout=timeout)
    return resp, time.monotonic() - t0


def _wait_axon(setup, info, jpeg):
    end = time.monotonic() + 90
    while time.monotonic() < end:
        resp, _ = _ask(setup, info, jpeg, timeout=5)
        if resp.dendrite.status_code == 200:
            return resp
        assert all(m.poll() is None for m in setup["miners"]), setup["miners"][0].stdout.read()[-2000:]
        time.sleep(0.5)
    raise AssertionError("miner axon never answered")


def test_two_miners_share_one_server_and_its_cache(setup, tiny_vit_dir, street_images):
    jpeg = validator_jpeg(street_images[0])
    warm = validator_jpeg(street_images[1])
    for info in setup["infos"]:
        _wait_axon(setup, info, warm)  # both miners up (each asks once for another image)
    hits0, misses0 = _cache_counts(setup["url"])
    answers = [_ask(setup, info, jpeg)[0] for info in setup["infos"]]
    hits, misses = _cache_counts(setup["url"])
    assert (hits - hits0, misses - misses0) == (1, 1)  # the second miner's copy cost no engine call
    expected = Engine.from_pretrained(str(tiny_vit_dir)).predict([decode_bytes(jpeg)])[0].prob
    for resp in answers:
        assert resp.dendrite.status_code == 200
        assert resp.prediction == pytest.approx(expected, abs=1e-6) and resp.prediction != FALLBACK


def test_server_killed_then_back(setup, street_images):
    jpeg = validator_jpeg(street_images[2])
    before = [_ask(setup, info, jpeg)[0].prediction for info in setup["infos"]]
    assert all(p != FALLBACK for p in before)
    setup["server"][0].kill()  # mid-run, no goodbye
    setup["server"][0].wait()
    for info in setup["infos"]:
        resp, took = _ask(setup, info, jpeg, timeout=9.0)
        assert resp.dendrite.status_code == 200, resp.dendrite.status_message
        assert resp.prediction == FALLBACK and took < 9.0
    setup["server"][0] = server = _serve(setup["model"], setup["port"])
    _wait_ready(setup["url"], server)
    after = [_ask(setup, info, jpeg)[0].prediction for info in setup["infos"]]
    assert after == pytest.approx(before, abs=1e-6)  # real answers again, no miner restarted
    assert all(m.poll() is None for m in setup["miners"])


def test_a_slow_server_still_gets_the_fallback_in_time(setup, street_images):
    """A server that accepts but never answers: the miner gives up at its own deadline."""
    import socket
    import threading

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    held = []
    stop = threading.Event()

    def accept():
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])  # read nothing, answer nothing
            except OSError:
                pass

    threading.Thread(target=accept, daemon=True).start()
    port = free_port()
    try:
        w = make_wallet(setup["wallets"], "slowminer")
        proc = subprocess.Popen(
            [sys.executable, "-m", "roadwork.cli", "mine", "--local", "--engine-url",
             f"http://127.0.0.1:{sock.getsockname()[1]}", "--axon.port", str(port), "--wallet.name", "slowminer",
             "--wallet.path", str(setup["wallets"]), "--fallback", str(FALLBACK), "--deadline", "2"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
        try:
            info = bt.AxonInfo(version=0, ip="127.0.0.1", port=port, ip_type=4, hotkey=w.hotkey.ss58_address,
                               coldkey=w.coldkeypub.ss58_address)
            resp = _wait_axon({**setup, "miners": [proc]}, info, validator_jpeg(street_images[0]))
            assert resp.prediction == FALLBACK
            resp, took = _ask(setup, info, validator_jpeg(street_images[1]))
            assert resp.prediction == FALLBACK and 1.5 < took < 4.0  # its 2 s deadline, not the dendrite's 9 s
        finally:
            _stop(proc)
            out = proc.stdout.read()
        assert "no answer within 2.0 s" in out and "Traceback" not in out, out[-3000:]
    finally:
        stop.set()
        for c in held:
            c.close()
        sock.close()


def test_the_remote_miner_imports_no_torch(tmp_path):
    """The thin miner's whole start-up path (CLI module, config, miner with --engine-url) loads no engine."""
    code = f"""
import sys, json
from roadwork import cli  # noqa: F401  the command's module, as `roadwork mine` loads it
from roadwork.config import shell_config
from roadwork.serve.miner import Miner, build_engine
cfg = shell_config(None, None, {{"miner": {{"local": True, "engine_url": "http://127.0.0.1:9", "axon_port": 0,
                                        "wallet_path": {str(tmp_path)!r}}}}})
m = Miner(build_engine(cfg), cfg)
heavy = [n for n in ("torch", "torchvision", "transformers", "timm", "cv2", "onnxruntime", "roadwork.engine",
                     "roadwork.serve.batcher", "pyarrow") if n in sys.modules]
print(json.dumps(heavy))
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout.strip().splitlines()[-1]) == []
