"""DAFT's batch-normalization conversion (Ha, Jeong & Lee, AAAI 2024, Eq. 3-5 and Algorithm 1).

Before training, with the network in eval mode (every BatchNorm normalising with its pretrained statistics
``M_s, Sigma_s``, so the pass computes the original function), one pass over the chosen training data records, for
every BatchNorm and every batch, the mean and the unbiased variance of the layer's input. Their averages over the
batches (equal weights) are the new statistics ``M_t, Sigma_t`` (Algorithm 1: ``M_t = E[mu]``, ``Sigma_t = m/(m-1)
E[sigma^2]``; averaging each batch's unbiased variance is the same when the batches have equal size, and counts a
last, smaller batch correctly). Then, with the old gamma (Eq. 5):

    gamma_t = gamma_s sqrt(Sigma_t + eps) / sqrt(Sigma_s + eps)
    beta_t  = beta_s + gamma_s (M_t - M_s) / sqrt(Sigma_s + eps)

and the running statistics become ``M_t, Sigma_t``. The eval-mode function of the network is unchanged by this, for
every input; what changes is where fine-tuning starts: train-mode BatchNorm now matches the data's statistics.

In UDA the training data is the labelled source; ``stats_from`` also allows the target or both (equal weight per
batch). The layers stay ``nn.BatchNorm``; the rest of DAFT (a zero-initialised linear head on the features, separate learning
rates, cosine annealing) is the training recipe ``protocol=daft``. Algorithm 1 converts the layers of the pre-trained model: a BatchNorm whose statistics were never
trained (running mean 0, variance 1; the new bottleneck, or a whole network trained from scratch) has no pretrained
statistics to convert from and is left as it is; if no layer has any, a warning says that DAFT did nothing.
"""
from __future__ import annotations

import logging
from typing import Literal, Mapping

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader

from normda.normalization.base import Normalization, has_trained_statistics, register

SOURCES = {"source": ("source",), "target": ("target",), "both": ("source", "target")}

log = logging.getLogger(__name__)


class BatchAverage:
    """Equal-weight averages over batches of per-channel means and unbiased variances."""

    def __init__(self):
        self.batches = 0
        self.mean = 0.0
        self.var = 0.0

    def add(self, x: torch.Tensor) -> None:
        dims = (0, *range(2, x.dim()))
        var, mean = torch.var_mean(x.double(), dim=dims, correction=1)
        self.batches += 1
        self.mean = self.mean + mean
        self.var = self.var + var


@torch.no_grad()
def batchnorm_statistics(model: nn.Module, loaders: list[DataLoader], device: torch.device) -> dict:
    """For every BatchNorm of ``model``, the averages over the batches of ``loaders`` of its input's mean and
    unbiased variance, the model running in eval mode."""
    batchnorms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    averages = {bn: BatchAverage() for bn in batchnorms}
    hooks = [bn.register_forward_pre_hook(lambda bn, inputs: averages[bn].add(inputs[0])) for bn in batchnorms]
    was_training = model.training
    model.eval()
    try:
        for loader in loaders:
            for batch in loader:
                if batch[0].shape[0] > 1:
                    model(batch[0].to(device, non_blocking=True))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return {bn: (a.mean / a.batches, a.var / a.batches) for bn, a in averages.items() if a.batches}


@torch.no_grad()
def convert_batchnorm(bn: _BatchNorm, mean_t: torch.Tensor, var_t: torch.Tensor) -> None:
    """Eq. 5 for one layer (beta first, with the old gamma), then the new running statistics."""
    mean_s, var_s, gamma_s = bn.running_mean.double(), bn.running_var.double(), bn.weight.double()
    scale = torch.sqrt(var_s + bn.eps)
    bn.bias.copy_(bn.bias.double() + gamma_s * (mean_t - mean_s) / scale)
    bn.weight.copy_(gamma_s * torch.sqrt(var_t + bn.eps) / scale)
    bn.running_mean.copy_(mean_t)
    bn.running_var.copy_(var_t)


def has_pretrained_statistics(bn: _BatchNorm) -> bool:
    """Whether ``bn`` carries trained statistics and an affine for Eq. 5."""
    return bn.affine and has_trained_statistics(bn)


@register("daft")
class DAFTConversion(Normalization):
    """``norm=daft``: BatchNorm, converted by a statistics pass before training (with ``protocol=daft``, DAFT's
    fine-tuning recipe)."""

    def __init__(self, stats_from: Literal["source", "target", "both"] = "source"):
        self.stats_from = stats_from

    def before_training(self, model: nn.Module, loaders: Mapping[str, DataLoader], device: torch.device) -> None:
        statistics = batchnorm_statistics(model, [loaders[name] for name in SOURCES[self.stats_from]], device)
        pretrained = {bn: stats for bn, stats in statistics.items() if has_pretrained_statistics(bn)}
        if not statistics:
            log.warning("DAFT found no BatchNorm layer to convert (the chosen norm replaced them): use norm=bn")
        elif not pretrained:
            log.warning("DAFT found no BatchNorm with pretrained statistics and converted nothing: it presumes a "
                        "pretrained network (backbone.pretrained=true)")
        elif len(pretrained) < len(statistics):
            log.info("DAFT leaves %d newly initialised BatchNorm layers as they are",
                     len(statistics) - len(pretrained))
        for bn, (mean_t, var_t) in pretrained.items():
            convert_batchnorm(bn, mean_t, var_t)
