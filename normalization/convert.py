"""Swap every BatchNorm layer of a model for the normalization chosen by name."""
from __future__ import annotations

import fnmatch
from typing import Any, Iterable

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from normda.normalization.base import Normalization, build


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


def _excluded(name: str, bn: _BatchNorm, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) or p == type(bn).__name__ for p in patterns)


def _replace(bn: _BatchNorm, option: Normalization) -> nn.Module:
    new = option.replace(bn)
    if new is bn:
        return bn
    new.layer_name = getattr(bn, "layer_name", None)
    new.replaces_batchnorm = True  # a second conversion leaves it (and the BatchNorms inside it, DSBN's branches) alone
    is_fused = hasattr(bn, "act") and hasattr(bn, "drop") and type(bn).forward is not nn.BatchNorm2d.forward
    return NormAct(new, bn.drop, bn.act) if is_fused else new


def convert(model: nn.Module, name: str | Normalization = "transnorm", *, exclude: Iterable[str] = (),
            **options: Any) -> nn.Module:
    """Replace every BatchNorm{1,2,3}d of ``model`` (any torchvision or timm model, the digits CNNs, the classifier's
    bottleneck) with ``norm=name``, carrying over gamma/beta and the running statistics, and return the model.

    ``name`` is a registered option's name (built with ``options``) or an option built already (``build``).
    ``exclude`` holds glob patterns of qualified module names (``"bn1"``, ``"layer4.*"``) or BatchNorm class names
    (``"BatchNorm1d"``) to keep as BatchNorm. The model is changed in place; if ``model`` itself is a BatchNorm
    layer, its replacement is returned. Converting a converted model again changes nothing: the layers a conversion
    made, and the BatchNorms inside them, are not BatchNorms to replace.
    """
    option = build(name, **options) if isinstance(name, str) else name
    patterns = list(exclude)
    if isinstance(model, _BatchNorm):
        model = _replace(model, option)
    else:
        converted = {id(inner) for layer in model.modules() if getattr(layer, "replaces_batchnorm", False)
                     for inner in layer.modules()}
        targets = [
            (parent, child_name, child, f"{parent_name}.{child_name}".lstrip("."))
            for parent_name, parent in model.named_modules()
            for child_name, child in parent.named_children()
            if isinstance(child, _BatchNorm) and id(child) not in converted
        ]
        for parent, child_name, child, qualified in targets:
            if not _excluded(qualified, child, patterns):
                child.layer_name = qualified
                setattr(parent, child_name, _replace(child, option))
    option.prepare(model)
    return model
