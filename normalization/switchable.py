"""Switchable Normalization (Luo et al., ICLR 2019; "Do normalization layers in a deep ConvNet really need to be
distinct?"), as the official ``SwitchNorm2d``/``SwitchNorm1d``.

Each layer normalises with a weighted mix of the IN, LN and BN statistics, ``mu = sum_z w^mu_z mu_z`` and ``var =
sum_z w^var_z var_z``, where ``w = softmax(lambda)`` over two separate learnable logit vectors (means and variances),
ordered [IN, LN, BN] and initialised to ones (each ratio 1/3); then ``gamma (x - mu) / sqrt(var + eps) + beta``. The
means are mixed as in the paper's Eq. 1; the paper's Eq. 1 mixes standard deviations, ``sum_z w^sigma_z sigma_z``,
where the official code (and this layer) mixes the variances and takes the square root of the mixture.
The LN and BN statistics are derived from the IN ones: ``var_ln = mean_c(var_in + mu_in^2) - mu_ln^2`` and the same
over the batch for BN. Only the BN statistics have running averages, used in eval mode (initialised to 0 for a fresh
layer, copied from the BatchNorm it replaces); IN and LN statistics are always the sample's. The weight of a new batch
in the running averages is the official code's: 0.1 over maps (its ``SwitchNorm2d`` momentum 0.9) and 0.003 over
(N, C) features (its ``SwitchNorm1d`` momentum 0.997), the settings ``momentum`` and ``momentum_1d``.

``variance_mode: exact`` (default) uses the biased IN variance, which is the paper's ``sigma^2 = E[h^2] - E[h]^2`` and
makes LN and BN statistics exact; ``official`` uses the official code's unbiased IN variance, which adds
``mean(var_in) / (L - 1)`` to the LN and BN variances and is undefined on 1x1 maps. ``using_bn: false`` mixes IN and LN
only (for batches of one sample). For (N, C) features (SwitchNorm1d) the normalizers are LN and BN. The stored BN
running variance is the mixed-in BN variance itself (no m/(m-1) factor), as in the official code; it keeps the BN
moving average where the paper's fine-tuning re-estimates a batch average.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from normda.normalization.base import Normalization, copy_affine, layer_label, register
from normda.errors import BatchTooSmallError, ConfigError
from normda.registry import check_setting

VarianceMode = Literal["exact", "official"]
InitRatio = Literal["uniform", "bn_dominant"]


class SwitchNorm(nn.Module):
    """Switchable Normalization for (N, C, ...) input: IN, LN, BN over (N, C, L) maps, or LN and BN over (N, C)."""

    def __init__(self, num_features: int, one_d: bool = False, eps: float = 1e-5, momentum: float = 0.1,
                 using_bn: bool = True, variance_mode: VarianceMode = "exact", init_ratio: InitRatio = "uniform",
                 ratio_weight_decay: bool = True):
        super().__init__()
        check_setting("variance_mode", variance_mode, VarianceMode)
        check_setting("init_ratio", init_ratio, InitRatio)
        self.num_features = num_features
        self.one_d = one_d
        self.eps = eps
        self.momentum = momentum
        self.using_bn = using_bn
        self.variance_mode = variance_mode
        self.normalizers = (["ln"] if one_d else ["in", "ln"]) + (["bn"] if using_bn else [])
        logits = torch.ones(len(self.normalizers))
        if init_ratio == "bn_dominant" and using_bn:
            logits = torch.zeros(len(self.normalizers))
            logits[-1] = 8.0  # about 0.999 on BN: a start close to the BatchNorm it replaces
        self.mean_weight = nn.Parameter(logits.clone())
        self.var_weight = nn.Parameter(logits.clone())
        for ratio in (self.mean_weight, self.var_weight):
            ratio.no_weight_decay = not ratio_weight_decay
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        if using_bn:
            self.register_buffer("running_mean", torch.zeros(num_features))
            self.register_buffer("running_var", torch.zeros(num_features))

    def extra_repr(self) -> str:
        return f"{self.num_features}, normalizers={self.normalizers}, variance_mode={self.variance_mode}"

    def _unbiased(self) -> bool:
        return self.variance_mode == "official"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        if self.one_d and x.dim() != 2:
            raise ValueError(f"SwitchNorm1d expects (N, C) input, got {tuple(x.shape)}")
        if self.training and self.using_bn and n < 2:
            raise BatchTooSmallError(f"SwitchNorm at {layer_label(self)} got a batch of 1 in training, where its BN "
                                     f"branch needs 2 samples: raise data.batch_size or set norm.using_bn=false")
        if self.one_d:
            means, variances = self._statistics_1d(x)
            shape = (n, c)
        else:
            means, variances = self._statistics_maps(x.reshape(n, c, -1))
            shape = (n, c) + (1,) * (x.dim() - 2)
        mean_ratio = torch.softmax(self.mean_weight, dim=0)
        var_ratio = torch.softmax(self.var_weight, dim=0)
        mean = sum(w * m for w, m in zip(mean_ratio, means))
        var = sum(w * v for w, v in zip(var_ratio, variances))
        x_hat = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        affine_shape = (1, c) + (1,) * (x.dim() - 2)
        return x_hat * self.weight.view(affine_shape) + self.bias.view(affine_shape)

    def _statistics_maps(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """IN, LN (and BN) statistics of (N, C, L) maps, each broadcastable to (N, C)."""
        if x.shape[2] < 2 and self._unbiased():
            raise ConfigError(f"SwitchNorm at {layer_label(self)} got 1x1 maps, where the official unbiased IN "
                              f"variance is undefined: set norm.variance_mode=exact or use larger images")
        var_in, mean_in = torch.var_mean(x, dim=2, correction=1 if self._unbiased() else 0)
        second_moment = var_in + mean_in**2
        mean_ln = mean_in.mean(dim=1, keepdim=True)
        var_ln = second_moment.mean(dim=1, keepdim=True) - mean_ln**2
        means, variances = [mean_in, mean_ln], [var_in, var_ln]
        if self.using_bn:
            mean_bn, var_bn = self._batch_statistics(mean_in, second_moment)
            means.append(mean_bn)
            variances.append(var_bn)
        return means, variances

    def _statistics_1d(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        correction = 1 if self._unbiased() else 0
        var_ln, mean_ln = torch.var_mean(x, dim=1, keepdim=True, correction=correction)
        means, variances = [mean_ln], [var_ln]
        if self.using_bn:
            if self.training:
                var_bn, mean_bn = torch.var_mean(x, dim=0, keepdim=True, correction=correction)
                self._update(mean_bn.squeeze(0), var_bn.squeeze(0))
            else:
                mean_bn, var_bn = self.running_mean.view(1, -1), self.running_var.view(1, -1)
            means.append(mean_bn)
            variances.append(var_bn)
        return means, variances

    def _batch_statistics(self, mean_in: torch.Tensor, second_moment: torch.Tensor):
        if not self.training:
            return self.running_mean.view(1, -1), self.running_var.view(1, -1)
        mean_bn = mean_in.mean(dim=0, keepdim=True)
        var_bn = second_moment.mean(dim=0, keepdim=True) - mean_bn**2
        self._update(mean_bn.squeeze(0), var_bn.squeeze(0))
        return mean_bn, var_bn

    @torch.no_grad()
    def _update(self, mean: torch.Tensor, var: torch.Tensor) -> None:
        self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
        self.running_var.mul_(1 - self.momentum).add_(self.momentum * var)


@register("sn")
class Switchable(Normalization):
    """``norm=sn``: every BatchNorm becomes Switchable Normalization; gamma/beta and the running statistics (into the
    BN branch) carry over. The ratios start at 1/3 (``init_ratio: uniform``, the paper's), so the function changes;
    ``bn_dominant`` starts near the BatchNorm instead."""

    def __init__(self, using_bn: bool = True, variance_mode: VarianceMode = "exact", init_ratio: InitRatio = "uniform",
                 ratio_weight_decay: bool = True, momentum: float = 0.1, momentum_1d: float = 0.003):
        self.layer_options = dict(using_bn=using_bn, variance_mode=variance_mode, init_ratio=init_ratio,
                                  ratio_weight_decay=ratio_weight_decay)
        self.momentum = {False: momentum, True: momentum_1d}  # by whether the layer sees (N, C) features

    def replace(self, bn: _BatchNorm) -> SwitchNorm:
        one_d = isinstance(bn, nn.BatchNorm1d)
        layer = SwitchNorm(bn.num_features, one_d=one_d, eps=bn.eps, momentum=self.momentum[one_d],
                           **self.layer_options)
        copy_affine(bn, layer)
        if layer.using_bn and bn.track_running_stats:
            with torch.no_grad():
                layer.running_mean.copy_(bn.running_mean)
                layer.running_var.copy_(bn.running_var)
        return layer
