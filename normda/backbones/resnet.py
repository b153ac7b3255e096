"""ResNet-50 / ResNet-101 with the ImageNet weights the papers used: torchvision's IMAGENET1K_V1 (76.13% top-1 for
ResNet-50), or the same weights through timm (``resnet50.tv_in1k``)."""
from __future__ import annotations

from typing import Any

import torchvision
from torch import nn

from normda.backbones.base import ResNetConfig, register
from normda.backbones.timm_model import create_timm
from normda.backbones.weights import download_errors, load_weights, read_state_dict
from normda.errors import ConfigError


def _torchvision_resnet(cfg: Any) -> nn.Module:
    weights = None
    if cfg.pretrained and not cfg.weights:
        weights = torchvision.models.get_model_weights(cfg.name).IMAGENET1K_V1
    filename = weights.url.rsplit("/", 1)[-1] if weights else f"{cfg.name}.pth"
    with download_errors(
        f"the ImageNet weights of {cfg.name} (torchvision IMAGENET1K_V1)",
        f"pass backbone.weights=/path/to/{filename} (or put it in ~/.cache/torch/hub/checkpoints/)",
    ):
        model = torchvision.models.get_model(cfg.name, weights=weights)
    if cfg.weights:
        load_weights(model, read_state_dict(cfg.weights), f"backbone.weights={cfg.weights}")
    model.out_features = model.fc.in_features
    model.fc = nn.Identity()
    return model


def resnet(cfg: Any) -> nn.Module:
    if cfg.in_chans != 3:
        raise ConfigError(f"backbone={cfg.name} takes 3-channel images: set data.channels=3")
    if cfg.library == "torchvision":
        return _torchvision_resnet(cfg)
    return create_timm(f"{cfg.name}.tv_in1k", pretrained=cfg.pretrained, weights=cfg.weights, in_chans=3)


register("resnet50", settings=ResNetConfig)(resnet)
register("resnet101", settings=ResNetConfig)(resnet)
