"""Tier registry and factory: `create_tier(cfg)` builds any registered model family.

A tier takes a batch of RGB PIL images and returns P(roadwork) per image; it owns its
preprocessing. Families register themselves with `@register_tier("kind")`; modules are imported
lazily so that a miner with only the classifier installed never imports a VLM stack.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Callable

from roadwork.config import ConfigError, TierConfig
from roadwork.tiers.base import Tier

_REGISTRY: dict[str, Callable[[TierConfig], Tier]] = {}

# kind -> module that registers it (imported on first use)
_LAZY = {
    "classifier": "roadwork.tiers.classifier",
    "zeroshot": "roadwork.tiers.zeroshot",
    "detector": "roadwork.tiers.detector",
    "vlm": "roadwork.tiers.vlm",
    "remote_vlm": "roadwork.tiers.vlm",
    "color": "roadwork.tiers.color",
    "onnx": "roadwork.fast.onnx_tier",
}


def register_tier(kind: str) -> Callable[[Callable[[TierConfig], Tier]], Callable[[TierConfig], Tier]]:
    def deco(builder: Callable[[TierConfig], Tier]) -> Callable[[TierConfig], Tier]:
        _REGISTRY[kind] = builder
        return builder

    return deco


def available_tiers() -> list[str]:
    return sorted(set(_REGISTRY) | set(_LAZY))


def create_tier(cfg: TierConfig) -> Tier:
    if cfg.kind not in _REGISTRY and cfg.kind in _LAZY:
        importlib.import_module(_LAZY[cfg.kind])
    if cfg.kind not in _REGISTRY:
        close = difflib.get_close_matches(cfg.kind, available_tiers(), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(f"tier '{cfg.name}': unknown kind '{cfg.kind}' ({hint}known: {', '.join(available_tiers())})")
    return _REGISTRY[cfg.kind](cfg)


__all__ = ["Tier", "available_tiers", "create_tier", "register_tier"]
