"""Digits held in memory as uint8 arrays and transformed a whole batch at a time: the data of ``data=digits`` and
``data=digits_embedded``.

Per-image PIL transforms cost more than a small CNN's step on a CPU (LeNet on MNIST -> USPS spent about 80% of each
step loading). The digits recipes' transform is deterministic (TLlib's ``res.``: resize, grey or RGB, normalise; no
random crop or flip), so every image is transformed once, when the dataset is made, computed as PIL computes it, and
the loader's batch (``__getitems__``) is one index into the kept tensors, handed over already stacked
(:class:`~normda.datasets.sampling.Stacked`). The resize is
``resize_like_pil`` (within 2 grey levels of PIL); an RGB image made grey takes PIL's ITU-R 601-2 luma in
PIL's integer arithmetic; a grey image made RGB repeats its channel, as PIL's ``convert``.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from normda.datasets.sampling import Stacked
from normda.datasets.settings import Interpolation

#: PIL's ``convert("L")`` of an RGB image: (R 19595 + G 38470 + B 7471 + 2^15) >> 16
LUMA = (19595, 38470, 7471)


def to_grey(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) uint8 RGB -> (N, 1, H, W) uint8, exactly as PIL's ``convert("L")``."""
    weights = torch.tensor(LUMA, dtype=torch.int64).view(1, 3, 1, 1)
    return ((images.to(torch.int64) * weights).sum(1, keepdim=True) + (1 << 15)).bitwise_right_shift(16).to(
        torch.uint8)


class DigitArrays(Dataset):
    """(image, label) pairs from uint8 images ``(N, H, W)`` (grey) or ``(N, 3, H, W)`` (RGB), resized to
    ``data.image_size`` with ``data.interpolation``, given ``data.channels`` channels and normalised with
    ``data.mean``/``data.std``: all of them once, at construction (``inputs``)."""

    #: the same image gives the same input every time: the loaders need no per-sample random state
    deterministic = True
    #: images transformed at a time while the inputs are made (bounds the transform's working memory)
    CHUNK = 4096

    def __init__(self, images: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor, cfg: Any):
        images = torch.as_tensor(np.asarray(images))
        self.images = images.unsqueeze(1) if images.dim() == 3 else images
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        self.size = cfg.image_size
        self.channels = cfg.channels
        self.interpolation = cfg.interpolation
        self.mean = torch.tensor(cfg.mean).view(1, -1, 1, 1)
        self.std = torch.tensor(cfg.std).view(1, -1, 1, 1)
        self.inputs = torch.cat([self.transform(chunk) for chunk in self.images.split(self.CHUNK)])

    def __len__(self) -> int:
        return len(self.labels)

    def transform(self, images: torch.Tensor) -> torch.Tensor:
        """A batch of uint8 images as the model's input (PIL's resize, then its mode conversion)."""
        x = resize_like_pil(images, self.size, self.interpolation)
        if self.channels == 1 and x.shape[1] == 3:
            x = to_grey(x.mul(255).round().to(torch.uint8)).float().div_(255)
        return ((x.expand(-1, self.channels, -1, -1) - self.mean) / self.std).contiguous()

    def __getitem__(self, index: int):
        return self.inputs[index], self.labels[index]

    def __getitems__(self, indices: list[int]) -> Stacked:
        return Stacked((self.inputs[indices], self.labels[indices]))


def resize_like_pil(images: torch.Tensor, size: int, interpolation: Interpolation) -> torch.Tensor:
    """A batch of uint8 images (N, C, H, W) resized to ``size`` x ``size`` as PIL's ``img.resize`` does, returned as
    floats in [0, 1]: a horizontal then a vertical pass of the antialiased filter (torch's antialiased kernels are
    PIL's), each rounded to 8 bits as PIL's passes are. Within 2 grey levels of PIL, almost always equal."""
    x = images.float()
    for shape in ((x.shape[-2], size), (size, size)):
        if x.shape[-2:] != shape:
            x = F.interpolate(x, size=shape, mode=interpolation, antialias=True, align_corners=False)
            x = x.round_().clamp_(0, 255)
    return x.div_(255.0)
