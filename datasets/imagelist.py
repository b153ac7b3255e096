"""Image-list datasets: a text file of ``<path> <label>`` lines (the format of TLlib and of the TransNorm code).

Relative paths are joined to the dataset root; absolute paths are used as they are.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from torch.utils.data import Dataset
from torchvision.datasets.folder import default_loader

from normda.errors import ConfigError, DataNotFoundError

Sample = tuple[Path, int]


def read_image_list(list_file: Path, root: Path, num_classes: int) -> list[Sample]:
    """Parse ``list_file`` into (image path, label) pairs, checking each label is in ``[0, num_classes)``."""
    samples = []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise ConfigError(f"line {number} of {list_file} is {line.strip()!r}, not '<path> <label>'")
        label = int(parts[1])
        if not 0 <= label < num_classes:
            raise ConfigError(f"line {number} of {list_file} has label {label}, outside 0..{num_classes - 1}")
        samples.append((root / parts[0], label))
    if not samples:
        raise ConfigError(f"{list_file} lists no images: give a list of '<path> <label>' lines")
    return samples


def drop_missing(samples: list[Sample], list_file: Path, skip_missing: bool) -> tuple[list[Sample], int]:
    """Keep the samples whose image exists. A missing image is an error unless ``skip_missing``; returns the kept
    samples and how many were dropped."""
    present = [sample for sample in samples if sample[0].is_file()]
    missing = len(samples) - len(present)
    if missing and not skip_missing:
        first = next(path for path, _ in samples if not path.is_file())
        raise DataNotFoundError(
            f"{missing} of the {len(samples)} images listed in {list_file} are missing (first: {first}): "
            f"put them in place, or pass data.skip_bad=true to train on the {len(present)} present"
        )
    if not present:
        raise DataNotFoundError(f"none of the {len(samples)} images listed in {list_file} exists: check data.root")
    return present, missing


class ImageList(Dataset):
    """(image, label) pairs from a parsed list, each image loaded with PIL (RGB) and passed through ``transform``."""

    def __init__(self, samples: list[Sample], transform: Callable | None = None):
        self.samples = samples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        image = default_loader(str(path))
        if self.transform is not None:
            image = self.transform(image)
        return image, label
