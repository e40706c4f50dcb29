"""The SN72 challenge simulator: each validator version's augmentations and JPEG q75, reproduced exactly.

    ch = make_challenge(img, np.random.default_rng(0))                     # the default version (2026-05)
    ch = make_challenge(img, np.random.default_rng(0), protocol="2026-04")  # ch.image: what the miner decodes
    tf = ChallengeTransform(seed=0, protocol="2026-01")                     # PIL -> PIL, for training pipelines
    run_reference_check("../shared/docs/challenge_reference")

`protocols.py` says what each version does. Names load lazily: `roadwork.challenge.protocols` is pure
Python, so the CLI and the miner can read the version table without importing torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "CODES": "ops", "PARAMS": "ops", "jpeg_bytes": "ops", "letterbox": "ops", "level0": "ops",
    "rotate_nearest": "ops", "rotate_resized_crop": "ops",
    "CaseResult": "reference", "run_reference_check": "reference",
    "Challenge": "sim", "ChallengeTransform": "sim", "apply_level": "sim", "augment": "sim", "cache_fill": "sim",
    "draw_level": "sim", "make_challenge": "sim", "to_wire": "sim",
    "DEFAULT_PROTOCOL": "protocols", "PROTOCOLS": "protocols", "Protocol": "protocols", "get_protocol": "protocols",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
