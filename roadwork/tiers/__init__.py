"""Tier factory: `create_tier(cfg)` builds any kind listed in `roadwork.tiers.kinds.KINDS`.

A tier takes a batch of RGB PIL images and returns P(roadwork) per image; it owns its preprocessing.
The kinds' modules are imported on first use, so a miner with only the classifier installed never
imports a VLM stack.
"""

from __future__ import annotations

from roadwork.config import ConfigError, TierConfig
from roadwork.tiers.base import Tier
from roadwork.tiers.kinds import KINDS, available_tiers, kind_of


def create_tier(cfg: TierConfig) -> Tier:
    try:
        kind = kind_of(cfg.kind)
    except ValueError as e:  # a config built in code (model_copy) skips the load-time check
        raise ConfigError(f"tier '{cfg.name}': {e}") from None
    return kind.load().from_config(cfg)


__all__ = ["KINDS", "Tier", "available_tiers", "create_tier"]
