"""Random streams for picklable transforms that run in DataLoader worker processes."""

from __future__ import annotations

import os

import numpy as np


def worker_rng(seed: int | None, rng: np.random.Generator | None, pid: int) -> tuple[np.random.Generator, int]:
    """The generator a transform should draw from in this process: `(rng, pid)` to store back.

    A generator copied into a forked DataLoader worker would repeat its siblings' draws, so a new
    one is made whenever the process changes, keyed on `seed` and the worker's own seed (which
    torch derives from the loader's generator: seeded runs stay reproducible). No seed: fresh entropy.
    """
    here = os.getpid()
    if rng is not None and pid == here:
        return rng, pid
    if seed is None:
        return np.random.default_rng(), here
    try:
        from torch.utils.data import get_worker_info

        info = get_worker_info()
    except ImportError:  # pragma: no cover - torch is a core dependency
        info = None
    key = [seed] if info is None else [seed, info.seed % (2 ** 63)]
    return np.random.default_rng(key), here
