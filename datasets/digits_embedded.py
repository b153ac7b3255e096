"""The embedded Digits task: a few thousand MNIST and USPS images shipped inside the package (1.4 MB), so that
``python train.py`` runs with no download. Built by ``scripts/make_embedded_digits.py``.

Per domain: 3,000 class-balanced training images; the test sets are 2,000 MNIST test images and the complete USPS test
set (2,007). Images stay uint8 at their native size and are transformed a batch at a time as ``data=digits``'s
(``digit_arrays.py``: TLlib's ``res.`` transform, as PIL computes it).
"""
from __future__ import annotations

from importlib import resources
from typing import Any

import numpy as np

from normda.datasets.base import DomainAdaptationTask, check_domains, register
from normda.datasets.settings import DigitArraysConfig
from normda.datasets.digit_arrays import DigitArrays

DOMAINS = {"M": "mnist", "U": "usps"}
CLASSES = [str(digit) for digit in range(10)]


def load_arrays() -> dict[str, np.ndarray]:
    with resources.files("normda.datasets").joinpath("embedded/mnist_usps.npz").open("rb") as handle:
        with np.load(handle) as arrays:
            return dict(arrays)


@register("digits_embedded", settings=DigitArraysConfig)
def digits_embedded(cfg: Any) -> DomainAdaptationTask:
    source, target = check_domains(cfg, DOMAINS)
    arrays = load_arrays()

    def split(letter: str, part: str) -> DigitArrays:
        prefix = f"{DOMAINS[letter]}_{part}"
        return DigitArrays(arrays[f"{prefix}_x"], arrays[f"{prefix}_y"], cfg)

    return DomainAdaptationTask(
        source_train=split(source, "train"),
        target_train=split(target, "train"),
        target_test=split(target, "test"),
        classes=CLASSES,
        source=DOMAINS[source],
        target=DOMAINS[target],
    )
