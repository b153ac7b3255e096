"""The ``data`` node's schema: the keys every dataset has (:class:`DataConfig`) and each family's own, declared once
with their types and ranges. A dataset registers with its schema (``@register("digits", settings=DigitsConfig)``) and
``normda.schema.check_config`` checks the whole node against it before a run starts, so builders read a checked node.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from normda.registry import AtLeast, Below

#: TLlib's ``--train-resizing`` choices, by their TLlib names (``data.train_resizing``)
Resizing = Literal["default", "cen.crop", "ran.crop", "res."]
#: the filter of the square resize (``data.interpolation``)
Interpolation = Literal["bilinear", "bicubic"]
#: how images of files are prepared (``data.transform``): ``imagenet`` (resize, crop, ImageNet statistics) for the
#: ImageNet-style backbones, ``digits`` (TLlib's ``res.``: a resize to the backbone's size only) for LeNet and DTN
Style = Literal["imagenet", "digits"]
#: grey or RGB (``data.channels``, ``backbone.in_chans``)
Channels = Literal[1, 3]


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """The keys every ``data`` node has (``conf/data/common/base.yaml`` sets most of them)."""

    source: str
    target: str
    root: str | None
    image_size: Annotated[int, AtLeast(1)]
    channels: Channels
    source_val_fraction: Annotated[float, AtLeast(0), Below(1)]
    target_val_fraction: Annotated[float, AtLeast(0), Below(1)]
    batch_size: Annotated[int, AtLeast(1)]  # per domain
    eval_batch_size: Annotated[int, AtLeast(1)]
    num_workers: Annotated[int, AtLeast(0)]
    interpolation: Interpolation
    schedule: dict[str, Any]  # the dataset's standard length: iterations, eval_every (checked as trainer.*)
    task: str | None = None  # a preset's sweep of tasks: data.task=A2W sets source A and target W


@dataclass(frozen=True, kw_only=True)
class DigitArraysConfig(DataConfig):
    """Digits held in memory as uint8 arrays (``digits_embedded``)."""

    mean: list[float]
    std: list[float]


@dataclass(frozen=True, kw_only=True)
class DigitsConfig(DigitArraysConfig):
    """MNIST, USPS and SVHN through torchvision (``digits``)."""

    download: bool
    svhn_subset: Literal["full", "balanced"]


@dataclass(frozen=True, kw_only=True)
class SyntheticConfig(DataConfig):
    """Random images of two shifted domains (``synthetic``, for tests)."""

    num_classes: Annotated[int, AtLeast(2)]
    samples_per_domain: Annotated[int, AtLeast(1)]


@dataclass(frozen=True, kw_only=True)
class ImageFilesConfig(DataConfig):
    """Image files, prepared by ``datasets/transforms.py``."""

    mean: list[float]
    std: list[float]
    skip_bad: bool
    transform: Style
    train_resizing: Resizing


@dataclass(frozen=True, kw_only=True)
class BenchmarkConfig(ImageFilesConfig):
    """A benchmark's image lists and archives (``office31``, ``officehome``, ``visda2017``, ``imageclef``)."""

    download: bool
    download_from: str | None
    list_files: dict[str, str]


@dataclass(frozen=True, kw_only=True)
class FoldersConfig(ImageFilesConfig):
    """One's own domains as class folders (``folders``)."""

    target_test: str | None


@dataclass(frozen=True, kw_only=True)
class ImageListConfig(ImageFilesConfig):
    """One's own domains as list files (``image_list``)."""

    classes: list[str] | str
    lists: dict[str, str] | None
    test_lists: dict[str, str] | None
