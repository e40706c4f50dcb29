"""The location-map head (`roadwork train --head locmap`): a roadwork map over the backbone's feature
grid, pooled into the image's probability, saved as a plain image-classification folder.

Where the map lives. A standard classifier ends in `act(u) -> global pool -> Linear`, where `u` is the
last layer's pre-activation (transformers ResNet: the last residual block's sum; timm EfficientNet:
`bn2` after the 1x1 `conv_head`). The map is channel 0 of `u`: `s(x, y)`, a logit per location (its
sigmoid is the model's P(roadwork at this location), which the synthetic masks supervise). The image
margin is

    d = a * POOL(act(s)) + b          (a, b: column 0 of the classifier and its bias)

and the saved folder is the same standard model with the classifier's other columns set to zero, so
its own `act -> pool -> Linear` computes exactly this `d`, with `pipeline("image-classification")`
and no remote code, whenever its pooler is POOL: `mean` on every architecture (transformers ResNet
only has average pooling), `max` on timm models too (`global_pool="max"` in the config's
`model_args`). `act` is monotone (ReLU, ReLU6), so max(act(s)) = act(max(s)) and the mean of the
positive part lets a few locations decide: a location with s < 0 adds nothing however many there
are, which is what a mask-supervised map makes of the background.

`lse` (log-sum-exp, r = LSE_R) and `topk` (mean of the top TOPK_FRACTION locations) are training
poolings only. They export as the nearest exact pooling of the same map (max where the model has it,
else mean) with a least-squares refit of (a, b) on validation maps; the gap is measured on
validation images and written to roadwork.json (`locmap.export`). For LSE against max the bound is
known: max - log(n)/r <= LSE_r <= max (n locations), 0.39 logits at 7x7 with r = 10.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from roadwork.train.config import HEADS, POOLS  # noqa: F401 (HEADS re-exported)

LSE_R = 10.0  # log-sum-exp sharpness: close to max, but every location gets some gradient
TOPK_FRACTION = 0.1  # top-k pooling averages this share of the grid's locations (at least one)
MASK_GRID_STRIDE = 8  # masks travel with a batch at image_size / 8 and are area-pooled to the map's grid
MAP_CHANNEL = 0


@dataclass
class MapSite:
    """Where an architecture's last activation sits: `getattr(owner, attr)` is applied to `u`."""

    owner: nn.Module
    attr: str
    family: str  # "resnet" or "timm"
    exact_pools: tuple[str, ...]  # what the saved architecture's own pooler can compute


def map_site(model: nn.Module) -> MapSite:
    """The map's site in a supported architecture; ValueError naming what is supported otherwise."""
    resnet = getattr(model, "resnet", None)
    if resnet is not None and hasattr(resnet, "encoder"):
        block = resnet.encoder.stages[-1].layers[-1]
        return MapSite(block, "activation", "resnet", ("mean",))
    timm_model = getattr(model, "timm_model", None)
    bn2 = getattr(timm_model, "bn2", None)
    if bn2 is not None and hasattr(bn2, "act") and hasattr(timm_model, "conv_head"):
        return MapSite(bn2, "act", "timm", ("mean", "max"))
    raise ValueError(f"--head locmap: {type(model).__name__} is not supported; it needs a transformers ResNet "
                     "(--arch resnet*) or a timm EfficientNet (conv_head + bn2, e.g. efficientnet-lite)")


def export_pool(pool: str, site: MapSite) -> str:
    """The exact pooling the saved model uses for a training pooling."""
    if pool in site.exact_pools:
        return pool
    return "max" if "max" in site.exact_pools else "mean"


def pool_map(m: torch.Tensor, pool: str) -> torch.Tensor:
    """(B, H, W) activated map -> (B,) pooled value."""
    flat = m.flatten(1)
    if pool == "mean":
        return flat.mean(1)
    if pool == "max":
        return flat.amax(1)
    if pool == "lse":
        top = flat.amax(1, keepdim=True)  # subtracted for stability, as timm's LsePlus2d does
        return (top + torch.log(torch.exp(LSE_R * (flat - top)).mean(1, keepdim=True)) / LSE_R)[:, 0]
    if pool == "topk":
        k = max(1, int(round(TOPK_FRACTION * flat.shape[1])))
        return flat.topk(k, dim=1).values.mean(1)
    raise ValueError(f"--pool {pool}: expected one of {', '.join(POOLS)}")


