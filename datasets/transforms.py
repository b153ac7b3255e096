"""Image transforms of the TLlib and official TransNorm protocols, scaled to any ``data.image_size``.

Both references resize with ``ResizeImage``, a square PIL ``img.resize((s, s))`` whose default filter is bicubic; the
crops after it are torchvision's (``RandomResizedCrop`` interpolates bilinearly). ``interpolation`` names the filter
of the square resize, so that each protocol uses its reference's (``data.interpolation``).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

from normda.datasets.settings import Interpolation, Resizing
INTERPOLATIONS = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}


def _resize_size(image_size: int) -> int:
    """TLlib resizes to 256 and crops 224; keep that ratio at other sizes."""
    return round(image_size * 256 / 224)


def square_resize(size: int, interpolation: Interpolation) -> T.Resize:
    """TLlib's ``ResizeImage(size)``: a square resize that ignores the aspect ratio."""
    return T.Resize((size, size), interpolation=INTERPOLATIONS[interpolation])


def train_transform(image_size: int, mean: Sequence[float], std: Sequence[float], resizing: Resizing = "default",
                    interpolation: Interpolation = "bilinear") -> T.Compose:
    """TLlib's training transforms (``get_train_transform``), each followed by a horizontal flip and normalisation:

    * ``default``: square resize to 256, ``RandomResizedCrop(224)`` (scale 0.08-1);
    * ``cen.crop``: square resize to 256, centre crop 224 (TLlib's VisDA-2017 scripts);
    * ``ran.crop``: square resize to 256, random crop 224;
    * ``res.``: square resize to 224 only.
    """
    outer = square_resize(_resize_size(image_size), interpolation)
    resizing_steps = {
        "default": [outer, T.RandomResizedCrop(image_size)],
        "cen.crop": [outer, T.CenterCrop(image_size)],
        "ran.crop": [outer, T.RandomCrop(image_size)],
        "res.": [square_resize(image_size, interpolation)],
    }[resizing]
    return T.Compose([*resizing_steps, T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)])


def test_transform(image_size: int, mean: Sequence[float], std: Sequence[float],
                   interpolation: Interpolation = "bilinear") -> T.Compose:
    """Square resize to 256, centre crop 224 (single crop; TLlib's ``default`` validation transform)."""
    return T.Compose([
        square_resize(_resize_size(image_size), interpolation),
        T.CenterCrop(image_size),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])


class StackCrops:
    """Turn the crops of ``TenCrop`` into one (crops, C, H, W) tensor, each crop normalised."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.to_tensor = T.ToTensor()
        self.normalize = T.Normalize(mean, std)

    def __call__(self, crops) -> torch.Tensor:
        return torch.stack([self.normalize(self.to_tensor(crop)) for crop in crops])


def ten_crop_transform(image_size: int, mean: Sequence[float], std: Sequence[float],
                       interpolation: Interpolation = "bilinear") -> T.Compose:
    """The 10-crop test of the CDAN and TransNorm code: square resize to 256, then the four corner crops and the centre
    crop of 224, each also flipped horizontally (torchvision's ``TenCrop``; the official code places the corners one
    pixel in, at 31 rather than 32). The evaluation sums the softmaxes of the ten crops."""
    return T.Compose([square_resize(_resize_size(image_size), interpolation), T.TenCrop(image_size),
                      StackCrops(mean, std)])


def image_transforms(cfg: Any) -> tuple[T.Compose, T.Compose, T.Compose | None]:
    """(training, test, ten-crop test or None) transforms for images of files, which the loader opens as RGB, from
    the ``data`` config (:class:`~normda.datasets.settings.ImageFilesConfig`): ``data.transform``, ``data.train_resizing``,
    ``data.interpolation``, ``data.image_size``, ``data.mean``/``data.std`` and ``data.channels`` (1: made grey)."""
    if cfg.transform == "digits":
        digits = digits_transform(cfg.image_size, cfg.channels, cfg.mean, cfg.std, cfg.interpolation)
        return digits, digits, None
    grey = [ConvertMode("L")] if cfg.channels == 1 else []
    return (T.Compose([*grey, train_transform(cfg.image_size, cfg.mean, cfg.std, cfg.train_resizing,
                                              cfg.interpolation)]),
            T.Compose([*grey, test_transform(cfg.image_size, cfg.mean, cfg.std, cfg.interpolation)]),
            T.Compose([*grey, ten_crop_transform(cfg.image_size, cfg.mean, cfg.std, cfg.interpolation)]))


class ConvertMode:
    """PIL ``image.convert(mode)``: ``"L"`` for grey, ``"RGB"`` for colour (a grey image gets three equal channels)."""

    def __init__(self, mode: str):
        self.mode = mode

    def __call__(self, image: Image.Image) -> Image.Image:
        return image.convert(self.mode)


def digits_transform(image_size: int, channels: int, mean: Sequence[float], std: Sequence[float],
                     interpolation: Interpolation = "bilinear") -> T.Compose:
    """TLlib's ``res.`` transform for digits: resize only, grey or RGB, normalised with mean/std 0.5."""
    return T.Compose([
        square_resize(image_size, interpolation),
        ConvertMode("L" if channels == 1 else "RGB"),
        T.ToTensor(),
        T.Normalize(mean, std),  # a single mean/std value applies to every channel
    ])
