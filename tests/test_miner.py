"""The miner, end to end: a real axon in local mode, queried by a real bittensor dendrite with an
ImageSynapse defined here exactly as the subnet's validator defines it (its own copy, as a
validator would have), no chain and nothing leaving the machine."""

import hashlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pydantic
import pytest

bt = pytest.importorskip("bittensor")

from _serve_helpers import free_port, make_wallet, validator_jpeg  # noqa: E402
from roadwork.serve.query import DendriteClient  # noqa: E402
from roadwork.config import load_config  # noqa: E402
from roadwork.decode import decode_bytes  # noqa: E402
from roadwork.engine import Engine  # noqa: E402
from roadwork.serve.answers import safe_prediction  # noqa: E402
from roadwork.serve.capture import read_index  # noqa: E402
from roadwork.serve.miner import Miner, Registry  # noqa: E402

import base64  # noqa: E402

pytestmark = pytest.mark.timeout(120)


# ---- the validator's copy of the protocol (natix/protocol.py) ------------------------------------
class ImageSynapse(bt.Synapse):
    testnet_label: int = -1
    image: str = pydantic.Field(title="Image", description="A base64 encoded image", default="", frozen=False)
    prediction: float = pydantic.Field(title="Prediction", description="Probability that the image is AI "
                                       "generated/modified", default=-1.0, frozen=False)

    def deserialize(self) -> float:
        return self.prediction


class ExtendedImageSynapse(ImageSynapse):
    model_url: str = ""
    explanation: str = pydantic.Field(title="Explanation", description="", default="", frozen=False)


# ---- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def wallets(tmp_path_factory):
    root = tmp_path_factory.mktemp("wallets")
    return {name: make_wallet(root, name) for name in ("miner", "validator", "stranger")}


def _miner_config(tiny_vit_dir, wallets, tmp_path_factory, **serve):
    return load_config(overrides={
        "tiers": [{"model": str(tiny_vit_dir)}],
        "serve": serve,
        "miner": {"local": True, "axon_port": free_port(), "model_url": "https://huggingface.co/x/roadwork",
                  "allowed_hotkeys": [wallets["validator"].hotkey.ss58_address], "fallback_prediction": 0.25},
        "capture": {"enabled": True, "dir": str(tmp_path_factory.mktemp("capture")), "band": (0.0, 1.0)},
    })


@pytest.fixture(scope="module")
def miner(tiny_vit_dir, wallets, tmp_path_factory):
    cfg = _miner_config(tiny_vit_dir, wallets, tmp_path_factory)
    m = Miner(Engine.from_config(cfg), cfg, wallet=wallets["miner"]).start()
    assert m.batcher.ready.wait(60)
    yield m
    m.stop()


@pytest.fixture(scope="module")
def validator(wallets):
    client = DendriteClient(wallets["validator"])
    yield client
    client.close()


@pytest.fixture(scope="module")
def reference(tiny_vit_dir):
    """A separate engine on the same model folder: what the miner should answer."""
    return Engine.from_pretrained(str(tiny_vit_dir))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ---- tests ---------------------------------------------------------------------------------------
def test_answer_is_the_engines_probability(miner, validator, reference, street_images):
    answers = []
    for img in street_images:
        jpeg = validator_jpeg(img)
        resp = validator.query(miner.axon.info(), ImageSynapse(image=_b64(jpeg)))
        assert resp.dendrite.status_code == 200, resp.dendrite.status_message
        expected = reference.predict([decode_bytes(jpeg)])[0].prob
        assert resp.prediction == pytest.approx(expected, abs=1e-6)
        answers.append(resp.prediction)
    assert len({round(a, 9) for a in answers}) == len(answers)  # real per-image answers, not a constant


def test_extended_synapse_is_served_too(miner, validator, reference, street_images):
    jpeg = validator_jpeg(street_images[0])
    resp = validator.query(miner.axon.info(), ExtendedImageSynapse(image=_b64(jpeg)))
    assert resp.dendrite.status_code == 200
    assert resp.model_url == "https://huggingface.co/x/roadwork"
    assert resp.prediction == pytest.approx(reference.predict([decode_bytes(jpeg)])[0].prob, abs=1e-6)


