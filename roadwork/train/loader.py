"""Training and validation images: augmentation per image, a class-balanced sampler, DDP sharding.

Every random choice for an image comes from `np.random.default_rng([seed, epoch, index])`, so a run
is reproducible whatever the number of DataLoader workers, and validation (epoch fixed at -1) sees
the same challenged images every epoch and in every run with the same seed.

Images leave the workers as uint8 CHW tensors of `image_size`; normalization happens on the device.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

log = logging.getLogger("roadwork.train")

VAL_EPOCH = -1


def _accepts_rng(fn: Callable[..., Any]) -> bool:
    try:
        return "rng" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def challenge_image(img: Image.Image, rng: np.random.Generator, protocol: str | None = None) -> Image.Image:
    """What the miner receives for `img` from a validator of `protocol` (its challenge JPEG, decoded)."""
    from roadwork.challenge import make_challenge

    return make_challenge(img, rng, protocol=protocol).image


def random_resized_crop(img: Image.Image, size: int, rng: np.random.Generator,
                        scale: tuple[float, float] = (0.3, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Image.Image:
    """torchvision's RandomResizedCrop, driven by `rng` instead of torch's global generator."""
    w, h = img.size
    area = w * h
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = float(np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1]))))
        cw, ch = int(round(np.sqrt(target * aspect))), int(round(np.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            return img.resize((size, size), Image.BILINEAR, box=(x, y, x + cw, y + ch))
    side = min(w, h)  # fallback: centre square
    x, y = (w - side) // 2, (h - side) // 2
    return img.resize((size, size), Image.BILINEAR, box=(x, y, x + side, y + side))


class Augment:
    """The training view of an image (picklable, so it travels to DataLoader workers).

    With probability `camera_p` the camera-look randomizer runs first (crop away bonnet, colour
    cast, resolution and compression). Then, with probability `challenge_p`, the validator's own
    challenge of `protocol` (its augmentation levels, or 2026-05's native JPEG q75); otherwise a plain
    random resized crop. With probability `letterbox_p` the whole frame is letterboxed instead of
    either (the 2026-04 validator's geometry, so small far objects are trained at the size the
    validator shows them). Horizontal flips are free: roadwork has no handedness that matters here.
    """

    def __init__(self, image_size: int, challenge_p: float = 0.7, camera_p: float = 0.5,
                 camera: Callable[..., Image.Image] | None = None, protocol: str | None = None,
                 letterbox_p: float = 0.0):
        self.image_size = image_size
        self.letterbox_p = letterbox_p
        self.challenge_p = challenge_p
        self.protocol = protocol
        self.camera_p = camera_p if camera is not None else 0.0
        self.camera = camera
        self._camera_rng = camera is not None and _accepts_rng(camera)

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        if self.camera is not None and rng.random() < self.camera_p:
            img = self.camera(img, rng=rng) if self._camera_rng else self.camera(img)
        # drawn only when on, so letterbox_p=0 consumes the generator exactly as before (same recipe)
        if self.letterbox_p > 0 and rng.random() < self.letterbox_p:
            from roadwork.challenge.ops import letterbox

            img = letterbox(img)
            if img.size != (self.image_size, self.image_size):
                img = img.resize((self.image_size, self.image_size), Image.BILINEAR)
        elif rng.random() < self.challenge_p:
            img = challenge_image(img, rng, self.protocol)
            if img.size != (self.image_size, self.image_size):
                img = img.resize((self.image_size, self.image_size), Image.BILINEAR)
        else:
            img = random_resized_crop(img, self.image_size, rng)
        if rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        return img


class ValView:
    """The validation view: the challenge simulator of `protocol` (fixed seed) or a plain resize."""

    def __init__(self, image_size: int, challenge: bool = True, protocol: str | None = None):
        self.image_size = image_size
        self.challenge = challenge
        self.protocol = protocol

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        if self.challenge:
            img = challenge_image(img, rng, self.protocol)
        if img.size != (self.image_size, self.image_size):
            img = img.resize((self.image_size, self.image_size), Image.BILINEAR)
        return img


class RecordImages(Dataset):
    """`records[i]` -> (uint8 CHW tensor, label, i). Unreadable images are replaced by a seeded
    other record for training (and reported); validation drops them up front (`readable`).

    With `masks` (one object-mask path or None per record: synthetic images know their roadwork
    pixels), items are (image, label, i, uint8 mask_grid x mask_grid mask, has_mask): the mask follows
    the image through the same augmentation (`locmap.view_with_mask`); records without one get zeros."""

    def __init__(self, records: Sequence[Any], view: Callable[[Image.Image, np.random.Generator], Image.Image],
                 seed: int = 0, masks: Sequence[str | None] | None = None, mask_grid: int = 28):
        self.records = list(records)
        self.view = view
        self.seed = seed
        self.epoch = VAL_EPOCH
        self.masks = None if masks is None else list(masks)
        if self.masks is not None and len(self.masks) != len(self.records):
            raise ValueError(f"RecordImages: {len(self.masks)} mask entries for {len(self.records)} records")
        self.mask_grid = mask_grid

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int, int]:
        """`key` is an index, or (index, epoch) as BalancedSampler yields it: persistent DataLoader
        workers hold their own copy of this dataset, so the epoch must travel with the index."""
        from roadwork.decode import ImageError

        i, epoch = key if isinstance(key, tuple) else (key, self.epoch)
        rng = np.random.default_rng([self.seed, epoch + 1, i])
        for _ in range(5):
            rec = self.records[i]
            try:
                img = rec.load()
                break
            except ImageError as e:
                log.warning("skipping %s: %s", rec.path, e)
                i = int(rng.integers(0, len(self.records)))
        else:
            raise RuntimeError("five unreadable images in a row; check the data source")
        if self.masks is None:
            arr = np.asarray(self.view(img.convert("RGB"), rng), dtype=np.uint8)
            return torch.from_numpy(arr.copy()).permute(2, 0, 1), int(self.records[i].label), i
        mask = _read_mask(self.masks[i], img.size)
        if mask is None:
            arr = np.asarray(self.view(img.convert("RGB"), rng), dtype=np.uint8)
            small = np.zeros((self.mask_grid, self.mask_grid), np.uint8)
        else:
            from roadwork.train.locmap import view_with_mask

            out, small = view_with_mask(self.view, img.convert("RGB"), mask, rng, self.mask_grid)
            arr = np.asarray(out, dtype=np.uint8)
        return (torch.from_numpy(arr.copy()).permute(2, 0, 1), int(self.records[i].label), i,
                torch.from_numpy(small.copy()), mask is not None)


def _read_mask(path: str | None, size: tuple[int, int]) -> np.ndarray | None:
    """uint8 mask at the image's `size`, or None (no mask, or an unreadable one: reported, then the
    image trains on its label alone)."""
    if path is None:
        return None
    try:
        m = Image.open(path).convert("L")
    except OSError as e:
        log.warning("mask %s unreadable (%s); its image trains without it", path, e)
        return None
    return np.asarray(m if m.size == size else m.resize(size, Image.BILINEAR), dtype=np.uint8)


class BalancedSampler(Sampler[tuple[int, int]]):
    """Draws `num_samples` indices per epoch with replacement so that positives make up
    `pos_fraction` of them (the validator asks 50/50; our data is ~13% roadwork). All ranks draw
    the same sequence from the epoch's seed and keep every `world`-th index, which makes it a
    distributed sampler too. Yields (index, epoch) pairs for RecordImages."""

    def __init__(self, labels: Sequence[int], pos_fraction: float | None = 0.5, num_samples: int | None = None,
                 seed: int = 0, rank: int = 0, world: int = 1):
        self.labels = np.asarray(labels, dtype=np.int64)
        self.pos_fraction = pos_fraction
        self.num_samples = num_samples or len(self.labels)
        self.seed, self.rank, self.world = seed, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples // self.world

    def __iter__(self):
        return iter([(i, self.epoch) for i in self.indices()])

    def indices(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        n1 = int(self.labels.sum())
        if self.pos_fraction is None or n1 == 0 or n1 == len(self.labels):
            idx = torch.randperm(len(self.labels), generator=g)
            idx = idx.repeat(-(-self.num_samples // len(idx)))[: self.num_samples]
        else:
            w = np.where(self.labels == 1, self.pos_fraction / n1, (1 - self.pos_fraction) / (len(self.labels) - n1))
            idx = torch.multinomial(torch.as_tensor(w), self.num_samples, replacement=True, generator=g)
        idx = idx[: len(self) * self.world]
        return idx[self.rank:: self.world].tolist()


def worker_init(_: int) -> None:
    """One thread per library inside a DataLoader worker: 16 workers x 16 OpenCV threads would
    oversubscribe the machine (torch already limits itself to one thread in workers)."""
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass


def normalize(batch: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """uint8 NCHW on the device -> normalized float32, as the saved image processor does."""
    x = batch.float().div_(255.0).sub_(mean).div_(std)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
