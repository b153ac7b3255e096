"""Swap every BatchNorm layer of a model for the normalization chosen by name."""
from __future__ import annotations

import fnmatch
import inspect
from typing import Iterable

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from normalization.registry import NORMALIZATIONS
from normda.errors import ConfigError


class NormAct(nn.Module):
    """The replacement of a fused norm+activation layer (timm's ``BatchNormAct2d``): the new norm, then the fused
    layer's own dropout and activation, so that converting a timm model keeps its activations."""

    def __init__(self, norm: nn.Module, drop: nn.Module, act: nn.Module):
        super().__init__()
        self.norm = norm
        self.drop = drop
        self.act = act

    def forward(self, x):
        return self.act(self.drop(self.norm(x)))


def _check_options(name: str, factory, options: dict) -> None:
    accepted = list(inspect.signature(factory).parameters)[1:]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        choices = ", ".join(accepted) if accepted else "none"
        raise ConfigError(f"norm={name} has no option {', '.join(unknown)} (its options: {choices})")


def _replace(bn: _BatchNorm, factory, options: dict) -> nn.Module:
    new = factory(bn, **options)
    if new is bn:
        return bn
    is_fused = hasattr(bn, "act") and hasattr(bn, "drop") and type(bn).forward is not nn.BatchNorm2d.forward
    return NormAct(new, bn.drop, bn.act) if is_fused else new


def convert(model: nn.Module, name: str = "transnorm", *, exclude: Iterable[str] = (), **options) -> nn.Module:
    """Replace every BatchNorm{1,2,3}d of ``model`` (any torchvision or timm model, or the classifier's bottleneck)
    with ``norm=name``, carrying over gamma/beta and the running statistics, and return the model.

    ``exclude`` holds glob patterns of qualified module names (``"bn1"``, ``"layer4.*"``) to keep as BatchNorm.
    ``options`` go to the normalization's replacement factory. The model is changed in place; if ``model`` itself is
    a BatchNorm layer, its replacement is returned.
    """
    factory = NORMALIZATIONS.get(name)
    _check_options(name, factory, options)
    patterns = list(exclude)

    if isinstance(model, _BatchNorm):
        return _replace(model, factory, options)
    targets = [
        (parent, child_name, child)
        for parent_name, parent in model.named_modules()
        for child_name, child in parent.named_children()
        if isinstance(child, _BatchNorm)
        and not any(fnmatch.fnmatchcase(f"{parent_name}.{child_name}".lstrip("."), p) for p in patterns)
    ]
    for parent, child_name, child in targets:
        setattr(parent, child_name, _replace(child, factory, options))
    return model
