"""One typed config for the whole engine: tiers, router, serving, miner, capture, labelling.

Precedence is defaults < YAML < CLI flags. Unknown keys are errors (with a "did you mean" hint),
because a mistyped threshold that silently falls back to its default costs a miner real reward.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from roadwork.decode import MAX_BYTES, MAX_PIXELS

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO_ROOT / "models" / "default"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TierConfig(_Strict):
    """One tier of the cascade. `kind` picks the family from the tier registry."""

    name: str = "classifier"
    kind: str = "classifier"
    model: str = str(DEFAULT_MODEL)  # hub id or local folder
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    batch_size: int = Field(32, ge=1)
    # Escalate to the next tier when this tier's calibrated probability lies inside [low, high].
    band: tuple[float, float] = (0.2, 0.8)
    # ms per image, used by the router's deadline and by calibrate-cascade's budget. None: the model
    # folder's measured cost_ms (else the family's default). calibrate-cascade replaces it with what it
    # measures and writes that into the config it outputs: a measurement always wins over an estimate.
    cost: float | None = Field(None, ge=0)
    # The kind's settings, validated by its model in roadwork.tiers.kinds (defaults filled in, so they
    # show in `to_yaml`); a tier reads them typed through `roadwork.tiers.kinds.kind_of(kind).options`.
    options: dict[str, Any] = Field(default_factory=dict, validate_default=True)

    @field_validator("kind")
    @classmethod
    def _kind_known(cls, v: str) -> str:
        from roadwork.tiers.kinds import kind_of  # imported here: roadwork.tiers imports this module

        kind_of(v)
        return v

    @field_validator("options")
    @classmethod
    def _options_typed(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        from roadwork.tiers.kinds import KINDS

        kind = info.data.get("kind")  # absent when the kind itself failed: that error is the one to read
        if kind not in KINDS:
            return v
        return KINDS[kind].options.model_validate(v).model_dump(mode="json")

    @field_validator("band")
    @classmethod
    def _band_ok(cls, v: tuple[float, float]) -> tuple[float, float]:
        lo, hi = v
        if not (0.0 <= lo <= hi <= 1.0):
            raise ValueError(f"band must satisfy 0 <= low <= high <= 1, got {v}")
        return v


class RouterConfig(_Strict):
    deadline_s: float | None = Field(None, gt=0)  # answer with the best tier so far when time runs out
    stacker: str | None = None  # path to a fitted stacker (json); None = last tier that ran decides
    # p > threshold is roadwork. Every tier's probability is calibrated (a classifier's stored threshold is
    # folded into its output), so 0.5 is the default; raise it to trade recall for precision.
    threshold: float = Field(0.5, ge=0, le=1)


class ServeConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_key: str | None = None
    max_batch_size: int = Field(32, ge=1)
    max_wait_ms: float = Field(5.0, ge=0)
    deadline_s: float = Field(8.0, gt=0)  # below the validator's 9 s dendrite timeout
    # Limits on one image (HTTP and miner; defaults from roadwork/decode.py, where they are defined once):
    # 2026-05 validators send native-resolution photos, so a 20 MiB (max_image_bytes), 4000x3000 phone JPEG
    # must pass; over 50 MP (max_pixels) is refused from its header as a decompression bomb. A JPEG of at
    # least 2048 px (2 x decode.DRAFT_SIDE) on both sides is decoded reduced (1/2..1/8) to >= 1024 px.
    max_image_bytes: int = Field(MAX_BYTES, ge=1)
    max_pixels: int = Field(MAX_PIXELS, ge=1)
    max_images: int = Field(64, ge=1)  # per HTTP request
    warmup: bool = True
    # Answers kept by image hash (LRU; 0 turns it off): a validator sends one image to ten miners, and
    # miners sharing one server (`roadwork mine --engine-url`) then cost one engine call, not ten.
    cache_size: int = Field(1024, ge=0)


class MinerConfig(_Strict):
    netuid: int = 72
    wallet_name: str = "default"
    wallet_hotkey: str = "default"
    wallet_path: str | None = None
    network: str = "finney"  # --subtensor.network: finney | test | local | ws://...
    chain_endpoint: str | None = None  # --subtensor.chain_endpoint: overrides `network`, as in bittensor
    axon_ip: str | None = None  # --axon.ip: bind address (bittensor's default binds every interface)
    axon_port: int = Field(8091, ge=0, le=65535)
    external_ip: str | None = None  # --axon.external_ip: announced on chain (default: looked up)
    external_port: int | None = None  # --axon.external_port: announced on chain (default: axon_port)
    max_workers: int | None = Field(None, ge=1)  # --axon.max_workers: the axon's thread pool (bittensor: 10)
    logging_debug: bool = False  # --logging.debug
    logging_trace: bool = False  # --logging.trace (more than debug: every synapse bittensor handles)
    logging_dir: str | None = None  # --logging.logging_dir: also write OUT/miner.log
    # At most one INFO line per answer, and no more than one per this many seconds (the rest are counted
    # and reported on the next line): a busy miner must not drown its own log.
    answer_log_interval_s: float = Field(1.0, ge=0)
    local: bool = False  # no chain: allowed_hotkeys replaces the metagraph check
    allowed_hotkeys: list[str] | None = None
    require_validator_permit: bool = False
    sync_interval_s: float = Field(600.0, gt=0)
    fallback_prediction: float = Field(0.5, ge=0, le=1)  # answer for undecodable input
    model_url: str = ""  # reported to validators that send ExtendedImageSynapse
    metrics_port: int | None = Field(None, ge=0, le=65535)  # Prometheus /metrics for the miner (off if None)
    # A running `roadwork serve` answers instead of an in-process engine: one GPU box, several hotkeys,
    # and a miner process with neither torch nor a GPU. None: load the model here.
    engine_url: str | None = None
    engine_api_key: str | None = None  # the server's --api-key, if it has one


class CaptureConfig(_Strict):
    enabled: bool = False
    dir: str = "captures"
    band: tuple[float, float] = (0.3, 0.7)


class LabelConfig(_Strict):
    """`roadwork label` (roadwork.label): how the job is cut into shards and where they run."""

    fps: float = Field(2.0, gt=0)  # frames per second sampled from videos
    batch_size: int = Field(32, ge=1)  # images per engine call
    shard_size: int = Field(256, ge=1)  # items per shard: the unit of work and of resume
    num_workers: int | None = Field(None, ge=1)  # Ray actors; None: one per CPU, or per GPU share
    address: str | None = None  # Ray cluster to join; None: start a local one
    gpus_per_worker: float = Field(0.0, ge=0)  # 0.5 packs two actors onto one GPU
    resume: bool = True  # skip shards whose part file exists (a changed plan is refused)
    local: bool = False  # no Ray: label in this process
    gpx: Path | None = None  # GPS track of the video(s) (.gpx, or .csv time_s,lat,lon); None: VIDEO.gpx beside each
    gps_offset: float = 0.0  # seconds added to video time to match the track's clock
    tiles: str | None = None  # base-map tile URL template .../{z}/{x}/{y}.png for map.html; None: drawn offline


class SequenceConfig(_Strict):
    """Multi-view and video smoothing (roadwork.sequence)."""

    views: Literal["noisy_or", "max", "mean_logit", "mean"] = "noisy_or"  # N images of one place -> one answer
    enter: float = Field(0.6, ge=0, le=1)  # a work zone opens when a frame's probability reaches this
    exit: float = Field(0.4, ge=0, le=1)  # ... and closes when it drops below this (<= enter)
    min_duration_s: float = Field(1.0, ge=0)  # shorter zones are dropped
    max_gap_s: float = Field(1.0, ge=0)  # shorter gaps between zones are bridged

    @model_validator(mode="after")
    def _exit_below_enter(self) -> "SequenceConfig":
        if self.exit > self.enter:
            raise ValueError(f"exit ({self.exit}) must not exceed enter ({self.enter})")
        return self


class Config(_Strict):
    tiers: list[TierConfig] = Field(default_factory=lambda: [TierConfig()])
    router: RouterConfig = Field(default_factory=RouterConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    miner: MinerConfig = Field(default_factory=MinerConfig)
    capture: CaptureConfig = Field(default_factory=CaptureConfig)
    sequence: SequenceConfig = Field(default_factory=SequenceConfig)
    label: LabelConfig = Field(default_factory=LabelConfig)

    @model_validator(mode="after")
    def _unique_tier_names(self) -> "Config":
        names = [t.name for t in self.tiers]
        if len(set(names)) != len(names):
            raise ValueError(f"tier names must be unique, got {names}")
        if not self.tiers:
            raise ValueError("at least one tier is required")
        return self

    # ---- YAML in and out -------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> "Config":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from e
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: top level must be a mapping, got {type(raw).__name__}")
        return cls.from_dict(raw, overrides, source=str(path))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], overrides: dict[str, Any] | None = None,
                  source: str = "config") -> "Config":
        data = _deep_merge(raw, overrides or {})
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise ConfigError(explain_error(e, source, data)) from None

    def to_yaml(self, path: str | Path | None = None) -> str:
        text = yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text


class ConfigError(ValueError):
    """A config that cannot be used; the message names the bad field."""


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """The config at `path`, or the embedded default (classifier tier on models/default)."""
    if path is None:
        return Config.from_dict({}, overrides)
    return Config.from_yaml(path, overrides)


def resolve_path(path: str | Path) -> Path:
    """A file a config names. Relative paths that do not exist from the working directory are tried
    from the repository root, so the shipped configs (`configs/*.yaml`) work from any folder."""
    p = Path(path)
    if not p.is_absolute() and not p.exists() and (REPO_ROOT / p).exists():
        return REPO_ROOT / p
    return p


def shell_config(path: str | Path | None = None, model: str | None = None,
                 overrides: dict[str, Any] | None = None, capture_dir: str | None = None) -> Config:
    """The config a shell (predict, serve, mine) runs with: defaults < YAML < flags. `model`
    replaces the first tier's model; `capture_dir` turns traffic capture on."""
    over = dict(overrides or {})
    if capture_dir:
        over["capture"] = {"enabled": True, "dir": capture_dir}
    cfg = load_config(path, over)
    if model:
        cfg.tiers[0].model = model
    return cfg


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _known_fields(loc: tuple[Any, ...], data: Any, root: type[BaseModel]) -> list[str]:
    """Field names valid at the parent of `loc` (for "did you mean"); a tier's options are looked up by
    the kind the raw `data` names."""
    model = root
    for i, part in enumerate(loc[:-1]):
        if isinstance(part, int):
            continue
        if model is TierConfig and part == "options":
            from roadwork.tiers.kinds import KINDS

            tier = _at(data, loc[:i])
            kind = tier.get("kind", "classifier") if isinstance(tier, dict) else None
            return list(KINDS[kind].options.model_fields) if kind in KINDS and i == len(loc) - 2 else []
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        ann = field.annotation
        inner = getattr(ann, "__args__", None)
        cand = [a for a in (inner or (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not cand:
            return []
        model = cand[0]
    return list(model.model_fields)


def _at(data: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def explain_error(err: ValidationError, source: str, data: Any = None, root: type[BaseModel] | None = None) -> str:
    """One line: the source, then each bad field and what is wrong with it. `data` is what was validated
    (for a tier's kind), `root` the model it was validated as (default `Config`)."""
    parts = []
    for e in err.errors():
        loc = tuple(e["loc"])
        where = ".".join(str(p) for p in loc) or "<root>"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(loc[-1]), _known_fields(loc, data, root or Config), n=1)
            msg = "unknown field" + (f" (did you mean '{close[0]}'?)" if close else "")
        elif e["type"] == "value_error":  # our validators' own sentences, without pydantic's prefix
            msg = str(e.get("ctx", {}).get("error", msg))
        parts.append(f"{where}: {msg}")
    return f"{source}: " + "; ".join(parts)
