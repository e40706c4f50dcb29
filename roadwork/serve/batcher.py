"""One inference core for every front-end: an asyncio dynamic batcher feeding `Engine.predict`
on a single worker thread.

Requests from any thread or event loop (the uvicorn loop of the HTTP app, the axon's own server
loop, a plain thread) enqueue images; a collector coroutine on the batcher's own loop waits for the
first image, then up to `max_wait_ms` for more (never more than `max_batch_size`), and hands the
batch to the worker. While the worker runs, new images pile up and form the next batch, so batches
grow with load and a lone request pays at most `max_wait_ms` extra.

Deadlines are absolute `time.monotonic()` times. The engine gets the batch's earliest deadline
(minus a margin) so its cascade can stop early with the best tier so far. Each image's answer is
set as soon as the engine knows it: final answers resolve the image's future at once (an image the
first tier decided does not wait for a later tier working on others), provisional ones are kept on
the future. A caller stops waiting at its own deadline and then takes the provisional answer, so a
later tier running slower than its estimate never turns a known answer into `DeadlineExceeded`;
only an image with no answer at all (still queued, or the first tier itself too slow) raises it.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures as cf
import logging
import threading
import time
from dataclasses import dataclass
from typing import Sequence

from PIL import Image

from roadwork.engine import Engine, Result
from roadwork.serve.answers import DeadlineExceeded, ShuttingDown
from roadwork.serve.metrics import Metrics

log = logging.getLogger(__name__)


class Answer(cf.Future):
    """One image's future `Result`, plus the provisional answer the engine handed out while a later
    tier still ran on it (None before the first tier answered)."""

    provisional: Result | None = None


@dataclass
class _Item:
    image: Image.Image
    deadline: float
    future: Answer


class Batcher:
    def __init__(self, engine: Engine, max_batch_size: int = 32, max_wait_ms: float = 5.0,
                 deadline_s: float = 8.0, metrics: Metrics | None = None, engine_margin_s: float = 0.25):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.engine = engine
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.deadline_s = deadline_s
        self.metrics = metrics or Metrics()
        # The engine must stop escalating a little before the caller gives up, or its answer
        # arrives just after the caller already answered the fallback.
        self.engine_margin_s = engine_margin_s
        self.ready = threading.Event()
        self.warmup_error: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._collector: cf.Future | None = None
        self._worker = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="roadwork-engine")
        self._pending: collections.deque[_Item] = collections.deque()
        self._wakeup: asyncio.Event | None = None
        self._stopping = False
        self._closed = False
        self._inflight = 0
        self._idle = threading.Condition()

    # ---- lifecycle ----------------------------------------------------------------------------
    def start(self, warmup: bool = True) -> "Batcher":
        """Start the loop thread and (optionally) warm the engine up on the worker. Returns at once;
        `ready` is set when warm-up is done. Requests sent before that wait behind the warm-up."""
        if self._thread is not None:
            return self
        self._loop = asyncio.new_event_loop()
        started = threading.Event()

        def run_loop() -> None:
            asyncio.set_event_loop(self._loop)
            self._wakeup = asyncio.Event()
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run_loop, name="roadwork-batcher", daemon=True)
        self._thread.start()
        started.wait()
        self._collector = asyncio.run_coroutine_threadsafe(self._collect(), self._loop)
        if warmup:
            self._worker.submit(self._warmup)
        else:
            self.ready.set()
        return self

    def _warmup(self) -> None:
        t0 = time.perf_counter()
        try:
            self.engine.warmup()
        except Exception as e:  # a model that cannot run a dummy batch is not ready; say why
            self.warmup_error = f"warm-up failed: {type(e).__name__}: {e}"
            log.exception("engine warm-up failed")
            return
        log.info("engine warmed up in %.2f s", time.perf_counter() - t0)
        self.ready.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful shutdown: refuse new work, let in-flight images finish (up to `timeout`), stop."""
        if self._thread is None or self._closed:
            return
        self._closed = True
        with self._idle:
            if not self._idle.wait_for(lambda: self._inflight == 0, timeout=timeout):
                log.warning("batcher stop: %d image(s) still in flight after %.1f s", self._inflight, timeout)
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._request_stop)
        if self._collector is not None:
            try:
                self._collector.result(timeout=timeout)
            except Exception:  # pragma: no cover - collector crashed; already logged
                pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._worker.shutdown(wait=True, cancel_futures=True)
        for it in self._pending:
            _fail(it.future, ShuttingDown("batcher stopped"))
        self._pending.clear()

    def _request_stop(self) -> None:
        self._stopping = True
        assert self._wakeup is not None
        self._wakeup.set()

    @property
    def accepting(self) -> bool:
        return self._thread is not None and not self._closed

    # ---- submitting work ----------------------------------------------------------------------
    def submit(self, images: Sequence[Image.Image], deadline: float | None = None) -> list[Answer]:
        """Queue images; one concurrent future per image resolving to a `Result`."""
        if not self.accepting:
            raise ShuttingDown("the batcher is not accepting requests (not started or shutting down)")
        deadline = deadline if deadline is not None else time.monotonic() + self.deadline_s
        items = [_Item(im, deadline, Answer()) for im in images]
        with self._idle:
            self._inflight += len(items)
        for it in items:
            it.future.add_done_callback(self._done)
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._enqueue, items)
        return [it.future for it in items]

    def _done(self, _fut: cf.Future) -> None:
        with self._idle:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.notify_all()

    async def predict(self, images: Sequence[Image.Image], deadline: float | None = None) -> list[Result]:
        """Await the results from any event loop; `DeadlineExceeded` if they are not there in time."""
        deadline = deadline if deadline is not None else time.monotonic() + self.deadline_s
        return await self.wait(self.submit(images, deadline), deadline)

    async def wait(self, futs: Sequence[Answer], deadline: float) -> list[Result]:
        """Await futures from `submit` until `deadline`; then provisional answers stand in for the
        missing ones, and `DeadlineExceeded` is raised only if some image has none."""
        waiting = asyncio.gather(*(asyncio.wrap_future(f) for f in futs))
        try:
            return list(await asyncio.wait_for(waiting, timeout=max(0.0, deadline - time.monotonic())))
        except asyncio.TimeoutError:
            return _settle(futs)

    def predict_sync(self, images: Sequence[Image.Image], deadline: float | None = None) -> list[Result]:
        """Blocking variant for threads without an event loop."""
        deadline = deadline if deadline is not None else time.monotonic() + self.deadline_s
        futs = self.submit(images, deadline)
        cf.wait(futs, timeout=max(0.0, deadline - time.monotonic()))
        return _settle(futs)

    # ---- the loop side ------------------------------------------------------------------------
    def _enqueue(self, items: list[_Item]) -> None:
        self._pending.extend(items)
        self.metrics.queue_depth.set(len(self._pending))
        assert self._wakeup is not None
        self._wakeup.set()

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            if not self._pending:
                self._wakeup.clear()
                if self._stopping:
                    return
                continue
            # The first image is here; give others up to max_wait to join it.
            t_end = loop.time() + self.max_wait_s
            while len(self._pending) < self.max_batch_size and not self._stopping:
                left = t_end - loop.time()
                if left <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), timeout=left)
                except asyncio.TimeoutError:
                    break
            batch = [self._pending.popleft() for _ in range(min(self.max_batch_size, len(self._pending)))]
            if not self._pending:
                self._wakeup.clear()
            self.metrics.queue_depth.set(len(self._pending))
            now = time.monotonic()
            live = []
            for it in batch:
                if it.future.done():  # the caller gave up already
                    continue
                if it.deadline <= now:
                    _fail(it.future, DeadlineExceeded("deadline passed while queued"))
                    continue
                live.append(it)
            if live:
                await loop.run_in_executor(self._worker, self._run, live)

    def _run(self, items: list[_Item]) -> None:
        """Runs on the worker thread: one engine call for the whole batch; answers go out as they come."""
        deadline = min(it.deadline for it in items) - self.engine_margin_s

        def hand_out(j: int, r: Result) -> None:
            if r.provisional:
                items[j].future.provisional = r
            else:
                _resolve(items[j].future, r)

        t0 = time.perf_counter()
        try:
            results = self.engine.predict([it.image for it in items], deadline=deadline, on_result=hand_out)
        except Exception as e:
            log.exception("engine failed on a batch of %d image(s)", len(items))
            for it in items:
                _fail(it.future, e)
            return
        m = self.metrics
        m.inference.observe(time.perf_counter() - t0)
        m.batch_size.observe(len(items))
        for it, r in zip(items, results):
            for name in r.escalations:
                m.escalations.labels(name).inc()
            m.answered_by.labels(r.tier).inc()
            if r.timed_out:
                m.engine_deadline.inc()
            _resolve(it.future, r)  # already resolved by hand_out; kept for engines that never call it


def _settle(futs: Sequence[Answer]) -> list[Result]:
    """At the caller's deadline: each image's final answer, else its provisional one; the rest of the
    futures are cancelled (the worker skips them). `DeadlineExceeded` if an image has neither."""
    cancelled = [f.cancel() for f in futs]  # False for a future that has its answer already
    out: list[Result] = []
    for f, late in zip(futs, cancelled):
        if not late:
            out.append(f.result())  # an engine failure raises here, as it would have when awaited
        elif f.provisional is not None:
            out.append(f.provisional)
    if len(out) < len(futs):
        raise DeadlineExceeded(f"no answer for {len(futs) - len(out)} of {len(futs)} image(s) before the deadline")
    return out


def _resolve(fut: cf.Future, value: Result) -> None:
    try:
        if not fut.done():
            fut.set_result(value)
    except cf.InvalidStateError:  # cancelled by its caller meanwhile
        pass


def _fail(fut: cf.Future, exc: BaseException) -> None:
    try:
        if not fut.done():
            fut.set_exception(exc)
    except cf.InvalidStateError:
        pass
