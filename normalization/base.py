"""What a ``norm=`` option is, the table of them, and how one is built.

An option is a :class:`Normalization` subclass, registered with ``@register("name")`` and built by :func:`build` with the
keys of its ``conf/norm/<name>.yaml`` (the settings its constructor's annotations allow; ``normda.registry`` checks
them):

* ``replace(bn)`` returns the layer that takes the place of one BatchNorm of the model (with its pretrained affine
  parameters and running statistics); returning ``bn`` keeps it.
* ``prepare(model)`` runs once after every BatchNorm is replaced (WeightAlign reparametrises the convolutions there).
* ``before_training`` and ``before_evaluation`` are the two moments the trainer hands over the model and the data:
  DAFT converts its BatchNorms from a statistics pass before training; AdaBN re-estimates every BatchNorm's statistics
  on the target set before each evaluation. The trainer calls them on whatever option it was given.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader

from normda.errors import ConfigError
from normda.registry import Registry


class Normalization:
    """Base class of the ``norm=`` options: keeps every BatchNorm and does nothing around training."""

    #: the ``norm=`` name, set by :func:`register`
    name: str = ""

    def replace(self, bn: _BatchNorm) -> nn.Module:
        return bn

    def prepare(self, model: nn.Module) -> None:
        """Change the model as a whole, after every BatchNorm has been replaced."""

    def before_training(self, model: nn.Module, loaders: Mapping[str, DataLoader], device: torch.device) -> None:
        """Called once before the first training step (not on resume), with the ``source`` and ``target`` loaders."""

    def before_evaluation(self, model: nn.Module, loader: DataLoader, device: torch.device) -> None:
        """Called before every evaluation, with the target test loader."""

    def choose_test_stats(self, model: nn.Module, trains_on_target: bool) -> None:
        """Called once the method is known: whether training shows the layers target batches. Only layers with
        per-domain statistics have a choice to make (``normalization.domain.DomainAwareOption``)."""

    def unsupported(self, bn: _BatchNorm, why: str) -> ConfigError:
        """The error for a BatchNorm this option cannot replace: names the layer and how to keep it."""
        layer = getattr(bn, "layer_name", type(bn).__name__)
        return ConfigError(f"norm={self.name} cannot replace {layer} ({type(bn).__name__}): {why}; keep it as "
                           f"BatchNorm with norm.exclude=[{layer}] or norm.exclude=[{type(bn).__name__}]")


NORMALIZATIONS: Registry[type[Normalization]] = Registry("normalization", "normda.normalization", "norm")


def register(name: str) -> Callable[[type[Normalization]], type[Normalization]]:
    """Register a :class:`Normalization` subclass as ``norm=<name>``."""

    def decorator(cls: type[Normalization]) -> type[Normalization]:
        cls.name = name
        return NORMALIZATIONS.register(name)(cls)

    return decorator


def build(name: str, **settings: Any) -> Normalization:
    """The ``norm=name`` option with ``settings`` (the keys of its YAML besides ``name`` and ``exclude``)."""
    return NORMALIZATIONS.build(name, settings)


def batchnorm_dims(bn: _BatchNorm) -> int | None:
    """1, 2 or 3: the number of the BatchNorm class (``BatchNorm2d`` -> 2); None for a BatchNorm of any input rank
    (``nn.SyncBatchNorm``, which ``SyncBatchNorm.convert_sync_batchnorm`` puts in place of all three)."""
    for dims, cls in ((1, nn.BatchNorm1d), (2, nn.BatchNorm2d), (3, nn.BatchNorm3d)):
        if isinstance(bn, cls):
            return dims
    return None


def copy_affine(source: _BatchNorm, target: nn.Module) -> nn.Module:
    """Copy ``source``'s gamma/beta into ``target`` (when both have them), with their freezing (``requires_grad``),
    and its train/eval mode; move ``target`` to source's device/dtype."""
    reference = next(iter(source.parameters()), None)
    if reference is None and source.running_mean is not None:
        reference = source.running_mean
    if reference is not None:
        target.to(device=reference.device, dtype=reference.dtype)
    if source.affine and getattr(target, "weight", None) is not None:
        with torch.no_grad():
            target.weight.copy_(source.weight)
            target.bias.copy_(source.bias)
        target.weight.requires_grad_(source.weight.requires_grad)
        target.bias.requires_grad_(source.bias.requires_grad)
    target.train(source.training)
    return target


def has_trained_statistics(bn: _BatchNorm) -> bool:
    """Whether ``bn``'s running statistics were ever estimated: a BatchNorm that never trained holds the placeholders
    mean 0, variance 1 (the bottleneck's, or any layer of a network trained from scratch)."""
    if not bn.track_running_stats:
        return False
    return not bool((bn.running_mean == 0).all() and (bn.running_var == 1).all())


def layer_label(module: nn.Module) -> str:
    """How error messages name a layer: its place in the model (set by ``convert``) or its class."""
    return getattr(module, "layer_name", None) or type(module).__name__
