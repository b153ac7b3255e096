"""BN-Inception (Inception v2; Ioffe & Szegedy, ICML 2015, Figure 5), the backbone of TransNorm's Table 4 (middle) and
of AutoDIAL. timm has no BN-Inception, so it is built here, every convolution followed by BatchNorm and ReLU; it
trains from scratch and no pretrained weights ship with it (``backbone.weights`` loads a state dict of this layout).

Layout for 224x224 input: 7x7/2 conv 64, 3x3/2 max pool, 1x1 conv 64, 3x3 conv 192, 3x3/2 max pool, then the
inception blocks 3a (256 channels), 3b (320), 3c (576, stride 2), 4a-4b (576), 4c-4d (608), 4e (1056, stride 2),
5a-5b (1024), global average pool: 1024 features. A block concatenates a 1x1 branch, a 1x1 -> 3x3 branch, a
1x1 -> 3x3 -> 3x3 branch and a pooling branch (average pool + 1x1 projection; max pool in 5b; in the stride-2 blocks
3c and 4e, a max pool passed through, and no 1x1 branch).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from normda.backbones.base import BackboneConfig, register
from normda.backbones.weights import load_weights, read_state_dict
from normda.errors import ConfigError


def conv_bn(n_in: int, n_out: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(n_in, n_out, kernel, stride, padding=kernel // 2, bias=False),
                         nn.BatchNorm2d(n_out), nn.ReLU(inplace=True))


class InceptionBlock(nn.Module):
    """One block: ``(n_1x1, reduce_3x3, n_3x3, reduce_double, n_double, pool, projection)``; ``n_1x1 = 0`` and
    ``pool = "max_pass"`` make the stride-2 block."""

    def __init__(self, n_in: int, n_1x1: int, reduce_3x3: int, n_3x3: int, reduce_double: int, n_double: int,
                 pool: str, projection: int):
        super().__init__()
        stride = 2 if pool == "max_pass" else 1
        self.branch_1x1 = conv_bn(n_in, n_1x1, 1) if n_1x1 else None
        self.branch_3x3 = nn.Sequential(conv_bn(n_in, reduce_3x3, 1), conv_bn(reduce_3x3, n_3x3, 3, stride))
        self.branch_double = nn.Sequential(conv_bn(n_in, reduce_double, 1), conv_bn(reduce_double, n_double, 3),
                                           conv_bn(n_double, n_double, 3, stride))
        if pool == "max_pass":
            self.branch_pool = nn.MaxPool2d(3, stride=2, padding=1)
        else:
            pooling = nn.AvgPool2d(3, 1, 1, count_include_pad=False) if pool == "avg" else nn.MaxPool2d(3, 1, 1)
            self.branch_pool = nn.Sequential(pooling, conv_bn(n_in, projection, 1))
        self.out_channels = n_1x1 + n_3x3 + n_double + (n_in if pool == "max_pass" else projection)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch_3x3(x), self.branch_double(x), self.branch_pool(x)]
        if self.branch_1x1 is not None:
            branches.insert(0, self.branch_1x1(x))
        return torch.cat(branches, dim=1)


#: Figure 5 of the BN paper: (#1x1, #3x3 reduce, #3x3, double #3x3 reduce, double #3x3, pool, pool projection)
BLOCKS = {
    "3a": (64, 64, 64, 64, 96, "avg", 32),
    "3b": (64, 64, 96, 64, 96, "avg", 64),
    "3c": (0, 128, 160, 64, 96, "max_pass", 0),
    "4a": (224, 64, 96, 96, 128, "avg", 128),
    "4b": (192, 96, 128, 96, 128, "avg", 128),
    "4c": (160, 128, 160, 128, 160, "avg", 128),
    "4d": (96, 128, 192, 160, 192, "avg", 128),
    "4e": (0, 128, 192, 192, 256, "max_pass", 0),
    "5a": (352, 192, 320, 160, 224, "avg", 128),
    "5b": (352, 192, 320, 192, 224, "max", 128),
}


class InceptionBN(nn.Module):
    def __init__(self, in_chans: int = 3):
        super().__init__()
        self.stem = nn.Sequential(conv_bn(in_chans, 64, 7, 2), nn.MaxPool2d(3, 2, padding=1),
                                  conv_bn(64, 64, 1), conv_bn(64, 192, 3), nn.MaxPool2d(3, 2, padding=1))
        channels, blocks = 192, {}
        for name, spec in BLOCKS.items():
            blocks[name] = InceptionBlock(channels, *spec)
            channels = blocks[name].out_channels
        self.blocks = nn.Sequential()
        for name, block in blocks.items():
            self.blocks.add_module(name, block)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_features = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.blocks(self.stem(x)))


@register("inception_bn", settings=BackboneConfig)
def inception_bn(cfg: Any) -> InceptionBN:
    if cfg.pretrained and not cfg.weights:
        raise ConfigError("backbone=inception_bn has no pretrained weights to download: set backbone.pretrained=false "
                          "(train from scratch) or give backbone.weights=/path/to/state_dict.pth")
    model = InceptionBN(cfg.in_chans)
    if cfg.weights:
        load_weights(model, read_state_dict(cfg.weights), f"backbone.weights={cfg.weights}")
    return model
