"""Image transforms of the TLlib protocol, scaled to any ``data.image_size``."""
from __future__ import annotations

from typing import Sequence

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
