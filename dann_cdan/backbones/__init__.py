"""Feature extractors, chosen by ``backbone=<name>``.

A backbone builder takes the ``backbone`` config node and returns an ``nn.Module`` mapping images to (N, D) features,
with ``out_features = D``. Each file of this package registers its builders; a new backbone is one file here and one
YAML in ``conf/backbone/``.
"""
from __future__ import annotations

from typing import Any, Callable

from torch import nn

from normda.registry import Registry

BACKBONES: Registry[Callable[[Any], nn.Module]] = Registry("backbone", "dann_cdan.backbones", "backbone")


def build_backbone(cfg: Any) -> nn.Module:
    """Build ``cfg.name`` with the whole ``cfg`` node (``pretrained``, ``weights``, ``in_chans``...)."""
    return BACKBONES.get(cfg.name)(cfg)
