"""Digits: MNIST (M), USPS (U) and SVHN (S) through torchvision's own dataset classes and download locations.

Under ``data.root`` the files sit where torchvision puts them: ``MNIST/raw/*-ubyte``, ``usps.bz2`` and ``usps.t.bz2``,
``train_32x32.mat`` and ``test_32x32.mat``. ``data.download=true`` fetches what is missing (md5-checked).
The target's training split is the unlabelled target data; its test split is the one accuracy is reported on.
torchvision md5-checks what it downloads; split sizes other than the standard ones are reported as a warning. The
images are kept in memory as uint8 and transformed a batch at a time (``digit_arrays.py``), as PIL would.
MNIST-M is not offered: torchvision has no loader for it and its usual sources are not stable downloads.

SVHN's training split is imbalanced (from 4,659 nines to 13,861 ones). TLlib trains S->M on a class-balanced list
(``svhn_balanced.txt``); ``data.svhn_subset=balanced`` builds such a subset reproducibly from torchvision's file: every
class cut to the size of the smallest, keeping the images a fixed permutation (seed 0) puts first, in file order.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision import datasets as tv

from normda.datasets.base import DomainAdaptationTask, check_domains, register
from normda.datasets.settings import DigitsConfig
from normda.datasets.digit_arrays import DigitArrays
from normda.errors import DataNotFoundError

DOMAINS = {"M": "mnist", "U": "usps", "S": "svhn"}
CLASSES = [str(digit) for digit in range(10)]
EXPECTED_FILES = {"M": "MNIST/raw/*-ubyte", "U": "usps.bz2 and usps.t.bz2", "S": "train_32x32.mat and test_32x32.mat"}
SIZES = {"M": (60_000, 10_000), "U": (7_291, 2_007), "S": (73_257, 26_032)}  # (train, test) images

log = logging.getLogger(__name__)


def load_split(letter: str, root: Path, train: bool, download: bool) -> tuple[np.ndarray, np.ndarray]:
    """One torchvision digits split as (uint8 images (N, H, W) or (N, 3, H, W), labels); a missing or undownloadable
    dataset is a one-line :class:`DataNotFoundError`."""
    try:
        if letter == "S":
            dataset = tv.SVHN(str(root), split="train" if train else "test", download=download)
            images, labels = dataset.data, dataset.labels
        else:
            dataset = (tv.MNIST if letter == "M" else tv.USPS)(str(root), train=train, download=download)
            images, labels = dataset.data, dataset.targets
    except (RuntimeError, OSError) as error:
        reason = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        action = "the download failed" if download else "pass data.download=true to download it"
        raise DataNotFoundError(
            f"{DOMAINS[letter].upper()} is not in {root} ({reason}): {action}, or place {EXPECTED_FILES[letter]} "
            f"there by hand"
        ) from error
    expected = SIZES[letter][0 if train else 1]
    if len(dataset) != expected:
        log.warning("%s's %s split in %s has %d images where the standard one has %d", DOMAINS[letter].upper(),
                    "train" if train else "test", root, len(dataset), expected)
    return np.asarray(images), np.asarray(labels)


def class_balanced(labels: np.ndarray, seed: int = 0) -> list[int]:
    """Indices of a class-balanced subset: each class keeps as many images as the smallest has, those that a seeded
    permutation puts first; returned in file order."""
    counts = np.bincount(labels)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed)).numpy()
    kept = np.concatenate([order[labels[order] == label][: counts.min()] for label in range(len(counts))])
    return sorted(kept.tolist())


@register("digits", settings=DigitsConfig)
def digits(cfg: Any) -> DomainAdaptationTask:
    source, target = check_domains(cfg, DOMAINS)
    root = Path(cfg.root).expanduser()
    images, labels = load_split(source, root, True, cfg.download)
    if source == "S" and cfg.svhn_subset == "balanced":
        kept = class_balanced(labels)
        images, labels = images[kept], labels[kept]
    return DomainAdaptationTask(
        source_train=DigitArrays(images, labels, cfg),
        target_train=DigitArrays(*load_split(target, root, True, cfg.download), cfg),
        target_test=DigitArrays(*load_split(target, root, False, cfg.download), cfg),
        classes=CLASSES,
        source=DOMAINS[source],
        target=DOMAINS[target],
    )
