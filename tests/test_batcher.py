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
