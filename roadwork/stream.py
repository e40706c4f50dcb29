"""One streaming predict loop for every shell that runs an engine over many inputs (predict, eval,
label, video): keyed images in, keyed results out, in input order, `batch_size` images per engine
call."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Iterator, TypeVar

from PIL import Image

if TYPE_CHECKING:
    from roadwork.engine import Predictor, Result

K = TypeVar("K")


def stream(engine: "Predictor", items: Iterable[tuple[K, Image.Image | None]], batch_size: int
           ) -> Iterator[tuple[K, "Result | None"]]:
    """(key, result) for every (key, image) of `items`, in their order. An item without an image (a
    file that did not decode, a video the caller handles itself) passes through with None, without
    cutting a batch short. `items` is read lazily: decoding stays one batch ahead of the model."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    pending: list[tuple[K, Image.Image | None]] = []
    n = 0
    for key, image in items:
        pending.append((key, image))
        n += image is not None
        if n >= batch_size:
            yield from _flush(engine, pending)
            pending, n = [], 0
    if pending:
        yield from _flush(engine, pending)


def _flush(engine: "Predictor", pending: list) -> Iterator:
    images = [im for _, im in pending if im is not None]
    results = iter(engine.predict(images)) if images else iter(())
    for key, image in pending:
        yield key, (next(results) if image is not None else None)
