"""WeightAlign (Shi, Li, Liu & van Gemert, ICPR 2020), alone and combined with BN, GN, IN and LN.

WA reparametrises every convolution filter (Eq. 10): for filter i with fan-in n = C_in/groups k_h k_w,

    w_hat_i = gamma_i (w_i - E[w_i]) / sqrt(n/2 Var[w_i] + eps)

with a learnable gamma_i (init 1) and the biased variance over the filter, in training and evaluation alike and with
gradients through the mean and variance. Each filter then has mean 0 and variance 2 gamma_i^2 / n, so activations keep
their scale layer to layer without any sample statistics: WA does not depend on the batch, the domain or the mode.
The paper writes no eps; ``eps`` (1e-5) inside the square root only guards against a constant filter.

It applies to convolutions only, so the classifier and the other Linear layers are left alone (the paper excludes the
final classifier, whose output feeds no ReLU). The first convolution (the stem, which sees the image) is included
unless ``include_stem: false``; the paper initialises it like the others. ``wa`` alone replaces each BatchNorm by a
per-channel affine (ResNet convolutions have no bias); ``bn_wa``, ``gn_wa``, ``in_wa``, ``ln_wa`` keep or swap in the
activation normalization as ``bn``, ``gn``, ``in``, ``ln`` do. In a BatchNorm-pretrained network WA changes every
filter (its mean removed, its scale reset), so the pretrained function is not preserved.
"""
from __future__ import annotations

from typing import Annotated

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils import parametrize

from normda.normalization.base import Normalization, copy_affine, register
from normda.registry import AtLeast
from normda.normalization.standard import GroupNormOption, InstanceNormOption, LayerNormOption


class WeightAlignment(nn.Module):
    """The Eq. 10 parametrization of a convolution weight (registered with ``torch.nn.utils.parametrize``)."""

    def __init__(self, out_channels: int, eps: float = 1e-5):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(out_channels))
        self.eps = eps

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        filters = weight.flatten(1)
        fan_in = filters.shape[1]
        var, mean = torch.var_mean(filters, dim=1, correction=0, keepdim=True)
        aligned = (filters - mean) / torch.sqrt(fan_in / 2.0 * var + self.eps)
        return (self.gamma.view(-1, 1) * aligned).view_as(weight)


class ChannelAffine(nn.Module):
    """``gamma_c x + beta_c``: what stays of a BatchNorm when WA alone replaces the activation normalization."""

    def __init__(self, num_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * self.weight.view(shape) + self.bias.view(shape)


def align_convolutions(model: nn.Module, include_stem: bool = True, eps: float = 1e-5) -> int:
    """Register WeightAlignment on every convolution of ``model`` (but the first when ``include_stem`` is false) that
    does not have it already; return how many were aligned."""
    convolutions = [m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    aligned = 0
    for conv in convolutions[0 if include_stem else 1:]:
        if parametrize.is_parametrized(conv, "weight") and any(
                isinstance(step, WeightAlignment) for step in conv.parametrizations.weight):
            continue  # aligned by an earlier conversion: Eq. 10 once
        parametrize.register_parametrization(conv, "weight", WeightAlignment(conv.out_channels, eps).to(conv.weight))
        aligned += 1
    return aligned


class ChannelAffineOption(Normalization):
    """Each BatchNorm becomes its affine part alone."""

    def replace(self, bn: _BatchNorm) -> nn.Module:
        return copy_affine(bn, ChannelAffine(bn.num_features))


class WeightAlign(Normalization):
    """Base of the WA options: an instance of ``activation_class`` replaces each BatchNorm."""

    activation_class: type[Normalization]

    def __init__(self, include_stem: bool = True, eps: float = 1e-5):
        self.include_stem = include_stem
        self.eps = eps
        self.activation = self.activation_class()
        self.activation.name = self.name  # its error messages speak of this option

    def replace(self, bn: _BatchNorm) -> nn.Module:
        return self.activation.replace(bn)

    def prepare(self, model: nn.Module) -> None:
        align_convolutions(model, self.include_stem, self.eps)


@register("wa")
class WeightAlignOnly(WeightAlign):
    """WA with a per-channel affine in place of every BatchNorm (no activation normalization)."""

    activation_class = ChannelAffineOption


@register("bn_wa")
class WeightAlignBN(WeightAlign):
    """BN + WA: WA convolutions, BatchNorm kept."""

    activation_class = Normalization


@register("gn_wa")
class WeightAlignGN(WeightAlign):
    """GN + WA: WA convolutions, GroupNorm(``groups``) in place of BatchNorm."""

    activation_class = GroupNormOption

    def __init__(self, include_stem: bool = True, eps: float = 1e-5, groups: Annotated[int, AtLeast(1)] = 32):
        super().__init__(include_stem, eps)
        self.activation.groups = groups


@register("in_wa")
class WeightAlignIN(WeightAlign):
    """IN + WA: WA convolutions, InstanceNorm in place of BatchNorm."""

    activation_class = InstanceNormOption


@register("ln_wa")
class WeightAlignLN(WeightAlign):
    """LN + WA: WA convolutions, LayerNorm (CNN sense) in place of BatchNorm."""

    activation_class = LayerNormOption
