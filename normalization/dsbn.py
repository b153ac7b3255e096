"""Domain-Specific Batch Normalization (Chang et al., CVPR 2019): one complete BatchNorm per domain.

Each domain has its own gamma/beta and running statistics (two ``nn.BatchNorm`` branches, ``source`` and ``target``,
both initialised from the pretrained BatchNorm). In training, the source part of the batch goes through the source
branch and the target part through the target branch; an empty part is skipped. Evaluation uses the target branch
(``norm.test_stats=source`` for the source one). The official code runs one forward per domain; splitting one
concatenated forward is the same computation, since BatchNorm is the only layer that mixes samples.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from normalization.domain import DomainAwareNorm, check_domain
from normalization.registry import Normalization, batchnorm_dims, copy_affine, layer_label, register
from normda.errors import BatchTooSmallError


def plain_batchnorm(bn: _BatchNorm) -> _BatchNorm:
    """A plain ``nn.BatchNorm{1,2,3}d`` with ``bn``'s settings, parameters and statistics (without the activation of
    a fused timm layer)."""
    cls = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[batchnorm_dims(bn)]
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return getattr(self, self.eval_domain)(x)
        n_source, _ = self.split_sizes(x.shape[0])
        outputs = []
        for domain, part in (("source", x[:n_source]), ("target", x[n_source:])):
            if part.shape[0] == 0:
                continue
            if part.numel() // self.num_features < 2:
                raise BatchTooSmallError(
                    f"DomainSpecificBatchNorm at {layer_label(self)} got 1 value per channel in the {domain} part of "
                    f"the batch (shape {tuple(part.shape)}): give each domain at least 2 samples (data.batch_size)"
                )
            outputs.append(getattr(self, domain)(part))
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=0)


@register("dsbn")
class DSBN(Normalization):
    """``norm=dsbn``: every BatchNorm becomes two, one per domain."""

    def __init__(self, test_stats: str = "target"):
        check_domain(test_stats, "norm.test_stats")
        self.test_stats = test_stats

    def replace(self, bn: _BatchNorm) -> DomainSpecificBatchNorm:
        layer = DomainSpecificBatchNorm(bn)
        layer.eval_domain = self.test_stats
        return layer
