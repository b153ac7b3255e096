"""The embedded Digits task: a few thousand MNIST and USPS images shipped inside the package (1.4 MB), so that
``python train.py`` runs with no download. Built by ``scripts/make_embedded_digits.py``.

Per domain: 3,000 class-balanced training images; the test sets are 2,000 MNIST test images and the complete USPS test
set (2,007). Images are resized (bilinear, antialiased) to ``data.image_size``, given ``data.channels`` equal channels
and normalised with ``data.mean``/``data.std``, like the TLlib ``res.`` transform.
"""
from __future__ import annotations

from importlib import resources
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from datasets.task import DATASETS, DomainAdaptationTask, check_domains

DOMAINS = {"M": "mnist", "U": "usps"}
CLASSES = [str(digit) for digit in range(10)]


def load_arrays() -> dict[str, np.ndarray]:
    with resources.files("datasets").joinpath("embedded/mnist_usps.npz").open("rb") as handle:
        with np.load(handle) as arrays:
            return dict(arrays)


def to_dataset(images: np.ndarray, labels: np.ndarray, cfg: Any) -> TensorDataset:
    x = torch.from_numpy(images).float().div_(255.0).unsqueeze(1)
    x = F.interpolate(x, size=(cfg.image_size, cfg.image_size), mode="bilinear", antialias=True, align_corners=False)
    x = x.expand(-1, cfg.channels, -1, -1)
    mean = torch.tensor(cfg.mean, dtype=x.dtype).view(1, -1, 1, 1)
    std = torch.tensor(cfg.std, dtype=x.dtype).view(1, -1, 1, 1)
    return TensorDataset(((x - mean) / std).contiguous(), torch.from_numpy(labels))


@DATASETS.register("digits_embedded")
def digits_embedded(cfg: Any) -> DomainAdaptationTask:
    source, target = check_domains(cfg, DOMAINS)
    arrays = load_arrays()

    def split(letter: str, part: str) -> TensorDataset:
        prefix = f"{DOMAINS[letter]}_{part}"
        return to_dataset(arrays[f"{prefix}_x"], arrays[f"{prefix}_y"], cfg)

    return DomainAdaptationTask(
        source_train=split(source, "train"),
        target_train=split(target, "train"),
        target_test=split(target, "test"),
        classes=CLASSES,
        source=DOMAINS[source],
        target=DOMAINS[target],
    )
