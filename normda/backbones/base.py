"""What a ``backbone=`` option is (a builder taking the ``backbone`` config node and returning an ``nn.Module`` that
maps images to (N, D) features, with ``out_features = D``), the table of them (``BACKBONES``), ``register`` and
``build``."""
from __future__ import annotations

from typing import Any, Callable

from torch import nn

from normda.registry import Registry

BACKBONES: Registry[Callable[[Any], nn.Module]] = Registry("backbone", "normda.backbones", "backbone")
#: ``@register("name")`` on a builder
register = BACKBONES.register


def build(cfg: Any) -> nn.Module:
    """Build ``cfg.name`` with the whole ``cfg`` node (``pretrained``, ``weights``, ``in_chans``...)."""
    return BACKBONES.get(cfg.name)(cfg)
