"""`SynthConfig`: every switch of synthesis in one typed place, with its default defined once.

The ablation measures a choice by switching it off: every field is a bool or a probability, and
`with_overrides(["hard_negatives=false", "synth.night_p=0.5"])` applies recipe strings (an optional
`synth.` prefix is accepted, values are parsed and validated by pydantic). `SynthConfig.legacy()`
is the synthesis the shipped model was trained with (before issue 10), so "today's recipe" stays
reproducible.
"""

from __future__ import annotations

from typing import Any, Iterable

from pydantic import BaseModel, ConfigDict, Field


class SynthConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_objects: int = Field(8, ge=1, le=32, description="Most roadwork objects in one positive.")
    shadows: bool = Field(True, description="Soft contact shadow under each pasted object.")

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
        """Synthesis as the shipped model saw it (before issue 10)."""
        return cls()