def test_unlisted_hotkey_is_refused(miner, wallets, street_images):
    stranger = DendriteClient(wallets["stranger"])
    try:
        resp = stranger.query(miner.axon.info(), ImageSynapse(image=_b64(validator_jpeg(street_images[0]))))
    finally:
        stranger.close()
    assert resp.dendrite.status_code == 403  # bittensor's status for a blacklisted request
    assert resp.prediction == -1.0  # the miner never answered


def test_undecodable_input_answers_the_fallback(miner, validator):
    before = miner.metrics.fallbacks.labels("miner", "bad input")._value.get()
    resp = validator.query(miner.axon.info(), ImageSynapse(image=_b64(b"GIF89a not really")))
    assert resp.dendrite.status_code == 200
    assert resp.prediction == 0.25
    assert miner.metrics.fallbacks.labels("miner", "bad input")._value.get() == before + 1


def test_uncertain_inputs_are_captured_byte_for_byte(miner, validator, street_images):
    jpeg = validator_jpeg(street_images[1])
    resp = validator.query(miner.axon.info(), ImageSynapse(image=_b64(jpeg), testnet_label=1))
    miner.capture.flush()
    rows = read_index(miner.cfg.capture.dir).to_pylist()
    row = [r for r in rows if r["sha256"] == hashlib.sha256(jpeg).hexdigest()][-1]  # the latest answer
    assert row["source"] == "miner" and row["testnet_label"] == 1
    assert row["prob"] == pytest.approx(resp.prediction, abs=1e-9)
    assert (row["width"], row["height"]) == (224, 224)
    assert (miner.capture.root / row["file"]).read_bytes() == jpeg


def test_missed_deadline_answers_the_fallback(tiny_vit_dir, wallets, tmp_path_factory, validator, street_images):
    cfg = _miner_config(tiny_vit_dir, wallets, tmp_path_factory, deadline_s=0.001, warmup=False)
    m = Miner(Engine.from_config(cfg), cfg, wallet=wallets["miner"]).start()
    try:
        resp = validator.query(m.axon.info(), ImageSynapse(image=_b64(validator_jpeg(street_images[0]))))
        assert resp.dendrite.status_code == 200
        assert resp.prediction == 0.25
        assert m.metrics.fallbacks.labels("miner", "no answer within 0.0 s")._value.get() == 1
    finally:
        m.stop()


def test_registry_blacklist_and_priority():
    reg = Registry(uids={"val": 0, "miner": 1}, stake=[1000.0, 3.0], permit=[True, False])
    assert reg.check("val", require_permit=True) == (False, "hotkey val recognised (uid 0)")
    assert reg.check("miner", require_permit=False)[0] is False
    refused, why = reg.check("miner", require_permit=True)
    assert refused and "no validator permit" in why
    refused, why = reg.check("nobody", require_permit=False)
    assert refused and "unregistered" in why
    assert reg.check(None, require_permit=False)[0] is True
    assert (reg.priority("val"), reg.priority("miner"), reg.priority("nobody")) == (1000.0, 3.0, 0.0)
    assert Registry.local(None).check("anyone", require_permit=True)[0] is False
    assert Registry.local(["a"]).check("b", require_permit=False)[0] is True


@pytest.mark.parametrize("value,expected", [
    (0.73, 0.73), (float("nan"), 0.5), (float("inf"), 0.5), (-1.0, 0.0), (1.0000001, 1.0), (None, 0.5),
    ("0.3", 0.3), ("x", 0.5), (0.0, 0.0), (1.0, 1.0)])
def test_safe_prediction(value, expected):
    assert safe_prediction(value, 0.5) == expected


