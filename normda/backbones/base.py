"""What a ``backbone=`` option is (a builder taking the ``backbone`` config node and returning an ``nn.Module`` that
maps images to (N, D) features, with ``out_features = D``), the table of them (``BACKBONES``), ``register`` and
``build``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Callable, Literal

from torch import nn

from normda.datasets.settings import Channels, Style
from normda.registry import AtLeast, Registry

BACKBONES: Registry[Callable[[Any], nn.Module]] = Registry("backbone", "normda.backbones", "backbone")
#: ``@register("name")`` on a builder (``settings=`` its node's schema when it has keys of its own)
register = BACKBONES.register


@dataclass(frozen=True)
class BackboneConfig:
    """The keys every ``backbone`` node has (``conf/backbone/*.yaml``), checked before a run starts."""

    pretrained: bool
    weights: str | None  # a local weights file, used instead of downloading
    in_chans: Channels
    input_size: Annotated[int, AtLeast(1)]
    transform: Style  # how data=folders/image_list prepare images for it
    mean: list[float]
    std: list[float]
    lr_mult: Annotated[float, AtLeast(0)]


@dataclass(frozen=True)
class ResNetConfig(BackboneConfig):
    library: Literal["torchvision", "timm"]


@dataclass(frozen=True)
class TimmConfig(BackboneConfig):
    model: str  # any timm model name


def build(cfg: Any) -> nn.Module:
    """Build ``cfg.name`` with the whole ``cfg`` node (``pretrained``, ``weights``, ``in_chans``...), checked against
    its schema (:class:`BackboneConfig` or the one it registered) by ``normda.schema.check_config``."""
    return BACKBONES.get(cfg.name)(cfg)
