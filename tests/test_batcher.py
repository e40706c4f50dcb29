"""The inference core: dynamic batching, deadlines, graceful shutdown, and traffic capture."""

import asyncio
import threading
import time

import pytest
from PIL import Image

from roadwork.config import CaptureConfig, load_config
from roadwork.engine import Engine
from roadwork.serve.answers import DeadlineExceeded, ShuttingDown
from roadwork.serve.batcher import Batcher
from roadwork.serve.capture import Capture, read_index

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def engine(tiny_vit_dir):
    return Engine.from_pretrained(str(tiny_vit_dir))


def _images(n: int) -> list[Image.Image]:
    return [Image.new("RGB", (48, 48), (20 * i % 256, 90, 255 - 20 * i % 256)) for i in range(n)]


def _batches(b: Batcher) -> tuple[float, float]:
    """(number of engine calls, images in them) from the batch-size histogram."""
    samples = {s.name: s.value for m in b.metrics.batch_size.collect() for s in m.samples}
    return samples["roadwork_batch_size_count"], samples["roadwork_batch_size_sum"]


def test_queued_images_are_batched_up_to_the_limit(engine):
    imgs = _images(8)
    b = Batcher(engine, max_batch_size=4, max_wait_ms=200).start(warmup=False)
    try:
        results = [f.result(30) for f in b.submit(imgs)]
    finally:
        b.stop()
    assert _batches(b) == (2, 8)
    alone = engine.predict(imgs)
    assert [r.prob for r in results] == pytest.approx([r.prob for r in alone], abs=1e-6)


def test_concurrent_callers_share_engine_calls(engine):
    b = Batcher(engine, max_batch_size=8, max_wait_ms=2000).start(warmup=False)
    barrier = threading.Barrier(8)
    out: list[float] = []

    def client(img: Image.Image) -> None:
        barrier.wait()
        out.append(b.predict_sync([img])[0].prob)

    threads = [threading.Thread(target=client, args=(im,)) for im in _images(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        b.stop()
    calls, images = _batches(b)
    assert images == 8 and len(out) == 8
    assert calls <= 2  # eight separate requests, answered by one or two engine calls


def test_any_event_loop_can_await_results(engine):
    b = Batcher(engine).start(warmup=True)
    try:
        assert b.ready.wait(60)
        res = asyncio.run(b.predict(_images(2)))
    finally:
        b.stop()
    assert len(res) == 2 and all(0.0 <= r.prob <= 1.0 for r in res)


def test_stop_finishes_in_flight_work_then_refuses(engine):
    b = Batcher(engine, max_batch_size=2, max_wait_ms=50).start(warmup=False)
    futs = b.submit(_images(6))
    b.stop()
    assert all(f.done() and f.exception() is None for f in futs)
    assert not b.accepting
    with pytest.raises(ShuttingDown):
        b.submit(_images(1))


def test_missed_deadline_raises_instead_of_hanging(engine):
    b = Batcher(engine).start(warmup=False)
    try:
        with pytest.raises(DeadlineExceeded):
            b.predict_sync(_images(1), deadline=time.monotonic() - 1)
        with pytest.raises(DeadlineExceeded):
            asyncio.run(b.predict(_images(1), deadline=time.monotonic()))
        assert b.predict_sync(_images(1))[0].prob >= 0  # still healthy afterwards
    finally:
        b.stop()


def test_engine_deadline_answers_with_the_best_tier_so_far(tiny_vit_dir):
    # The second tier claims to need ~3 hours per image: with a 5 s deadline the engine must
    # answer from the first tier and say so.
    cfg = load_config(overrides={"tiers": [{"name": "fast", "model": str(tiny_vit_dir), "band": (0.0, 1.0)},
                                           {"name": "huge", "model": str(tiny_vit_dir), "cost": 1e7}]})
    b = Batcher(Engine.from_config(cfg)).start(warmup=False)
    try:
        r = b.predict_sync(_images(1), deadline=time.monotonic() + 5)[0]
    finally:
        b.stop()
    assert r.tier == "fast" and r.timed_out
    assert b.metrics.engine_deadline._value.get() == 1


def test_capture_keeps_only_the_uncertain_band(tmp_path):
    cap = Capture(CaptureConfig(enabled=True, dir=str(tmp_path), band=(0.4, 0.6)))
    img = _images(1)[0]
    assert cap.save(img, 0.9, 1, "t", "http") is None
    kept = cap.save(img, 0.5, 0, "t", "http")  # no raw bytes: stored losslessly as PNG
    assert read_index(tmp_path).num_rows == 0  # buffered until flush
    cap.close()
    rows = read_index(tmp_path).to_pylist()
    assert len(rows) == 1 and rows[0]["prob"] == 0.5 and rows[0]["file"].endswith(".png")
    assert Image.open(kept).convert("RGB").tobytes() == img.tobytes()
    assert not Capture(CaptureConfig(enabled=False, dir=str(tmp_path))).wants(0.5)


def test_a_later_tier_slower_than_its_estimate_never_turns_a_known_answer_into_a_timeout():
    # the second tier claims 1 ms per image but takes 2 s: at the caller's deadline the images the
    # first tier decided have their final answer and the escalated one its provisional answer
    from fake_tiers import FakeTier, image_with_prob
    from roadwork.config import RouterConfig

    def batcher() -> Batcher:
        engine = Engine([FakeTier("fast"), FakeTier("stuck", cost=1.0, delay_s=2.0)], [(0.4, 0.6), (0.0, 1.0)],
                        RouterConfig())
        return Batcher(engine, engine_margin_s=0.0).start(warmup=False)

    b = batcher()
    try:
        t0 = time.monotonic()
        res = b.predict_sync([image_with_prob(p) for p in (0.1, 0.5, 0.9)], deadline=t0 + 0.7)
        waited = time.monotonic() - t0
        # the worker is still inside the stuck tier: a new image has no answer of any kind yet
        with pytest.raises(DeadlineExceeded):
            b.predict_sync([image_with_prob(0.1)], deadline=time.monotonic() + 0.2)
    finally:
        b.stop()
    assert waited < 1.5
    assert [r.tier for r in res] == ["fast"] * 3
    assert [r.provisional for r in res] == [False, True, False] and res[1].timed_out
    assert res[1].prob == pytest.approx(0.5, abs=0.003)
    b = batcher()
    try:  # the same through the event-loop path the HTTP app and the miner use
        res = asyncio.run(b.predict([image_with_prob(0.5)], deadline=time.monotonic() + 0.7))
    finally:
        b.stop()
    assert res[0].provisional and res[0].tier == "fast"
