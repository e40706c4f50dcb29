"""Property tests: whatever bytes arrive, the miner answers a valid number and the HTTP API a 4xx,
and both are still up afterwards. Real servers on loopback, a real dendrite."""

import base64
import io
import json

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from _serve_helpers import ThreadedServer, free_port, make_wallet, png_header, validator_jpeg
from conftest import EXAMPLES
from roadwork.config import load_config
from roadwork.engine import Engine
from roadwork.serve.http import create_app

bt = pytest.importorskip("bittensor")
from roadwork.serve.miner import Miner  # noqa: E402
from roadwork.serve.protocol import ImageSynapse  # noqa: E402

pytestmark = pytest.mark.timeout(180)
FALLBACK = 0.5
SETTINGS = settings(max_examples=30, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

JPEG = validator_jpeg(Image.open(sorted(EXAMPLES.glob("*.jpg"))[0]))

# Every one of these is unusable as an image.
random_bytes = st.binary(max_size=2048)
truncated_jpeg = st.integers(0, len(JPEG) - 1).map(lambda n: JPEG[:n])
degenerate_png = st.sampled_from([(0, 224), (224, 0), (0, 0), (20000, 20000), (100_000, 1), (1, 60_000_000)]
                                 ).map(lambda wh: png_header(*wh))
bad_bytes = st.one_of(random_bytes, truncated_jpeg, degenerate_png)
malformed_b64 = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300)
bad_b64 = st.one_of(malformed_b64, bad_bytes.map(lambda b: base64.b64encode(b).decode()))
json_junk = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                         lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                         max_leaves=12)


def test_bad_inputs_really_are_bad():
    """Guard for the properties below: none of the generated inputs decodes."""
    from roadwork.decode import ImageError, decode_bytes

    for wh in [(0, 224), (224, 0), (0, 0), (20000, 20000), (100_000, 1), (1, 60_000_000)]:
        with pytest.raises(ImageError):
            decode_bytes(png_header(*wh))
    with pytest.raises(ImageError):
        decode_bytes(JPEG[:-40])


# ---- HTTP ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def http(tiny_vit_dir):
    cfg = load_config(overrides={"tiers": [{"model": str(tiny_vit_dir)}], "serve": {"warmup": False}})
    with ThreadedServer(create_app(Engine.from_config(cfg), cfg)) as srv:
        yield srv
        # Neither fuzzing run killed it: still healthy, still answering good images.
        assert srv.alive and httpx.get(f"{srv.url}/healthz").status_code == 200
        r = httpx.post(f"{srv.url}/v1/predict", json={"images": [base64.b64encode(JPEG).decode()]})
        assert r.status_code == 200 and 0.0 <= r.json()["results"][0]["prob"] <= 1.0


@SETTINGS
@given(payload=bad_b64)
@example(payload=base64.b64encode(png_header(20000, 20000)).decode())
@example(payload=base64.b64encode(png_header(0, 224)).decode())
@example(payload="")
def test_http_json_bad_image_is_4xx(http, payload):
    r = httpx.post(f"{http.url}/v1/predict", json={"images": [payload]})
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["errors"][0]["index"] == 0


@SETTINGS
@given(payload=bad_bytes)
@example(payload=png_header(20000, 20000))
@example(payload=png_header(224, 0))
@example(payload=b"")
def test_http_multipart_bad_image_is_4xx(http, payload):
    r = httpx.post(f"{http.url}/v1/predict", files=[("files", ("x.jpg", payload, "image/jpeg"))])
    assert 400 <= r.status_code < 500, r.text


@settings(SETTINGS, max_examples=20)
@given(body=json_junk)
def test_http_arbitrary_json_is_4xx(http, body):
    r = httpx.post(f"{http.url}/v1/predict", content=json.dumps(body).encode(),
                   headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, r.text


# ---- miner ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def miner_and_validator(tiny_vit_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz_wallets")
    mw, vw = make_wallet(root, "miner"), make_wallet(root, "validator")
    cfg = load_config(overrides={"tiers": [{"model": str(tiny_vit_dir)}], "serve": {"warmup": False},
                                 "miner": {"local": True, "axon_port": free_port(), "fallback_prediction": FALLBACK,
                                           "allowed_hotkeys": [vw.hotkey.ss58_address]}})
    miner = Miner(Engine.from_config(cfg), cfg, wallet=mw).start()
    from roadwork.serve.query import DendriteClient  # needs bittensor, like this test

    client = DendriteClient(vw)
    yield miner, client
    try:
        # Still up and still answering real images with the model, not the fallback.
        good = client.query(miner.axon.info(), ImageSynapse(image=base64.b64encode(JPEG).decode()))
        assert good.dendrite.status_code == 200 and 0.0 <= good.prediction <= 1.0
        assert good.prediction == pytest.approx(miner.batcher.engine.predict([Image.open(io.BytesIO(JPEG))])[0].prob)
    finally:
        client.close()
        miner.stop()


@settings(SETTINGS, max_examples=25)
@given(payload=bad_b64)
@example(payload=base64.b64encode(png_header(20000, 20000)).decode())
@example(payload=base64.b64encode(png_header(0, 0)).decode())
@example(payload=base64.b64encode(JPEG[: len(JPEG) // 2]).decode())
@example(payload="")
def test_miner_always_answers_a_valid_probability(miner_and_validator, payload):
    miner, client = miner_and_validator
    resp = client.query(miner.axon.info(), ImageSynapse(image=payload))
    assert resp.dendrite.status_code == 200, resp.dendrite.status_message
    assert resp.prediction == FALLBACK  # finite, in [0, 1], and the configured fallback
