"""Model execution on a GPU: channels-last, torch.compile on static batch buckets, CUDA graphs.

`Runner` wraps `fn(pixels) -> probabilities` (the model plus the tier's post-processing). With
neither compile nor CUDA graphs it calls `fn` on each batch as it comes. With either, shapes must
be static: a batch is cut into bucket-sized pieces (`bucket_plan`), each padded with zeros to its
bucket, so only `len(buckets)` shapes are ever compiled or captured; padded rows are dropped from the
answer. Buckets up to `cuda_graph_max_batch` replay a captured CUDA graph (one launch instead of a
few hundred: what a miner's batch of one costs), larger ones run the compiled or eager function.
On a CPU every switch is inert: the tier runs `fn` eagerly.
"""

from __future__ import annotations

import bisect
import logging
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:
    import torch

    from roadwork.tiers.kinds import TorchOptions

log = logging.getLogger(__name__)


def bucket_plan(n: int, buckets: Sequence[int]) -> list[tuple[int, int]]:
    """(rows, bucket) pieces covering a batch of n, in order. Full largest buckets first; the rest goes
    to the smallest bucket that holds it when that at most doubles it (or when the bucket below is the
    smallest one: a few rows padded once beat as many batch-1 calls), else to the largest bucket below
    it, and so on (300 with 1/8/64/256/1024 -> 256 + 44 padded to 64: 320 rows run, not 1024)."""
    bs = sorted(set(int(b) for b in buckets))
    if not bs or bs[0] < 1:
        raise ValueError(f"buckets must be positive batch sizes, got {list(buckets)}")
    out: list[tuple[int, int]] = []
    left = n
    while left > 0:
        if left >= bs[-1]:
            out.append((bs[-1], bs[-1]))
            left -= bs[-1]
            continue
        k = bisect.bisect_left(bs, left)  # bs[k] is the smallest bucket >= left
        if bs[k] <= 2 * left or k <= 1:
            out.append((left, bs[k]))
            break
        out.append((bs[k - 1], bs[k - 1]))
        left -= bs[k - 1]
    return out


class Runner:
    """`fn` on a device with the execution switches of `options`; `__call__(x)` -> fn's output rows for x."""

    def __init__(self, fn: Callable[["torch.Tensor"], "torch.Tensor"], options: "TorchOptions",
                 device: "torch.device", input_shape: tuple[int, int, int] | None, dtype: "torch.dtype"):
        import torch

        self.device, self.dtype, self.input_shape = device, dtype, input_shape
        cuda = device.type == "cuda"
        self.channels_last = bool(options.channels_last and cuda)
        self.compiled = bool(options.compile and cuda)
        self.graphs_on = bool(options.cuda_graphs and cuda and input_shape is not None)
        self.static = (self.compiled or self.graphs_on) and input_shape is not None
        self.buckets = list(options.buckets)
        self.graph_max = int(options.cuda_graph_max_batch)
        self.warmup_all = bool(options.warmup_buckets)
        self.fn = torch.compile(fn, dynamic=False) if self.compiled else fn
        self._graphs: dict[int, tuple[Any, "torch.Tensor", "torch.Tensor"]] = {}

    def describe(self) -> dict[str, Any]:
        return {"device": str(self.device), "dtype": str(self.dtype).replace("torch.", ""),
                "channels_last": self.channels_last, "compile": self.compiled, "cuda_graphs": self.graphs_on,
                "buckets": self.buckets if self.static else None}

    def prepare(self, x: "torch.Tensor") -> "torch.Tensor":
        """x on the device, in the model's dtype and memory layout."""
        import torch

        x = x.to(self.device, self.dtype, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def __call__(self, x: "torch.Tensor") -> "torch.Tensor":
        import torch

        x = self.prepare(x)
        if not self.static or tuple(x.shape[1:]) != tuple(self.input_shape or ()):
            return self.fn(x)
        outs, start = [], 0
        for rows, bucket in bucket_plan(x.shape[0], self.buckets):
            piece = x[start:start + rows]
            start += rows
            if rows < bucket:
                pad = piece.new_zeros((bucket - rows, *piece.shape[1:]))
                piece = torch.cat([piece, pad]).contiguous(memory_format=torch.channels_last) \
                    if self.channels_last else torch.cat([piece, pad])
            outs.append(self._run_bucket(piece)[:rows])
        return torch.cat(outs) if len(outs) > 1 else outs[0]

    def _run_bucket(self, x: "torch.Tensor") -> "torch.Tensor":
        b = x.shape[0]
        if not (self.graphs_on and b <= self.graph_max):
            return self.fn(x)
        if b not in self._graphs:
            self._graphs[b] = self._capture(x)
        graph, static_in, static_out = self._graphs[b]
        static_in.copy_(x)
        graph.replay()
        return static_out.clone()  # the next replay overwrites static_out

    def _capture(self, x: "torch.Tensor") -> tuple[Any, "torch.Tensor", "torch.Tensor"]:
        import torch

        static_in = x.clone()
        stream = torch.cuda.Stream(device=self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):  # warm-up off the capture: lazy init, autotuning, cuDNN plans
            for _ in range(3):
                self.fn(static_in)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self.fn(static_in)
        log.debug("captured a CUDA graph for batch %d", x.shape[0])
        return graph, static_in, static_out

    def warmup(self) -> None:
        """Compile and capture every bucket now (the first request would otherwise pay for it)."""
        import torch

        if not self.static or not self.warmup_all:
            return
        for b in self.buckets:
            x = torch.zeros((b, *self.input_shape), device=self.device, dtype=self.dtype)
            self(x)
        torch.cuda.synchronize(self.device)


__all__ = ["Runner", "bucket_plan"]