@dataclass
class LocMapOutput:
    logits: torch.Tensor  # (B, 2) image logits; softmax gives P(roadwork)
    map_logits: torch.Tensor  # (B, H, W) per-location roadwork logits


class LocMapModel(nn.Module):
    """Training-time view of a standard classifier with its decision made from the map (see module doc)."""

    def __init__(self, model: nn.Module, pool: str = "mean"):
        super().__init__()
        from roadwork.train.temperature import head_linear

        if pool not in POOLS:
            raise ValueError(f"--pool {pool}: expected one of {', '.join(POOLS)}")
        self.model = model
        self.pool = pool
        site = map_site(model)
        self.family = site.family
        self.exact_pools = site.exact_pools
        self.export_pool = export_pool(pool, site)
        if site.family == "timm":
            _set_timm_pool(model, self.export_pool)
        self.act = getattr(site.owner, site.attr)
        # during training the backbone hands out u itself; the activation is applied here
        setattr(site.owner, site.attr, nn.Identity())
        self._site = (site.owner, site.attr)
        self.head = head_linear(model)
        self.config = model.config

    def pre_activation(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.family == "resnet":
            return self.model.resnet(pixel_values=pixel_values).last_hidden_state
        return self.model.timm_model.forward_features(pixel_values)

    def map_logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.pre_activation(pixel_values)[:, MAP_CHANNEL]

    def decide(self, s: torch.Tensor, pool: str) -> torch.Tensor:
        """Image logits from the map logits `s` under `pool`."""
        pooled = pool_map(self.act(s), pool)
        return pooled[:, None] * self.head.weight[:, MAP_CHANNEL] + self.head.bias

    def forward(self, pixel_values: torch.Tensor, **_: Any) -> LocMapOutput:
        s = self.map_logits(pixel_values)
        return LocMapOutput(logits=self.decide(s, self.pool), map_logits=s)

    @torch.no_grad()
    def export(self, batches: Iterable[torch.Tensor] = ()) -> tuple[nn.Module, dict[str, Any]]:
        """The plain standard model computing this head, and how faithfully: on `batches` (normalized
        pixels, the validation images) the saved model's own forward is compared with this head's
        training-time probability. The wrapper must not be used afterwards."""
        self.eval()
        batches = list(batches)
        maps = [self.map_logits(x).float() for x in batches]
        info: dict[str, Any] = {"train_pool": self.pool, "export_pool": self.export_pool,
                                "exact": self.pool == self.export_pool}
        head = self.head
        p_train = None
        if maps:
            s = torch.cat(maps)
            p_train = _p_roadwork(self.decide(s, self.pool))
            info["grid"] = list(s.shape[1:])
        if maps and not info["exact"]:
            # least squares: train-pooled ~ alpha * export-pooled + beta over the validation maps
            want = pool_map(self.act(s), self.pool).double()
            have = pool_map(self.act(s), self.export_pool).double()
            A = torch.stack([have, torch.ones_like(have)], 1)
            alpha, beta = torch.linalg.lstsq(A, want[:, None]).solution[:, 0].tolist()
            w0 = head.weight[:, MAP_CHANNEL].clone()
            head.weight[:, MAP_CHANNEL] = w0 * alpha
            head.bias.add_(w0 * beta)
            info.update(refit_alpha=alpha, refit_beta=beta)
            if self.pool == "lse" and self.export_pool == "max":
                info["bound_pooled"] = math.log(s.shape[1] * s.shape[2]) / LSE_R
        keep = torch.zeros_like(head.weight)
        keep[:, MAP_CHANNEL] = 1
        head.weight.mul_(keep)  # the standard head now reads the map channel only
        owner, attr = self._site
        setattr(owner, attr, self.act)
        if p_train is not None:
            p_saved = torch.cat([_p_roadwork(self.model(pixel_values=x).logits) for x in batches])
            diff = (p_train - p_saved).abs()
            info.update(val_max_abs_prob_diff=float(diff.max()), val_mean_abs_prob_diff=float(diff.mean()),
                        n_val=int(len(diff)))
        return self.model, info


def _p_roadwork(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits.double(), -1)[:, 1]


def _set_timm_pool(model: nn.Module, pool: str) -> None:
    """Make a TimmWrapper model (and its saved config) pool with `pool` ('mean' -> timm's 'avg')."""
    timm_pool = {"mean": "avg", "max": "max"}[pool]
    tm = model.timm_model
    if getattr(tm, "global_pool", None) is not None and getattr(tm.global_pool, "pool_type", None) == timm_pool:
        return
    head = tm.get_classifier()
    old = (head.weight.detach().clone(), head.bias.detach().clone())
    tm.reset_classifier(model.config.num_labels, global_pool=timm_pool)
    new = tm.get_classifier()
    with torch.no_grad():  # keep the head's weights (only the pooling changed)
        new.weight.copy_(old[0])
        new.bias.copy_(old[1])
    model.config.model_args = {**(model.config.model_args or {}), "global_pool": timm_pool}


def mask_loss(map_logits: torch.Tensor, masks: torch.Tensor, has_mask: torch.Tensor) -> torch.Tensor:
    """BCE of the map against each masked image's roadwork coverage, area-pooled to the map's grid
    (`masks`: uint8 (B, M, M), 0..255; only images with `has_mask` count; 0 when none has one)."""
    if not bool(has_mask.any()):
        return map_logits.sum() * 0.0  # keeps the graph (and DDP's gradient hooks) uniform
    s = map_logits[has_mask].float()
    target = F.adaptive_avg_pool2d(masks[has_mask].float()[:, None] / 255.0, s.shape[-2:])[:, 0]
    return F.binary_cross_entropy_with_logits(s, target)


# ---- masks through the training augmentations ----------------------------------------------------
MASK_ON = 0.35  # a replayed mask pixel counts as roadwork above this (photometric jitter moves 0/1 a bit)


def view_with_mask(view: Any, img: Any, mask: np.ndarray, rng: np.random.Generator, grid: int
                   ) -> tuple[Any, np.ndarray]:
    """`view(img, rng)` and the same geometry applied to `mask` (uint8, the image's size): the view is
    replayed on the mask, drawn as a grey image, from a copy of the generator, so every crop, rotation,
    letterbox and flip matches whatever the augmentation does. Returns (view, uint8 grid x grid mask)."""
    from PIL import Image

    replay = copy.deepcopy(rng)
    out = view(img, rng)
    grey = Image.fromarray(np.repeat(mask[..., None], 3, axis=2))
    if grey.size != img.size:
        grey = grey.resize(img.size, Image.BILINEAR)
    m = np.asarray(view(grey, replay), dtype=np.float32).mean(axis=2) > MASK_ON * 255
    small = Image.fromarray((m * 255).astype(np.uint8)).resize((grid, grid), Image.BOX)
    return out, np.asarray(small, dtype=np.uint8)


def mask_grid(image_size: int) -> int:
    return max(1, image_size // MASK_GRID_STRIDE)


# ---- what a saved folder needs for its map (roadwork.json "locmap"), and computing it -------------
def map_meta(model: nn.Module, cfg: Any) -> dict[str, Any]:
    """The `locmap` entry of roadwork.json: enough for `roadwork predict --heatmap` to find the map."""
    site = map_site(model)
    return {"family": site.family, "channel": MAP_CHANNEL, "pool": export_pool(cfg.pool, site),
            "train_pool": cfg.pool, "mask_weight": cfg.mask_weight,
            "map": "sigmoid of channel 0 of the last layer's pre-activation: P(roadwork at this location)"}


@torch.no_grad()
def location_maps(model: nn.Module, pixel_values: torch.Tensor, channel: int = MAP_CHANNEL) -> torch.Tensor:
    """(B, H, W) P(roadwork at each location) of a saved locmap model (a plain standard classifier):
    its last activation is bypassed for one forward to read the map's logits."""
    site = map_site(model)
    act = getattr(site.owner, site.attr)
    setattr(site.owner, site.attr, nn.Identity())
    try:
        if site.family == "resnet":
            u = model.resnet(pixel_values=pixel_values).last_hidden_state
        else:
            u = model.timm_model.forward_features(pixel_values)
    finally:
        setattr(site.owner, site.attr, act)
    return torch.sigmoid(u[:, channel].float())
