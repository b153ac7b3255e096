"""normda: unsupervised domain adaptation with swappable normalization layers.

The framework lives in three packages beside this one: ``normalization`` (the layers and the converter),
``dann_cdan`` (models, adaptation methods, the training loop) and ``datasets``. This package holds the plumbing they
share: registries by name and the user-facing errors.
"""
from normda.errors import (
    BatchTooSmallError,
    ConfigError,
    DataNotFoundError,
    UserError,
    WeightsUnavailableError,
)
from normda.registry import Registry

__all__ = [
    "BatchTooSmallError",
    "ConfigError",
    "DataNotFoundError",
    "Registry",
    "UserError",
    "WeightsUnavailableError",
]
