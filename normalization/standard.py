"""BatchNorm (the baseline) and the batch-independent normalizations GroupNorm, InstanceNorm and LayerNorm.

GN, IN and LN normalise each sample on its own (biased variance, eps 1e-5) and have no running statistics: train and
eval are the same function. Swapped into a BatchNorm-pretrained network they keep gamma/beta but drop the running
statistics, so the network computes a different function from the start. IN and LN are GroupNorm with C groups and
with one group ("LayerNorm in the CNN sense": statistics over (C, H, W), per-channel affine).
"""
from __future__ import annotations

from typing import Annotated

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from normda.normalization.base import Normalization, copy_affine, layer_label, register
from normda.errors import BatchTooSmallError, ConfigError
from normda.registry import AtLeast


@register("bn")
class BatchNormOption(Normalization):
    """One BatchNorm over the concatenated ``[source; target]`` batch: every BatchNorm stays as it is."""


def group_norm(bn: _BatchNorm, groups: int, option: Normalization) -> nn.GroupNorm:
    if bn.num_features % groups:
        raise ConfigError(f"norm={option.name} cannot split the {bn.num_features} channels of {layer_label(bn)} into "
                          f"{groups} equal groups: set norm.groups to a divisor of {bn.num_features}")
    return copy_affine(bn, nn.GroupNorm(groups, bn.num_features, eps=bn.eps, affine=bn.affine))


@register("gn")
class GroupNormOption(Normalization):
    """GroupNorm (Wu & He, ECCV 2018) with ``groups`` groups of channels (32 in the paper)."""

    def __init__(self, groups: Annotated[int, AtLeast(1)] = 32):
        self.groups = groups

    def replace(self, bn: _BatchNorm) -> nn.Module:
        return group_norm(bn, self.groups, self)


class InstanceNorm(nn.GroupNorm):
    """InstanceNorm with a per-channel affine and no running statistics (GroupNorm with one group per channel), which
    refuses maps of a single value, where it would silently output beta."""

    def __init__(self, num_channels: int, eps: float = 1e-5, affine: bool = True):
        super().__init__(num_channels, num_channels, eps=eps, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 3 or x[0, 0].numel() < 2:
            raise BatchTooSmallError(
                f"InstanceNorm at {layer_label(self)} got input of shape {tuple(x.shape)}: instance statistics need "
                f"at least 2 values per channel; use larger images (data.image_size) or keep that layer as "
                f"BatchNorm (norm.exclude=[{layer_label(self)}])"
            )
        return super().forward(x)


@register("in")
class InstanceNormOption(Normalization):
    """InstanceNorm (Ulyanov et al., 2016): statistics over (H, W) of each sample and channel. Undefined on the
    (N, C) features of BatchNorm1d layers, which ``conf/norm/in.yaml`` therefore keeps as BatchNorm."""

    def replace(self, bn: _BatchNorm) -> nn.Module:
        if isinstance(bn, nn.BatchNorm1d):
            raise self.unsupported(bn, "instance statistics of 1-D features are a single value")
        return copy_affine(bn, InstanceNorm(bn.num_features, eps=bn.eps, affine=bn.affine))


@register("ln")
class LayerNormOption(Normalization):
    """LayerNorm in the CNN sense (Ba et al., 2016): statistics over (C, H, W) of each sample, per-channel affine."""

    def replace(self, bn: _BatchNorm) -> nn.Module:
        return group_norm(bn, 1, self)
