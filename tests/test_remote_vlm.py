"""The remote VLM client against a real OpenAI-compatible HTTP server on loopback.

vLLM and SGLang need a GPU, so the server here is `tests/openai_vlm.py` (FastAPI + uvicorn)
running the tiny in-process Qwen2.5-VL; the client speaks the same chat-completions protocol to it.
"""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest
from PIL import Image

from openai_vlm import create_app
from roadwork.config import TierConfig
from roadwork.tiers import create_tier
from roadwork.tiers.vlm import yes_no_logit
from tiny_models import start_server, tiny_dir


@pytest.fixture(scope="module")
def served():
    local = create_tier(TierConfig(name="local", kind="vlm", model=str(tiny_dir("qwen25_vl")), device="cpu"))
    url, stop = start_server(create_app(local, "tiny-qwen"))
    yield local, url
    stop()


def frames(n: int = 4) -> list[Image.Image]:
    rng = np.random.default_rng(1)
    # exactly representable through JPEG is not needed: both sides see the decoded JPEG below
    return [Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)) for _ in range(n)]


def _as_sent(remote, im: Image.Image) -> Image.Image:
    url = remote.request_body(im)["messages"][-1]["content"][0]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")


def test_remote_matches_in_process_when_whole_distribution_is_returned(served):
    local, url = served
    # the tiny vocabulary (< 64 tokens) fits in top_logprobs=64, so nothing is cut off
    remote = create_tier(TierConfig(name="remote", kind="remote_vlm", model="tiny-qwen",
                                    options={"base_url": url, "top_logprobs": 64, "concurrency": 3}))
    batch = frames()
    p_remote = remote.predict(batch)
    p_local = local.predict([_as_sent(remote, im) for im in batch])  # same JPEG bytes the server decoded
    np.testing.assert_allclose(p_remote, p_local, atol=1e-5)
    assert np.all((p_remote > 0) & (p_remote < 1))


def test_top20_answer_uses_only_what_the_server_returned(served):
    local, url = served
    remote = create_tier(TierConfig(name="remote", kind="remote_vlm", model="tiny-qwen", options={"base_url": url}))
    body = remote.request_body(frames(1)[0])
    assert body["max_tokens"] == 1 and body["logprobs"] is True and body["top_logprobs"] == 20
    answer = httpx.post(url + "/chat/completions", json=body, timeout=30).json()
    top = answer["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
    assert len(top) == 20 and all(a["logprob"] >= b["logprob"] for a, b in zip(top, top[1:]))
    z = yes_no_logit([(t["token"], t["logprob"]) for t in top])
    expect = 0.5 if z is None else 1 / (1 + np.exp(-z))
    assert remote.predict(frames(1))[0] == pytest.approx(expect, abs=1e-9)


def test_remote_errors_name_the_tier_and_server(served):
    _, url = served
    wrong = create_tier(TierConfig(name="far", kind="remote_vlm", model="other-model", options={"base_url": url}))
    with pytest.raises(RuntimeError, match=r"tier 'far': http://127\.0\.0\.1:\d+/v1/chat/completions answered HTTP 404"):
        wrong.predict(frames(1))
    r = httpx.post(url + "/chat/completions", timeout=30, json={
        "model": "tiny-qwen", "max_tokens": 1, "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://example.invalid/a.jpg"}},
            {"type": "text", "text": "yes?"}]}]})
    assert r.status_code == 400 and "data: image URLs" in r.text
    with pytest.raises(ValueError, match="needs options.base_url"):
        create_tier(TierConfig(name="r", kind="remote_vlm", model="m"))


def test_no_yes_or_no_in_the_answer_is_exactly_one_half_after_calibration():
    """A server whose top tokens hold neither yes nor no: the tier logs 'answering 0.5' and must
    answer 0.5, also through a calibrator (logit 0 would become sigmoid(b) != 0.5)."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/v1/chat/completions")
    def complete(body: dict) -> dict:
        top = [{"token": "maybe", "logprob": -0.1}, {"token": "perhaps", "logprob": -2.5}]
        return {"choices": [{"logprobs": {"content": [{"token": "maybe", "logprob": -0.1, "top_logprobs": top}]}}]}

    url, stop = start_server(app)
    try:
        remote = create_tier(TierConfig(name="r", kind="remote_vlm", model="m",
                                        options={"base_url": url,
                                                 "calibrator": {"a": 2.0, "b": 1.5}}))
        np.testing.assert_array_equal(remote.predict(frames(3)), [0.5, 0.5, 0.5])
    finally:
        stop()