def test_cli_mine_local_answers_and_stops_on_sigterm(tiny_vit_dir, wallets, validator, reference, street_images):
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "roadwork.cli", "mine", "--local", "--model", str(tiny_vit_dir), "--axon.port",
         str(port), "--wallet.name", "miner", "--wallet.path", str(wallets["miner"].path),
         "--allowed-hotkey", wallets["validator"].hotkey.ss58_address],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        info = bt.AxonInfo(version=0, ip="127.0.0.1", port=port, ip_type=4,
                           hotkey=wallets["miner"].hotkey.ss58_address, coldkey=wallets["miner"].coldkeypub.ss58_address)
        jpeg = validator_jpeg(street_images[2])
        deadline = time.monotonic() + 90
        while True:
            resp = validator.query(info, ImageSynapse(image=_b64(jpeg)), timeout=5)
            if resp.dendrite.status_code == 200 or time.monotonic() > deadline or proc.poll() is not None:
                break
            time.sleep(0.5)
        assert resp.dendrite.status_code == 200, proc.stdout.read() if proc.poll() is not None else "no answer"
        assert resp.prediction == pytest.approx(reference.predict([decode_bytes(jpeg)])[0].prob, abs=1e-6)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out[-2000:]
        assert "shutting down" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_registry_reads_a_metagraph():
    # A real (unsynced) bittensor Metagraph holding the arrays a sync would fill.
    mg = bt.Metagraph(netuid=72, network="finney", lite=True, sync=False)
    mg.axons = [bt.AxonInfo(version=0, ip="0.0.0.0", port=0, ip_type=4, hotkey=hk, coldkey="c") for hk in ("val", "miner")]
    mg.stake = np.array([5000.0, 12.5], dtype=np.float32)
    mg.validator_permit = np.array([True, False])
    reg = Registry.from_metagraph(mg)
    assert reg.uids == {"val": 0, "miner": 1} and reg.priority("val") == 5000.0
    assert reg.check("miner", require_permit=True)[0] is True
    assert reg.check("val", require_permit=True)[0] is False


def test_one_rate_limited_info_line_per_answer(miner, validator, wallets, street_images, caplog):
    jpeg = _b64(validator_jpeg(street_images[0]))
    caplog.set_level("INFO", logger="roadwork.serve.miner")
    try:
        miner.cfg.miner.answer_log_interval_s = 0.0
        validator.query(miner.axon.info(), ImageSynapse(image=jpeg))
        miner.cfg.miner.answer_log_interval_s = 3600.0  # the next answers fall inside the interval
        validator.query(miner.axon.info(), ImageSynapse(image=jpeg))
        validator.query(miner.axon.info(), ImageSynapse(image=jpeg))
        miner._last_log = 0.0
        resp = validator.query(miner.axon.info(), ImageSynapse(image=jpeg))
    finally:
        miner.cfg.miner.answer_log_interval_s = 1.0
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("answered ")]
    assert len(lines) == 2, lines
    hotkey = wallets["validator"].hotkey.ss58_address
    assert all(hotkey in line and " ms: " in line and "(classifier)" in line for line in lines)
    assert f"{resp.prediction:.4f}" in lines[1] and lines[1].endswith("(+2 answers not logged)")


def test_a_4000x3000_photo_gets_the_engines_probability(miner, validator, reference, phone_jpeg):
    """2026-05 sends native-resolution images: a 12-megapixel, 20 MiB phone photo must get a real answer in time."""
    jpeg = phone_jpeg
    t0 = time.monotonic()
    resp = validator.query(miner.axon.info(), ImageSynapse(image=_b64(jpeg)), timeout=9.0)
    took = time.monotonic() - t0
    assert resp.dendrite.status_code == 200, resp.dendrite.status_message
    assert took < 9.0
    expected = reference.predict([decode_bytes(jpeg)])[0].prob  # what `roadwork predict` computes for the file
    assert resp.prediction == pytest.approx(expected, abs=1e-6) and resp.prediction != 0.25  # not the fallback


# ---- roadwork query --local: the operator's own dendrite, through the CLI ------------------------
def _query_cli(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "roadwork.cli", "query", "--local", *args], capture_output=True,
                          text=True, env=env, timeout=90)


def test_cli_query_prints_the_engines_answers(miner, wallets, reference, street_images, tmp_path):
    files = []
    for i, img in enumerate(street_images[:2]):
        files.append(tmp_path / f"street{i}.jpg")
        files[-1].write_bytes(validator_jpeg(img))
    res = _query_cli("--port", str(miner.axon.port), "--wallet.name", "miner", "--wallet.path",
                     str(wallets["miner"].path), "--caller-wallet", "validator", *map(str, files))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == [str(f) for f in files]
    for f, line in zip(files, lines):
        printed = float(line.split()[1])
        assert 0.0 <= printed <= 1.0
        assert printed == pytest.approx(reference.predict([decode_bytes(f.read_bytes())])[0].prob, abs=1e-4)


def test_cli_query_of_a_closed_port_is_one_line(wallets, tmp_path):
    image = tmp_path / "x.jpg"
    image.write_bytes(b"not sent")
    port = free_port()  # nothing listens there
    res = _query_cli("--port", str(port), "--wallet.name", "miner", "--wallet.path", str(wallets["miner"].path),
                     str(image))
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and f"nothing listens on 127.0.0.1:{port}" in res.stderr
