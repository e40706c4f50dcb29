"""`SynthConfig`: every switch of synthesis in one typed place, with its default defined once.

The ablation measures a choice by switching it off: every field is a bool or a probability (0 =
off), and `with_overrides(["hard_negatives=false", "synth.night_p=0.5"])` applies recipe strings
(an optional `synth.` prefix is accepted; values are parsed and validated by pydantic).
`SynthConfig.legacy()` is the synthesis the shipped model was trained with (before issue 10), so
"today's recipe" stays reproducible.
"""

from __future__ import annotations

from typing import Any, Iterable

from pydantic import BaseModel, ConfigDict, Field


class SynthConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # what is pasted
    max_objects: int = Field(8, ge=1, le=32, description="Most roadwork objects in one positive.")
    real_cones: bool = Field(True, description="Paste the cones cut from the objects/ photos (else drawn cones).")
    new_kinds: bool = Field(True, description="Workers in hi-vis, machines, drums, water barriers, hoardings, "
                                              "arrow boards, dug-up surfaces (procedural).")
    hard_negatives: bool = Field(True, description="Issue-10 hard negatives: tail/brake and traffic lights, shop "
                                                   "lights, street lamps, wet-road reflections, red signs; also "
                                                   "mixed into positives.")
    negatives_in_positives: float = Field(0.35, ge=0, le=1, description="Share of positives that also get hard "
                                                                        "negatives (needs hard_negatives).")
    lights_day_p: float = Field(0.2, ge=0, le=1, description="Share of daytime images that get light sources "
                                                             "(brake lights, traffic lights); night images always do.")
    # where and how big
    far_p: float = Field(0.3, ge=0, le=1, description="Share of positives whose objects all stand far away "
                                                      "(30-80 m: a few pixels tall at 224 px).")
    min_height_frac: float = Field(0.025, gt=0, le=0.5, description="Smallest pasted object, as a share of "
                                                                    "the image height (~3-4 px at 224 letterboxed).")
    shadows: bool = Field(True, description="Soft contact shadow under each pasted object.")
    # whole-scene rendering, applied after pasting so background and objects agree
    night_p: float = Field(0.25, ge=0, le=1, description="Relight day scenes as night: street-lamp tint, "
                                                         "headlight pool, light blooms.")
    rain_p: float = Field(0.12, ge=0, le=1, description="Rain streaks, darker sky, wet-road reflections.")
    fog_p: float = Field(0.12, ge=0, le=1, description="Depth-dependent fog (far objects stay visible).")
    glare_p: float = Field(0.1, ge=0, le=1, description="Low sun or oncoming headlight glare with veiling light.")
    motion_blur_p: float = Field(0.15, ge=0, le=1, description="Camera motion blur along a random direction.")
    # speed
    variants_per_kind: int = Field(24, ge=0, le=1000, description="Procedural drawings kept per kind and process "
                                                                  "(0: draw every object afresh).")

    def with_overrides(self, items: Iterable[str] | dict[str, Any]) -> "SynthConfig":
        """A copy with `key=value` strings (or a dict) applied; unknown keys and bad values raise
        ValueError naming them."""
        if isinstance(items, dict):
            over = dict(items)
        else:
            over = {}
            for item in items:
                key, sep, value = str(item).partition("=")
                if not sep:
                    raise ValueError(f"synth override {item!r}: expected key=value")
                over[key.strip().removeprefix("synth.").replace("-", "_")] = value.strip()
        unknown = sorted(set(over) - set(type(self).model_fields))
        if unknown:
            raise ValueError(f"unknown synth setting(s) {', '.join(unknown)}; known: "
                             + ", ".join(type(self).model_fields))
        return type(self).model_validate({**self.model_dump(), **over})

    @classmethod
    def legacy(cls) -> "SynthConfig":
        """Synthesis as the shipped model saw it (before issue 10): cones, drawn roadwork and warm
        hard-negative objects on the day scene, nearest object brought close; nothing else."""
        return cls(new_kinds=False, hard_negatives=False, negatives_in_positives=0.0, lights_day_p=0.0, far_p=0.0,
                   night_p=0.0, rain_p=0.0, fog_p=0.0, glare_p=0.0, motion_blur_p=0.0, variants_per_kind=0)
