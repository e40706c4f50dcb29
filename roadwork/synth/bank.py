"""The object bank: real cone cut-outs plus the procedural kinds, and how a bank is loaded or cached."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from roadwork.synth import kinds
from roadwork.synth.config import SynthConfig
from roadwork.synth.cone_cutouts import BankError, cut_cones, read_boxes
from roadwork.synth.kinds import Cutout


@dataclass
class ObjectBank:
    """Real cone cut-outs plus the procedural kinds. Picklable (numpy arrays and a dict)."""

    cones: list[Cutout] = field(default_factory=list)
    weights: dict[str, float] = field(default_factory=lambda: dict(kinds.POSITIVE_WEIGHTS))

    @classmethod
    def build(cls, objects_dir: str | Path | None, limit: int | None = None, progress=None) -> "ObjectBank":
        """Cut the cones of `objects_dir` (None: procedural objects only)."""
        cones = cut_cones(objects_dir, limit=limit, progress=progress)[0] if objects_dir else []
        return cls(cones)

    def positive(self, rng: np.random.Generator, kind: str | None = None,
                 config: SynthConfig | None = None) -> Cutout:
        """A roadwork object: `kind` or one drawn by weight; real cones when there are any. With a
        `config`, its kinds, cone and drawing-cache switches apply."""
        use_cones = bool(self.cones) and (config is None or config.real_cones)
        if kind is None:
            weights = kinds.NEW_POSITIVE_WEIGHTS if config is not None and config.new_kinds else self.weights
            names = [k for k in weights if k != "cone" or use_cones]
            p = np.array([weights[k] for k in names])
            kind = names[rng.choice(len(names), p=p / p.sum())]
        if kind == "cone":
            if not use_cones:
                kind = "cone_drawn"
            else:
                cut = self.cones[rng.integers(len(self.cones))]
                rgba = cut.rgba[:, ::-1] if rng.random() < 0.5 else cut.rgba  # mirrored cones are cones
                return Cutout(np.ascontiguousarray(rgba), "cone", cut.origin)
        return Cutout(self._draw(kind, rng, config), kind)

    def negative(self, rng: np.random.Generator, config: SynthConfig | None = None) -> Cutout:
        """A hard negative: orange, red or striped, but not roadwork."""
        weights = kinds.NEW_NEGATIVE_WEIGHTS if config is not None and config.hard_negatives else kinds.NEGATIVE_WEIGHTS
        names = list(weights)
        p = np.array([weights[k] for k in names])
        kind = names[rng.choice(len(names), p=p / p.sum())]
        return Cutout(self._draw(kind, rng, config), kind)

    @staticmethod
    def _draw(kind: str, rng: np.random.Generator, config: SynthConfig | None) -> np.ndarray:
        rgba = kinds.draw_variant(kind, rng, config.variants_per_kind if config is not None else 0)
        mirror = config is not None and config.variants_per_kind and kind not in kinds.NO_MIRROR
        return rgba[:, ::-1] if mirror and rng.random() < 0.5 else rgba

    def save(self, folder: str | Path, source: str = "") -> Path:
        """Write the cone cut-outs as PNGs plus `index.json`, for inspection and fast reloading."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        cones = []
        for i, c in enumerate(self.cones):
            name = f"cone_{i:04d}.png"
            Image.fromarray(c.rgba, "RGBA").save(folder / name)
            cones.append({"file": name, "kind": c.kind, "origin": c.origin})
        (folder / "index.json").write_text(json.dumps({"source": source, "cones": cones}, indent=1))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "ObjectBank":
        """A bank written by `save`."""
        folder = Path(folder)
        try:
            index = json.loads((folder / "index.json").read_text())
            cones = [Cutout(np.asarray(Image.open(folder / e["file"]).convert("RGBA")), e["kind"], e["origin"])
                     for e in index["cones"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise BankError(f"{folder}: not a saved object bank ({type(e).__name__}: {e})") from None
        return cls(cones)

    @staticmethod
    def saved_source(folder: str | Path) -> str | None:
        """The objects folder a saved bank was cut from (None if `folder` holds no bank)."""
        try:
            return str(json.loads((Path(folder) / "index.json").read_text()).get("source", ""))
        except (OSError, ValueError, AttributeError):
            return None


def load_bank(objects: str, cache: Path, progress: Callable[[str, int, int], None] | None = None) -> ObjectBank:
    """`objects`: a saved bank folder, an objects folder with boxes.csv (cut once, cached in `cache`),
    or "none" for procedural objects only."""
    if objects.lower() == "none":
        return ObjectBank()
    path = Path(objects)
    if ObjectBank.saved_source(path) is not None:
        return ObjectBank.load(path)
    if ObjectBank.saved_source(cache) == str(path.absolute()):
        return ObjectBank.load(cache)
    total = len(read_boxes(path))  # raises BankError naming boxes.csv when it is missing or malformed
    bank = ObjectBank.build(path, progress=(lambda k: progress("cutting cones", k, total)) if progress else None)
    bank.save(cache, source=str(path.absolute()))
    return bank
