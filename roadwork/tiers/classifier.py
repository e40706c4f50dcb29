"""Image-classifier tier: any Hugging Face image-classification checkpoint (ViT, DINOv2/v3, ConvNeXt,
Swin, ResNet, timm backbones through transformers' TimmWrapper), from a hub id or a local folder.

Calibration (temperature and threshold) is folded into the classifier head when `roadwork train`
saves a model, so P(roadwork) here equals the "Roadwork" score of the subnet base miner's
`pipeline("image-classification", model=DIR)` on the same folder, and the decision is p > 0.5.
Folders calibrated without folding (`roadwork.json` with `"folded": false`) get their temperature and
threshold applied here instead.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from roadwork.config import TierConfig
from roadwork.model_ref import ModelError, resolve_model
from roadwork.tiers.base import Tier, resolve_device, resolve_dtype
from roadwork.tiers.kinds import ClassifierOptions, TorchOptions

if TYPE_CHECKING:  # imported in the methods: a folder served by the onnx tier never loads torch
    import torch

log = logging.getLogger(__name__)

LABELS = {0: "None", 1: "Roadwork"}
META_FILE = "roadwork.json"  # written by `roadwork train`: calibration, split, metrics


def roadwork_index(id2label: dict) -> int:
    """Index of the roadwork class: the label named 'roadwork' (any case), else 1."""
    for i, name in id2label.items():
        if str(name).strip().lower() == "roadwork":
            return int(i)
    return 1


def read_meta(model: str) -> dict[str, Any]:
    """`roadwork.json` of a local model folder ({} for hub ids and folders without one)."""
    path = Path(model) / META_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def _processor(model: str, image_size: int | None):
    from transformers import AutoImageProcessor

    try:
        return AutoImageProcessor.from_pretrained(model)
    except (OSError, ValueError) as e:
        # Some checkpoints ship weights only: ImageNet statistics at their input size are the usual fit.
        from transformers import ViTImageProcessor

        size = image_size or 224
        log.warning("%s: no image processor (%s); using a %dx%d resize with ImageNet normalization", model, e,
                    size, size)
        return ViTImageProcessor(size={"height": size, "width": size}, image_mean=[0.485, 0.456, 0.406],
                                 image_std=[0.229, 0.224, 0.225])


class ClassifierTier(Tier):
    kind = "classifier"

    def __init__(self, model: str, name: str = "classifier", device: str = "auto", dtype: str = "auto",
                 batch_size: int = 32, cost: float | None = None, options: TorchOptions | None = None,
                 tiles: int = 0, tile_overlap: float | None = None):
        import torch
        from transformers import AutoModelForImageClassification

        options = options or TorchOptions()
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        source = resolve_model(model)  # a folder, a hub id, or its cached snapshot; else one clear error
        from transformers.utils import logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # a "Loading weights" bar per start is noise in every shell's output
        try:
            self.model = AutoModelForImageClassification.from_pretrained(source, dtype=self.dtype)
        except (OSError, ValueError) as e:
            raise ModelError(f"classifier tier '{name}': cannot load image-classification model {model!r}: "
                             f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        self.model.to(self.device).eval()
        if self.device.type == "cuda" and options.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.processor = _processor(source, getattr(self.model.config, "image_size", None))
        self.num_labels = int(self.model.config.num_labels)
        self.index = roadwork_index(self.model.config.id2label) if self.num_labels > 1 else 0
        self.meta = read_meta(source)
        # Unfolded calibration (rare: folders calibrated outside `roadwork train`) is applied here.
        self._temperature, self._shift = 1.0, 0.0
        if self.meta and not self.meta.get("folded", True) and self.num_labels == 2:
            t = float(self.meta.get("threshold", 0.5))
            self._temperature = float(self.meta.get("temperature", 1.0))
            self._shift = math.log(t / (1 - t))
        self.configure(name, batch_size, cost, self.meta.get("cost_ms"))
        self.model_path = model
        # a `roadwork train --head locmap` folder says where its roadwork map is (roadwork.json "locmap")
        self.location_map = self._location_map if self.meta.get("locmap") else None
        self._setup_fast_path(options)
        # tiling (roadwork.tiers.tiling) crops PIL images, so it keeps the CPU decoder
        self.tiles, self.tile_overlap = tiles, tile_overlap
        if tiles:
            self.device_pre, self.takes_encoded = None, False
        self.last_views: list[list[float]] = []  # per-view probabilities of the last tiled batch (whole first)

    def _setup_fast_path(self, options: TorchOptions) -> None:
        """On CUDA: encoded JPEGs decoded by nvjpeg and preprocessed on the device (when the processor
        is one `PreprocessSpec` reproduces), and the execution switches (roadwork.fast.execution)."""
        from roadwork.fast.execution import Runner
        from roadwork.fast.preprocess import PreprocessSpec

        spec = PreprocessSpec.from_config(self.processor.to_dict())
        fixed = spec.supported and spec.out_size is not None
        self.device_pre = None
        if self.device.type == "cuda" and options.gpu_decode and fixed:
            from roadwork.fast.gpu_decode import DevicePreprocessor

            self.device_pre = DevicePreprocessor(spec, self.device, self.dtype)
        elif self.device.type == "cuda" and options.gpu_decode:
            log.info("classifier tier '%s': its processor is not one the device path reproduces; "
                     "preprocessing stays on the CPU", self.name)
        self.takes_encoded = self.device_pre is not None
        shape = (3, *spec.out_size) if fixed else None
        self.runner = Runner(self._forward, options, self.device, shape, self.dtype)

    def _forward(self, pixels: "torch.Tensor") -> "torch.Tensor":
        return self._probs(self.model(pixel_values=pixels).logits.float())

    @classmethod
    def build(cls, cfg: TierConfig, options: ClassifierOptions) -> Tier:
        # options.backend auto: a current ONNX export of the folder on a machine without CUDA, else torch.
        # The onnx tier imports neither torch nor transformers.
        # (tiles run on the torch backend: auto picks it when they are on)
        if options.backend == "onnx" or (options.backend == "auto" and cfg.device in ("auto", "cpu")
                                         and not options.tiles and _onnx_usable(cfg, options)):
            from roadwork.fast.onnx_tier import OnnxTier

            return OnnxTier.build(cfg, options)
        return cls(cfg.model, name=cfg.name, device=cfg.device, dtype=cfg.dtype, batch_size=cfg.batch_size,
                   cost=cfg.cost, options=TorchOptions.model_validate(
                       {k: getattr(options, k) for k in TorchOptions.model_fields}),
                   tiles=options.tiles, tile_overlap=options.tile_overlap)

    @classmethod
    def from_pretrained(cls, model: str, **kw: Any) -> "ClassifierTier":
        return cls(model, **kw)

    def _probs(self, logits: "torch.Tensor") -> "torch.Tensor":
        import torch

        if self.num_labels == 1:  # a single-logit head: sigmoid of it
            return torch.sigmoid(logits[:, 0])
        if self._temperature != 1.0 or self._shift != 0.0:
            other = 1 - self.index
            return torch.sigmoid((logits[:, self.index] - logits[:, other]) / self._temperature - self._shift)
        # the pipeline's own post-processing for single-label models: softmax over the classes
        return torch.softmax(logits, dim=-1)[:, self.index]

    def predict_batch(self, images: list[Any]) -> np.ndarray:
        """P(roadwork) for PIL images, or on the device path also `Encoded` ones (decoded there); with
        `tiles`, the max over each large image's whole and tiles (`last_views` keeps every view's)."""
        if self.tiles:
            from roadwork.tiers import tiling

            overlap = tiling.DEFAULT_OVERLAP if self.tile_overlap is None else self.tile_overlap
            probs, self.last_views = tiling.pooled(self._predict_views, list(images), self.warmup_size[0],
                                                   self.tiles, overlap)
            return np.asarray(probs, dtype=np.float32)
        return self._predict_views(images)

    def _predict_views(self, images: list[Any]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            if self.device_pre is not None:
                pixels, broken = self.device_pre(images)
            else:
                pixels, broken = self.processor(images=images, return_tensors="pt")["pixel_values"], None
            probs = self.runner(pixels).float().cpu().numpy()
        if broken is not None and broken.any():
            probs[broken] = np.nan  # corrupt behind a valid header: 0.5 through clean_probs
        return probs

    def warmup(self) -> None:
        """The base warm-up (one image through the whole path), then every batch bucket when
        compile or CUDA graphs are on."""
        import torch

        super().warmup()
        with torch.inference_mode():
            self.runner.warmup()

    def _location_map(self, image: Image.Image) -> np.ndarray:
        """P(roadwork at each location) over the model's feature grid (H' x W', in [0, 1]); the grid
        covers the image as the processor's resize does."""
        import torch

        from roadwork.train.locmap import location_maps

        channel = int(self.meta["locmap"].get("channel", 0))
        with torch.inference_mode():
            pixels = self.processor(images=[image.convert("RGB")], return_tensors="pt")["pixel_values"]
            pixels = pixels.to(self.device, self.dtype)
            return location_maps(self.model, pixels, channel)[0].cpu().numpy()

    @property
    def warmup_size(self) -> tuple[int, int]:
        size = getattr(self.model.config, "image_size", 224)
        size = size if isinstance(size, int) else 224
        return (size, size)


def _onnx_usable(cfg: TierConfig, options: ClassifierOptions) -> bool:
    from roadwork.fast.onnx_tier import cuda_possible, fresh_export

    if fresh_export(cfg.model, options.precision) is None:
        return False
    return cfg.device == "cpu" or not cuda_possible()
