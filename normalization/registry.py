"""The table of ``norm=`` options.

Each entry is a *replacement factory*: ``factory(bn, **options) -> nn.Module`` receives one BatchNorm layer of the
model (with its pretrained affine parameters and running statistics) and returns the layer that takes its place.
Returning ``bn`` itself keeps it. :func:`normalization.convert` applies the factory to every BatchNorm of a model.
"""
from __future__ import annotations

from typing import Callable

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from normda.registry import Registry

ReplacementFactory = Callable[..., nn.Module]

NORMALIZATIONS: Registry[ReplacementFactory] = Registry("normalization", "normalization", "norm")


def register(name: str) -> Callable[[ReplacementFactory], ReplacementFactory]:
    """Register ``factory(bn: _BatchNorm, **options) -> nn.Module`` as ``norm=<name>``."""
    return NORMALIZATIONS.register(name)


def batchnorm_dims(bn: _BatchNorm) -> int:
    """1, 2 or 3: the number of the BatchNorm class (``BatchNorm2d`` -> 2), from the dimension check it performs."""
    for dims, cls in ((1, nn.BatchNorm1d), (2, nn.BatchNorm2d), (3, nn.BatchNorm3d)):
        if isinstance(bn, cls):
            return dims
    raise TypeError(f"unsupported BatchNorm type {type(bn).__name__}")
