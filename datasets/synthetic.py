"""A generated task for tests and smoke runs (like DomainBed's Debug datasets): no files, any image size.

Each class is a fixed random image pattern; samples add Gaussian noise. The target domain ("shifted") is the source
distribution under a per-channel affine shift of intensities, so statistics differ between domains while the class
structure is shared.
"""
from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import TensorDataset

from normda.datasets.base import DomainAdaptationTask, check_domains, register
from normda.datasets.settings import SyntheticConfig

DOMAINS = {"S": "source", "T": "shifted"}


def generate(cfg: Any, shifted: bool, count: int, seed: int) -> TensorDataset:
    patterns = torch.randn(cfg.num_classes, cfg.channels, cfg.image_size, cfg.image_size,
                           generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % cfg.num_classes
    images = patterns[labels] + 0.5 * torch.randn(count, *patterns.shape[1:], generator=generator)
    if shifted:
        images = 1.5 * images + 0.5
    return TensorDataset(images, labels)


@register("synthetic", settings=SyntheticConfig)
def synthetic(cfg: Any) -> DomainAdaptationTask:
    source, target = check_domains(cfg, DOMAINS)
    return DomainAdaptationTask(
        source_train=generate(cfg, source == "T", cfg.samples_per_domain, seed=1),
        target_train=generate(cfg, target == "T", cfg.samples_per_domain, seed=2),
        target_test=generate(cfg, target == "T", cfg.samples_per_domain, seed=3),
        classes=[f"class_{index}" for index in range(cfg.num_classes)],
        source=DOMAINS[source],
        target=DOMAINS[target],
    )
