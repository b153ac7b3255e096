"""The small CNNs of the Digits benchmarks (as in the CDAN and TLlib code), trained from scratch."""
from __future__ import annotations

from typing import Any

from torch import nn

from normda.backbones.base import BackboneConfig, register
from normda.errors import ConfigError


def _no_pretrained_weights(cfg: Any) -> None:
    if cfg.pretrained or cfg.weights:
        raise ConfigError(f"backbone={cfg.name} has no pretrained weights: set backbone.pretrained=false and "
                          f"backbone.weights=null")


class LeNet(nn.Sequential):
    """LeNet for 28x28 digits: conv(20, 5) -> pool -> conv(50, 5) -> dropout -> pool -> fc 500. It has no BatchNorm,
    so on LeNet a normalization only changes the classifier's bottleneck."""

    def __init__(self, in_chans: int = 1, input_size: int = 28):
        spatial = ((input_size - 4) // 2 - 4) // 2
        super().__init__(
            nn.Conv2d(in_chans, 20, kernel_size=5), nn.MaxPool2d(2), nn.ReLU(),
            nn.Conv2d(20, 50, kernel_size=5), nn.Dropout2d(0.5), nn.MaxPool2d(2), nn.ReLU(),
            nn.Flatten(), nn.Linear(50 * spatial * spatial, 500), nn.ReLU(), nn.Dropout(0.5),
        )
        self.out_features = 500
        self.input_size = input_size


class DTN(nn.Sequential):
    """DTN for 32x32 digits: three stride-2 5x5 convolutions (64, 128, 256), each with BatchNorm2d, then fc 512 with
    BatchNorm1d. The BatchNorm CNN of the SVHN->MNIST experiments (TransNorm Table 4)."""

    def __init__(self, in_chans: int = 3, input_size: int = 32):
        def conv_block(n_in: int, n_out: int, dropout: float) -> list[nn.Module]:
            return [nn.Conv2d(n_in, n_out, kernel_size=5, stride=2, padding=2), nn.BatchNorm2d(n_out),
                    nn.Dropout2d(dropout), nn.ReLU()]

        spatial = (input_size + 7) // 8
        super().__init__(
            *conv_block(in_chans, 64, 0.1), *conv_block(64, 128, 0.3), *conv_block(128, 256, 0.5),
            nn.Flatten(), nn.Linear(256 * spatial * spatial, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Dropout(0.5),
        )
        self.out_features = 512
        self.input_size = input_size


@register("lenet", settings=BackboneConfig)
def lenet(cfg: Any) -> LeNet:
    _no_pretrained_weights(cfg)
    return LeNet(cfg.in_chans, cfg.input_size)


@register("dtn", settings=BackboneConfig)
def dtn(cfg: Any) -> DTN:
    _no_pretrained_weights(cfg)
    return DTN(cfg.in_chans, cfg.input_size)
