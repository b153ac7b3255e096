"""Domain-Specific Batch Normalization (Chang et al., CVPR 2019): one complete BatchNorm per domain.

Each domain has its own gamma/beta and running statistics (two ``nn.BatchNorm`` branches, ``source`` and ``target``,
both initialised from the pretrained BatchNorm). In training, the source part of the batch goes through the source
branch and the target part through the target branch; an empty part is skipped. Evaluation uses the target branch
(``norm.test_stats=source`` for the source one). The official code runs one forward per domain; splitting one
concatenated forward is the same computation, since BatchNorm is the only layer that mixes samples; here both parts
are normalised into one output by ``split_batch_norm``.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from normda.normalization.domain import DomainAwareNorm, DomainAwareOption, update_factor
from normda.normalization.base import batchnorm_dims, copy_affine, register
from normda.normalization.split_batchnorm import split_batch_norm
from normda.normalization.sync import distributed_world


def plain_batchnorm(bn: _BatchNorm) -> _BatchNorm:
    """A plain ``nn.BatchNorm{1,2,3}d`` (or ``nn.SyncBatchNorm``) with ``bn``'s settings, parameters and statistics
    (without the activation of a fused timm layer)."""
    cls = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d, None: nn.SyncBatchNorm}[batchnorm_dims(bn)]
    branch = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    branch.load_state_dict(bn.state_dict())
    return copy_affine(bn, branch)


class DomainSpecificBatchNorm(DomainAwareNorm, nn.Module):
    """Two BatchNorm branches behind one layer; ``source`` and ``target`` are copies of the BatchNorm it replaces."""

    def __init__(self, bn: _BatchNorm):
        super().__init__()
        self.source = plain_batchnorm(bn)
        self.target = plain_batchnorm(bn)
        self.num_features = bn.num_features
        self.train(bn.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return getattr(self, self.test_stats)(x)
        n_source, n_target = self.split_sizes(x.shape[0])
        # synchronised, every process counts the batch of both domains: the whole batch holds both, even where this
        # process's share holds one, and every process must update its running statistics alike
        synced = self.sync and distributed_world() > 1
        self.check_batch(x.shape, (n_source, n_target))
        momentum = {}
        for domain, size in (("source", n_source), ("target", n_target)):
            if size or synced:
                branch = getattr(self, domain)
                momentum[domain] = update_factor(branch.num_batches_tracked, branch.momentum)
        branches = {domain: getattr(self, domain) for domain in ("source", "target")}
        return split_batch_norm(x, n_source, {d: (bn.weight, bn.bias) for d, bn in branches.items()},
                                {d: (bn.running_mean, bn.running_var) for d, bn in branches.items()},
                                {d: momentum.get(d, 0.0) for d in branches}, branches["source"].eps, sync=self.sync)


@register("dsbn")
class DSBN(DomainAwareOption):
    """``norm=dsbn``: every BatchNorm becomes two, one per domain."""

    def replace(self, bn: _BatchNorm) -> DomainSpecificBatchNorm:
        return self.configure(DomainSpecificBatchNorm(bn))
