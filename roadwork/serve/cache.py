"""The server's answer cache: one engine call per distinct image, however many miners ask.

A validator sends the same image to many miners at once; miners sharing one `roadwork serve`
(`roadwork mine --engine-url`) would each pay for it. Answers are kept by the SHA-256 of the image
bytes in a small LRU, and an image already being computed is waited for instead of computed again
(the copies arrive within milliseconds of each other, before the first answer exists).
Answers cut short by the deadline are not kept: the next request may have time for the full cascade.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import hashlib
import threading
from typing import Callable

from prometheus_client import CollectorRegistry, Counter

from roadwork.serve.answers import DeadlineExceeded


def image_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class AnswerCache:
    def __init__(self, size: int, registry: CollectorRegistry):
        self.size = size
        self._done: collections.OrderedDict[str, object] = collections.OrderedDict()
        self._pending: dict[str, cf.Future] = {}
        self._lock = threading.Lock()
        self.hits = Counter("roadwork_answer_cache_hits", "Images answered from the answer cache (or by "
                            "joining the same image's computation in progress).", registry=registry)
        self.misses = Counter("roadwork_answer_cache_misses", "Images the answer cache did not have.",
                              registry=registry)

    def futures(self, keys: list[str], compute: Callable[[list[int]], list[cf.Future]]) -> list[cf.Future]:
        """One future per key: resolved at once for a cached answer, shared with the computation in
        progress for the same image, else from `compute(indices of the misses)`."""
        out: list[cf.Future | None] = [None] * len(keys)
        todo: list[int] = []
        with self._lock:
            for i, k in enumerate(keys):
                if self.size and k in self._done:
                    self._done.move_to_end(k)
                    f: cf.Future = cf.Future()
                    f.set_result(self._done[k])
                    out[i] = f
                elif self.size and k in self._pending:
                    out[i] = _follow(self._pending[k])
                else:
                    todo.append(i)
        self.hits.inc(len(keys) - len(todo))
        self.misses.inc(len(todo))
        if todo:
            for i, f in zip(todo, compute(todo)):
                out[i] = f
                if self.size:
                    with self._lock:
                        self._pending.setdefault(keys[i], f)
                    f.add_done_callback(lambda f, k=keys[i]: self._finish(k, f))
        return out  # type: ignore[return-value]

    def _finish(self, key: str, fut: cf.Future) -> None:
        with self._lock:
            if self._pending.get(key) is fut:
                del self._pending[key]
            if fut.cancelled() or fut.exception() is not None or getattr(fut.result(), "timed_out", False):
                return
            self._done[key] = fut.result()
            self._done.move_to_end(key)
            while len(self._done) > self.size:
                self._done.popitem(last=False)


def _follow(source: cf.Future) -> cf.Future:
    """A future with `source`'s outcome that its own caller may cancel without cancelling `source`
    (the batcher's callers cancel what they stop waiting for)."""
    out: cf.Future = cf.Future()

    def copy(f: cf.Future) -> None:
        if out.done():
            return
        if f.cancelled():  # the first asker gave up while it was queued
            out.set_exception(DeadlineExceeded("the same image's first request gave up while queued"))
        elif f.exception() is not None:
            out.set_exception(f.exception())
        else:
            out.set_result(f.result())

    source.add_done_callback(lambda f: _safe(copy, f))
    return out


def _safe(fn: Callable[[cf.Future], None], f: cf.Future) -> None:
    try:
        fn(f)
    except cf.InvalidStateError:  # cancelled by its own caller meanwhile
        pass
