"""Batch Group Normalization (Zhou et al., arXiv 2012.02782).

The paper merges the channel, height and width dimensions of an (N, C, H, W) feature map into one, D = C H W, splits it
into G groups of S = D / G consecutive values, and normalises each group with the mean and biased variance over the
batch and the group (Eq. 8-9); gamma/beta stay per channel and the test uses moving averages, as BatchNorm. That is
BatchNorm applied to the (N, G, S) view, followed by a per-channel affine.

``mode: flat`` (the paper's) needs D divisible by G; when G does not divide C the groups cut through channels, so the
statistics depend on the spatial size, which must then stay the same between training and test. ``mode: channel``
takes G_l = min(G, C) groups of whole channels (C divisible by G_l), which do not depend on the image size; G = C is
BatchNorm. Swapped into a pretrained network, each group's running statistics pool those of the channels it covers.
The paper's per-task G for Office-31 (Table 7: 1 for A->D, 8 for A->W, 32 for D->W, 512 otherwise) is what
``conf/norm/bgn.yaml`` picks for those tasks. A BatchNorm1d over (N, C) features with fewer channels than G (the
256-wide bottleneck under G = 512) gets one group per channel, which is BatchNorm; every layer that G divides keeps G.
"""
from __future__ import annotations

import logging

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from normda.normalization.base import Normalization, copy_affine, layer_label, register
from normda.errors import BatchTooSmallError, ConfigError
from normda.registry import AtLeast, check_setting

Mode = Literal["flat", "channel"]

log = logging.getLogger(__name__)


def channel_groups(num_features: int, groups: int, layer: str) -> int:
    """G_l = min(G, C) groups of whole channels, which must divide C."""
    groups = min(groups, num_features)
    if num_features % groups:
        raise ConfigError(f"BGN in channel mode cannot split the {num_features} channels of {layer} into {groups} "
                          f"groups: set norm.groups to a divisor of {num_features}")
    return groups


class BatchGroupNorm(nn.Module):
    def __init__(self, num_features: int, groups: int, mode: Mode = "flat", eps: float = 1e-5,
                 momentum: float | None = 0.1, affine: bool = True):
        super().__init__()
        check_setting("mode", mode, Mode)
        if mode == "channel":
            groups = channel_groups(num_features, groups, "BGN")
        self.num_features = num_features
        self.groups = groups
        self.mode = mode
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.weight = nn.Parameter(torch.ones(num_features)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_features)) if affine else None
        self.register_buffer("running_mean", torch.zeros(groups))
        self.register_buffer("running_var", torch.ones(groups))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        self.trained_size: tuple[int, ...] | None = None  # spatial size the statistics belong to, when they depend on it

    def extra_repr(self) -> str:
        return f"{self.num_features}, groups={self.groups}, mode={self.mode}, eps={self.eps}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = x[0].numel()
        if values % self.groups:
            raise ConfigError(f"BGN at {layer_label(self)} cannot split its {values} values per sample "
                              f"{tuple(x.shape[1:])} into {self.groups} groups: set norm.groups to a divisor of "
                              f"{values}")
        self._check_spatial_size(x)
        if self.training and x.shape[0] * values // self.groups < 2:
            raise BatchTooSmallError(f"BGN at {layer_label(self)} got 1 value per group (shape {tuple(x.shape)}): "
                                     f"raise data.batch_size or lower norm.groups")
        factor = 0.0
        if self.training:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        grouped = x.reshape(x.shape[0], self.groups, -1)
        y = F.batch_norm(grouped, self.running_mean, self.running_var, None, None, self.training, factor, self.eps)
        y = y.view_as(x)
        if not self.affine:
            return y
        shape = (1, self.num_features) + (1,) * (x.dim() - 2)
        return y * self.weight.view(shape) + self.bias.view(shape)

    def get_extra_state(self) -> tuple[int, ...] | None:
        """The spatial size the statistics belong to travels with the state dict (and so with checkpoints)."""
        return self.trained_size

    def set_extra_state(self, state: tuple[int, ...] | None) -> None:
        self.trained_size = None if state is None else tuple(state)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, *args) -> None:
        """A state dict without the size (a BatchNorm's, or a checkpoint from before it was saved) loads too: the
        size is then learnt again from the next training batch."""
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, *args)
        if f"{prefix}_extra_state" in missing_keys:
            missing_keys.remove(f"{prefix}_extra_state")

    def _check_spatial_size(self, x: torch.Tensor) -> None:
        if self.groups <= self.num_features and self.num_features % self.groups == 0:
            return  # groups of whole channels: statistics do not depend on the spatial size
        size = tuple(x.shape[2:])
        if self.trained_size is None or self.training:
            self.trained_size = size
        elif size != self.trained_size:
            raise ConfigError(f"BGN at {layer_label(self)} has groups that cut through channels, so its statistics "
                              f"belong to {self.trained_size} maps, not {size}: evaluate at the training image size "
                              f"or use norm.mode=channel")

    @torch.no_grad()
    def pool_batchnorm_statistics(self, mean: torch.Tensor, var: torch.Tensor) -> None:
        """Group statistics from per-channel ones: group g covers channels [g C / G, (g + 1) C / G) (fractions where
        a group cuts a channel), mean = sum_c w_c mu_c, var = sum_c w_c (var_c + mu_c^2) - mean^2."""
        c, g = self.num_features, self.groups
        edges = torch.arange(g + 1, dtype=torch.float64, device=mean.device) * c / g
        channel = torch.arange(c, dtype=torch.float64, device=mean.device)
        overlap = (torch.minimum(edges[1:, None], channel[None] + 1) - torch.maximum(edges[:-1, None], channel[None]))
        weights = overlap.clamp(min=0) / (c / g)  # (G, C), rows sum to 1
        pooled_mean = weights @ mean.double()
        pooled_var = weights @ (var.double() + mean.double() ** 2) - pooled_mean**2
        self.running_mean.copy_(pooled_mean)
        self.running_var.copy_(pooled_var)


@register("bgn")
class BGN(Normalization):
    """``norm=bgn``: every BatchNorm becomes BGN with ``groups`` groups (``mode`` flat or channel)."""

    def __init__(self, groups: Annotated[int, AtLeast(1)] = 32, mode: Mode = "flat"):
        self.groups = groups
        self.mode = mode

    def replace(self, bn: _BatchNorm) -> BatchGroupNorm:
        groups = channel_groups(bn.num_features, self.groups, layer_label(bn)) if self.mode == "channel" else self.groups
        if isinstance(bn, nn.BatchNorm1d) and groups > bn.num_features:
            # (N, C) features hold one value per channel: more groups than channels would split single values, so
            # each channel is its own group, which is BatchNorm (Table 7's G = 512 against the 256-wide bottleneck)
            log.info("BGN at %s: %d groups for %d features; one group per feature (BatchNorm) there",
                     layer_label(bn), groups, bn.num_features)
            groups = bn.num_features
        layer = BatchGroupNorm(bn.num_features, groups, self.mode, eps=bn.eps, momentum=bn.momentum,
                               affine=bn.affine)
        copy_affine(bn, layer)
        if bn.track_running_stats:
            layer.pool_batchnorm_statistics(bn.running_mean, bn.running_var)
        return layer
