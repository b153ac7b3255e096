"""The embedded Digits task: a few thousand MNIST and USPS images shipped inside the package (1.4 MB), so that
``python train.py`` runs with no download. Built by ``scripts/make_embedded_digits.py``.

Per domain: 3,000 class-balanced training images; the test sets are 2,000 MNIST test images and the complete USPS test
set (2,007). Images stay uint8 at their native size; each batch is resized to ``data.image_size`` with
``data.interpolation`` as PIL resizes (``transforms.resize_like_pil``), given ``data.channels`` equal channels and
normalised with ``data.mean``/``data.std``, like the TLlib ``res.`` transform, when the loader fetches it.
"""
from __future__ import annotations

from importlib import resources
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from normda.datasets.base import DomainAdaptationTask, check_domains, register
from normda.datasets.transforms import resize_like_pil

DOMAINS = {"M": "mnist", "U": "usps"}
CLASSES = [str(digit) for digit in range(10)]


def load_arrays() -> dict[str, np.ndarray]:
    with resources.files("normda.datasets").joinpath("embedded/mnist_usps.npz").open("rb") as handle:
        with np.load(handle) as arrays:
            return dict(arrays)


class EmbeddedDigits(Dataset):
    """(image, label) pairs from uint8 arrays, transformed a whole batch at a time (``__getitems__``)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, cfg: Any):
        self.images = torch.from_numpy(images).unsqueeze(1)
        self.labels = torch.from_numpy(labels)
        self.size = (cfg.image_size, cfg.image_size)
        self.interpolation = cfg.interpolation
        self.channels = cfg.channels
        self.mean = torch.tensor(cfg.mean).view(1, -1, 1, 1)
        self.std = torch.tensor(cfg.std).view(1, -1, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def transform(self, images: torch.Tensor) -> torch.Tensor:
        x = resize_like_pil(images, self.size[0], self.interpolation)
        return ((x.expand(-1, self.channels, -1, -1) - self.mean) / self.std).contiguous()

    def __getitem__(self, index: int):
        return self.transform(self.images[index : index + 1])[0], self.labels[index]

    def __getitems__(self, indices: list[int]):
        return list(zip(self.transform(self.images[indices]), self.labels[indices]))


@register("digits_embedded")
def digits_embedded(cfg: Any) -> DomainAdaptationTask:
    source, target = check_domains(cfg, DOMAINS)
    arrays = load_arrays()

    def split(letter: str, part: str) -> EmbeddedDigits:
        prefix = f"{DOMAINS[letter]}_{part}"
        return EmbeddedDigits(arrays[f"{prefix}_x"], arrays[f"{prefix}_y"], cfg)

    return DomainAdaptationTask(
        source_train=split(source, "train"),
        target_train=split(target, "train"),
        target_test=split(target, "test"),
        classes=CLASSES,
        source=DOMAINS[source],
        target=DOMAINS[target],
    )
