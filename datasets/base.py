"""What a ``data=`` option builds (a :class:`DomainAdaptationTask`: labelled source, unlabelled target, target test
set, and their loaders), the table of options (``DATASETS``), ``register`` and ``build``."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from normda.datasets.sampling import ResumableSampler, SeededSamples, collate
from normda.errors import ConfigError
from normda.registry import Registry

DATASETS: Registry[Callable[[Any], "DomainAdaptationTask"]] = Registry("dataset", "normda.datasets", "data")
#: ``@register("name")`` on a function ``builder(data_cfg) -> DomainAdaptationTask``
register = DATASETS.register


@dataclass
class DomainAdaptationTask:
    """What a ``data=`` builder returns.

    ``target_train`` is the unlabelled target data used in training (its labels are never read); ``target_test`` is
    what accuracy is reported on, and ``target_test_ten_crop`` the same images as ten crops each, where the dataset
    offers it (image files). ``notes`` holds facts worth recording in the run's summary (skipped images...).
    """

    source_train: Dataset
    target_train: Dataset
    target_test: Dataset
    classes: list[str]
    source: str
    target: str
    notes: dict = field(default_factory=dict)
    target_test_ten_crop: Dataset | None = None
    source_val: Dataset | None = None  # labelled source held out of training (data.source_val_fraction)
    target_val: Dataset | None = None  # unlabelled target held out of adaptation (data.target_val_fraction)
    inputs: dict | None = None  # what identifies the files it reads (image files: count, bytes, names and sizes)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def sizes(self) -> dict[str, int]:
        parts = ("source_train", "target_train", "target_test", "source_val", "target_val")
        return {name: len(getattr(self, name)) for name in parts if getattr(self, name) is not None}

    def train_loaders(self, batch_size: int, num_workers: int, seed: int) -> tuple[DataLoader, DataLoader]:
        """Shuffled source and target loaders of ``batch_size`` samples each, dropping incomplete batches (TLlib):
        one epoch each, for passes over the training data before training (DAFT's statistics)."""
        return tuple(
            _loader(dataset, name, batch_size, num_workers, shuffle=True, seed=seed + offset)
            for offset, (name, dataset) in enumerate(self._training_domains())
        )

    def train_streams(self, batch_size: int, num_workers: int, seed: int, start: int, stop: int, rank: int = 0,
                      world_size: int = 1) -> tuple[DataLoader, DataLoader]:
        """Source and target loaders for training iterations ``start`` to ``stop``: the batches (and their
        augmentations) of an iteration depend on ``seed`` and the iteration only (``datasets/sampling.py``), so a
        resumed run continues the uninterrupted one's order. With ``world_size`` processes, this rank's share."""
        loaders = []
        for offset, (name, dataset) in enumerate(self._training_domains()):
            if len(dataset) < batch_size * world_size:
                raise ConfigError(f"the {name} domain has {len(dataset)} images, fewer than data.batch_size="
                                  f"{batch_size} x {world_size} processes: lower data.batch_size")
            sampler = ResumableSampler(len(dataset), batch_size, seed * 2 + offset, start, stop, rank, world_size)
            loaders.append(DataLoader(
                SeededSamples(dataset), batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                collate_fn=collate, pin_memory=torch.cuda.is_available(), persistent_workers=num_workers > 0,
                generator=torch.Generator().manual_seed(seed),  # keeps the process's RNG out of the loader
            ))
        return loaders[0], loaders[1]

    def _training_domains(self) -> tuple[tuple[str, Dataset], tuple[str, Dataset]]:
        return ("source", self.source_train), ("target", self.target_train)

    def test_loader(self, batch_size: int, num_workers: int, ten_crop: bool = False) -> DataLoader:
        if not ten_crop:
            return _loader(self.target_test, "target test", batch_size, num_workers, shuffle=False, seed=0)
        if self.target_test_ten_crop is None:
            raise ConfigError("trainer.ten_crop=true needs a dataset of image files (office31, ...); this one has no "
                              "10-crop test: set trainer.ten_crop=false")
        return _loader(self.target_test_ten_crop, "target test", max(batch_size // 10, 1), num_workers, False, 0)


    def source_val_loader(self, batch_size: int, num_workers: int) -> DataLoader:
        return _loader(self.source_val, "source validation", batch_size, num_workers, shuffle=False, seed=0)

    def target_val_loader(self, batch_size: int, num_workers: int) -> DataLoader:
        return _loader(self.target_val, "target validation", batch_size, num_workers, shuffle=False, seed=0)

    def source_sample_loader(self, batch_size: int, num_workers: int, size: int = 1000) -> DataLoader:
        """At most ``size`` source training samples (a fixed draw), for the domain classifier of DEV."""
        indices = hold_out(len(self.source_train), 1.0 - min(size / len(self.source_train), 1.0), seed=0)[0]
        return _loader(Subset(self.source_train, indices), "source sample", batch_size, num_workers, False, 0)


def hold_out(count: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A fixed random split of ``range(count)``: (kept, held-out ``fraction``)."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()
    held = round(count * fraction)
    return sorted(order[held:]), sorted(order[:held])


def _loader(dataset: Dataset, name: str, batch_size: int, num_workers: int, shuffle: bool, seed: int) -> DataLoader:
    if shuffle and len(dataset) < batch_size:
        raise ConfigError(f"the {name} domain has {len(dataset)} images, fewer than data.batch_size={batch_size}: "
                          f"lower data.batch_size")
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=shuffle,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0, collate_fn=collate,
        generator=torch.Generator().manual_seed(seed) if shuffle else None,
    )


def check_domains(cfg: Any, domains: Mapping[str, str]) -> tuple[str, str]:
    """Validate ``cfg.source`` and ``cfg.target`` against a dataset's domains, given by letter or by name (any case);
    return their letters."""
    choices = ", ".join(f"{letter} ({name})" for letter, name in domains.items())
    by_name = {name.lower(): letter for letter, name in domains.items()}
    letters = []
    for key in ("source", "target"):
        value = str(cfg[key])
        letter = value if value in domains else by_name.get(value.lower())
        if letter is None:
            raise ConfigError(f"data={cfg.name} has no domain {value!r} (data.{key}): choose one of {choices}")
        letters.append(letter)
    if letters[0] == letters[1]:
        raise ConfigError(f"data.source and data.target are both {letters[0]!r}: adaptation needs two domains "
                          f"({choices})")
    return letters[0], letters[1]


def build(cfg: Any) -> DomainAdaptationTask:
    """Build the task that ``cfg.name`` names, from the whole ``data`` config node (checked against the dataset's
    schema, ``datasets/settings.py``, by ``normda.schema.check_config``). With
    ``data.source_val_fraction`` > 0, that part of the source is held out of training as a labelled validation set
    (for model selection without target labels), unless the dataset held it out itself (with its test transform).
    With ``data.target_val_fraction`` > 0, that part of the unlabelled target training set is held out of adaptation
    for the label-free validators (Ericsson et al. 2023's practice), and accuracy stays on the target test split;
    image-file datasets, whose target test set is the target training images, hold it out themselves and report
    accuracy on the rest (``image_files.image_task``)."""
    task = DATASETS.get(cfg.name)(cfg)
    fraction = cfg.source_val_fraction
    if fraction and task.source_val is None:
        kept, held = hold_out(len(task.source_train), fraction, seed=0)
        task.source_val = Subset(task.source_train, held)
        task.source_train = Subset(task.source_train, kept)
    target_fraction = cfg.target_val_fraction
    if target_fraction and task.target_val is None:
        kept, held = hold_out(len(task.target_train), target_fraction, seed=1)
        task.target_val = Subset(task.target_train, held)
        task.target_train = Subset(task.target_train, kept)
        task.notes["target_validation"] = (f"validators on {len(held)} target training images held out of "
                                           f"adaptation; accuracy on the target test split")
    return task
