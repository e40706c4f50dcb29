"""Every tier kind in one table: where its code lives and its typed options.

A config names a kind (`TierConfig.kind`) and its settings (`TierConfig.options`); the options are
validated against the kind's pydantic model when the config is loaded, so a mistyped option is one
line naming the field, and the defaults below appear in `Config.to_yaml`. This module imports
pydantic only: a tier's module (torch, transformers, onnxruntime) is imported when a tier of that
kind is built, so a miner running the classifier never imports a VLM stack.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from roadwork.tiers.tiling import DEFAULT_OVERLAP

if TYPE_CHECKING:
    from roadwork.tiers.base import Tier


class TierOptions(BaseModel):
    """Options of one kind; unknown keys are errors (a typo must not fall back to a default)."""

    model_config = ConfigDict(extra="forbid")


# A fitted calibrator: inline ({a, b} Platt or a LogisticCalibrator dict) or a json path. None: look for
# roadwork_calibrator.json beside a local model folder.
Calibrator = Union[dict[str, Any], str, None]


class OnnxOptions(TierOptions):
    precision: Literal["fp32", "int8"] = "fp32"  # which export of the folder (`roadwork export-onnx`)
    threads: int | None = Field(None, ge=1)  # onnxruntime intra-op threads (None: every core)


DEFAULT_BUCKETS = [1, 8, 64, 256, 1024]


class TorchOptions(TierOptions):
    """How a torch model runs on a GPU (roadwork.fast.execution); each switch is inert on a CPU, where
    the tier keeps the transformers processor and eager execution. `TierConfig.dtype` (auto = bf16 on
    CUDA) is the precision switch."""

    # encoded JPEGs decoded in batches by nvjpeg and preprocessed on the device (roadwork.fast.gpu_decode);
    # other formats and corrupt data fall back to the CPU decoder one by one
    gpu_decode: bool = True
    channels_last: bool = True  # NHWC activations: the tensor cores' layout for convolutions
    compile: bool = False  # torch.compile per batch bucket (static shapes; ~10-60 s at start per bucket)
    cuda_graphs: bool = False  # replay captured graphs for buckets up to cuda_graph_max_batch
    cuda_graph_max_batch: int = Field(64, ge=1)  # larger batches are long enough to hide launch gaps
    # batch sizes compiled/captured; a batch is cut and padded to these (roadwork.fast.execution.bucket_plan)
    # only when compile or cuda_graphs is on. Eager execution runs any size as it comes.
    buckets: list[int] = Field(default_factory=lambda: list(DEFAULT_BUCKETS), min_length=1)
    warmup_buckets: bool = True  # warm-up runs every bucket (compiles and captures before the first request)

    @model_validator(mode="after")
    def _sorted_buckets(self) -> "TorchOptions":
        if any(b < 1 for b in self.buckets):
            raise ValueError("buckets must be positive batch sizes")
        self.buckets = sorted(set(self.buckets))
        return self


class ClassifierOptions(OnnxOptions, TorchOptions):
    # auto: a current ONNX export of the folder on a machine without CUDA (onnxruntime, no torch), else
    # torch. precision/threads apply to the ONNX backend, the TorchOptions to the torch one.
    backend: Literal["auto", "torch", "onnx"] = "auto"
    # tiles > 0: an image larger than the model input is scored as its letterboxed whole and a tiles x tiles
    # grid of overlapping tiles, max-pooled (roadwork.tiers.tiling; torch backend). 0 = the whole image only.
    tiles: int = Field(0, ge=0)
    tile_overlap: float = Field(DEFAULT_OVERLAP, ge=0, lt=1)  # share of a tile's side shared with its neighbour


DEFAULT_POSITIVE = [
    "a photo of road construction work",
    "a street with traffic cones and road barriers",
    "a road work zone with construction workers and machinery",
    "a road with a construction warning sign",
    "an excavated road under repair",
]
DEFAULT_NEGATIVE = [
    "a photo of a normal street",
    "a clear road with cars driving",
    "an empty highway",
    "a city street with buildings and parked cars",
    "a rural road through fields",
]


class ZeroShotOptions(TierOptions):
    positive: list[str] = Field(default_factory=lambda: list(DEFAULT_POSITIVE), min_length=1)
    negative: list[str] = Field(default_factory=lambda: list(DEFAULT_NEGATIVE), min_length=1)
    family: Literal["auto", "clip", "siglip"] = "auto"  # auto reads the model's config
    text_max_length: int = Field(64, ge=1)  # SigLIP text padding (it was trained with max_length=64)
    calibrator: Calibrator = None


# Names from Objects365 (D-FINE *-obj365), COCO and common roadwork data sets; matched without case.
# COCO alone has none of cones, barrels, barriers or machines: a COCO detector only sees the
# "stop sign" flaggers hold, which is weak evidence — prefer an Objects365 or roadwork-trained model.
DEFAULT_CLASS_MAP: dict[str, list[str | int]] = {
    "cone": ["traffic cone", "cone", "construction cone", "traffic_cone"],
    "barrel": ["barrel/bucket", "barrel", "drum barrel", "traffic barrel"],
    "barrier": ["barrier", "barricade", "hurdle", "jersey barrier", "road barrier", "fence barrier"],
    "sign": ["traffic sign", "work sign", "road work sign", "construction sign", "temporary sign", "stop sign"],
    "worker": ["helmet", "worker", "construction worker", "hard hat", "safety vest"],
    "machine": ["machinery vehicle", "crane", "excavator", "bulldozer", "construction vehicle", "machine"],
}


class DetectorOptions(TierOptions):
    # group -> the detector's label names (any case) or ids
    class_map: dict[str, list[str | int]] = Field(default_factory=lambda: {k: list(v) for k, v in
                                                                           DEFAULT_CLASS_MAP.items()}, min_length=1)
    min_score: float = Field(0.05, ge=0, le=1)  # detections kept
    count_threshold: float = Field(0.3, ge=0, le=1)  # detections counted
    calibrator: Calibrator = None


DEFAULT_QUESTION = ("Is there roadwork in this image: a work zone with traffic cones, barrels, barriers, "
                    "work signs, workers, construction machines or excavation on or beside the road? "
                    "Answer with yes or no only.")
YES = ["yes", "Yes", "YES", " yes", " Yes"]
NO = ["no", "No", "NO", " no", " No"]


class VLMOptions(TierOptions):
    question: str = DEFAULT_QUESTION
    system: str | None = None
    yes_tokens: list[str] = Field(default_factory=lambda: list(YES), min_length=1)
    no_tokens: list[str] = Field(default_factory=lambda: list(NO), min_length=1)
    calibrator: Calibrator = None


class RemoteVLMOptions(VLMOptions):
    base_url: str | None = None  # the OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (required)
    api_key_env: str = "ROADWORK_VLM_API_KEY"  # environment variable holding the Bearer token
    timeout_s: float = Field(30.0, gt=0)
    concurrency: int = Field(8, ge=1)  # requests in flight (the server batches them)
    top_logprobs: int = Field(20, ge=1)
    jpeg_quality: int = Field(90, ge=1, le=100)
    max_side: int | None = Field(None, ge=1)  # shrink larger images before sending

    @model_validator(mode="after")
    def _needs_url(self) -> "RemoteVLMOptions":
        if not self.base_url:
            raise ValueError("remote_vlm needs options.base_url (e.g. http://127.0.0.1:8000/v1)")
        return self


class ColorOptions(TierOptions):
    """The colour tier has no options: everything it needs is in its json (`TierConfig.model`)."""


@dataclass(frozen=True)
class Kind:
    module: str
    cls: str
    options: type[TierOptions]

    def load(self) -> "type[Tier]":
        return getattr(importlib.import_module(self.module), self.cls)


KINDS: dict[str, Kind] = {
    "classifier": Kind("roadwork.tiers.classifier", "ClassifierTier", ClassifierOptions),
    "onnx": Kind("roadwork.fast.onnx_tier", "OnnxTier", OnnxOptions),
    "zeroshot": Kind("roadwork.tiers.zeroshot", "ZeroShotTier", ZeroShotOptions),
    "detector": Kind("roadwork.tiers.detector", "DetectorTier", DetectorOptions),
    "vlm": Kind("roadwork.tiers.vlm", "VLMTier", VLMOptions),
    "remote_vlm": Kind("roadwork.tiers.vlm", "RemoteVLMTier", RemoteVLMOptions),
    "color": Kind("roadwork.tiers.color", "ColorTier", ColorOptions),
}


def available_tiers() -> list[str]:
    return sorted(KINDS)


def kind_of(name: str) -> Kind:
    """The table row of a kind; a ValueError with a "did you mean" hint for an unknown one."""
    if name not in KINDS:
        close = difflib.get_close_matches(name, available_tiers(), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ValueError(f"unknown kind '{name}' ({hint}known: {', '.join(available_tiers())})")
    return KINDS[name]
