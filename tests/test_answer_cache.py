"""The server's answer cache: LRU by image hash, one computation per image in flight, and no keeping of
answers the deadline cut short; over HTTP, the same image twice costs one engine call."""

import base64
import concurrent.futures as cf
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client import CollectorRegistry

from _serve_helpers import ThreadedServer, validator_jpeg
from roadwork.config import load_config
from roadwork.engine import Engine
from roadwork.serve.answers import DeadlineExceeded
from roadwork.serve.cache import AnswerCache
from roadwork.serve.http import create_app


@dataclass
class R:
    prob: float
    timed_out: bool = False


class Computer:
    """Stands in for the batcher: records what it was asked, resolves when told."""

    def __init__(self):
        self.asked: list[list[int]] = []
        self.futs: list[cf.Future] = []

    def __call__(self, idx):
        self.asked.append(list(idx))
        new = [cf.Future() for _ in idx]
        self.futs += new
        return new


def test_hits_misses_and_lru_eviction():
    cache, comp = AnswerCache(2, CollectorRegistry()), Computer()
    f = cache.futures(["a", "b"], comp)
    for fut, p in zip(f, (0.1, 0.2)):
        fut.set_result(R(p))
    assert [x.result().prob for x in cache.futures(["a", "b"], comp)] == [0.1, 0.2]
    assert comp.asked == [[0, 1]] and (cache.hits._value.get(), cache.misses._value.get()) == (2, 2)
    cache.futures(["c"], comp)[0].set_result(R(0.3))  # evicts the least recently used: "a"
    cache.futures(["a"], comp)
    assert comp.asked[-1] == [0]


def test_an_image_in_flight_is_computed_once_and_callers_cancel_only_their_own():
    cache, comp = AnswerCache(8, CollectorRegistry()), Computer()
    first = cache.futures(["x"], comp)[0]
    second, third = cache.futures(["x", "x"], comp)
    assert comp.asked == [[0]] and cache.hits._value.get() == 2
    second.cancel()  # one caller gave up: the others still get the answer
    first.set_result(R(0.7))
    assert third.result(timeout=1).prob == 0.7 and not first.cancelled()


def test_timed_out_answers_are_not_kept_and_a_cancelled_source_is_a_deadline():
    cache, comp = AnswerCache(8, CollectorRegistry()), Computer()
    cache.futures(["t"], comp)[0].set_result(R(0.5, timed_out=True))
    cache.futures(["t"], comp)
    assert len(comp.asked) == 2
    src = cache.futures(["q"], comp)[0]
    follower = cache.futures(["q"], comp)[0]
    src.cancel()
    with pytest.raises(DeadlineExceeded):
        follower.result(timeout=1)


def test_size_zero_turns_it_off():
    cache, comp = AnswerCache(0, CollectorRegistry()), Computer()
    cache.futures(["a"], comp)[0].set_result(R(0.1))
    cache.futures(["a", "a"], comp)
    assert comp.asked == [[0], [0, 1]]


def test_http_same_image_twice_is_one_engine_call(tiny_vit_dir, street_images):
    cfg = load_config(overrides={"tiers": [{"model": str(tiny_vit_dir)}], "serve": {"cache_size": 4}})
    app = create_app(Engine.from_config(cfg), cfg)
    body = {"images": [base64.b64encode(validator_jpeg(street_images[0])).decode()]}
    with ThreadedServer(app) as srv:
        a = httpx.post(f"{srv.url}/v1/predict", json=body, timeout=30).json()["results"][0]
        b = httpx.post(f"{srv.url}/v1/predict", json=body, timeout=30).json()["results"][0]
        metrics = httpx.get(f"{srv.url}/metrics").text
    assert a["prob"] == b["prob"] and a["tier"] == b["tier"]
    assert "roadwork_answer_cache_hits_total 1.0" in metrics and "roadwork_answer_cache_misses_total 1.0" in metrics
    assert "roadwork_batch_size_count 1.0" in metrics  # one engine call (warm-up does not count)
