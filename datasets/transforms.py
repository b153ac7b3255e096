"""Image transforms of the TLlib protocol, scaled to any ``data.image_size``."""
from __future__ import annotations

from typing import Sequence

import torch
from PIL import Image
from torchvision import transforms as T


def _resize_size(image_size: int) -> int:
    """TLlib resizes to 256 and crops 224; keep that ratio at other sizes."""
    return round(image_size * 256 / 224)


def train_transform(image_size: int, mean: Sequence[float], std: Sequence[float]) -> T.Compose:
    """TLlib's ``default`` training transform: square resize to 256, RandomResizedCrop 224 (scale 0.08-1),
    horizontal flip, ImageNet normalisation."""
    return T.Compose([
        T.Resize((_resize_size(image_size),) * 2),
        T.RandomResizedCrop(image_size),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])


def test_transform(image_size: int, mean: Sequence[float], std: Sequence[float]) -> T.Compose:
    """Square resize to 256, centre crop 224 (single crop)."""
    return T.Compose([
        T.Resize((_resize_size(image_size),) * 2),
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


def ten_crop_transform(image_size: int, mean: Sequence[float], std: Sequence[float]) -> T.Compose:
    """The 10-crop test of the CDAN and TransNorm code: square resize to 256, then the four corner crops and the centre
    crop of 224, each also flipped horizontally (torchvision's ``TenCrop``; the official code places the corners one
    pixel in, at 31 rather than 32). The evaluation sums the softmaxes of the ten crops."""
    return T.Compose([T.Resize((_resize_size(image_size),) * 2), T.TenCrop(image_size), StackCrops(mean, std)])


class ConvertMode:
    """PIL ``image.convert(mode)``: ``"L"`` for grey, ``"RGB"`` for colour (a grey image gets three equal channels)."""

    def __init__(self, mode: str):
        self.mode = mode

    def __call__(self, image: Image.Image) -> Image.Image:
        return image.convert(self.mode)


def digits_transform(image_size: int, channels: int, mean: Sequence[float], std: Sequence[float]) -> T.Compose:
    """TLlib's ``res.`` transform for digits: resize only, grey or RGB, normalised with mean/std 0.5."""
    return T.Compose([
        T.Resize((image_size, image_size)),
        ConvertMode("L" if channels == 1 else "RGB"),
        T.ToTensor(),
        T.Normalize(mean, std),  # a single mean/std value applies to every channel
    ])
