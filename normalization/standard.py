"""BatchNorm, the baseline: one set of statistics over the concatenated ``[source; target]`` batch."""
from __future__ import annotations

from torch.nn.modules.batchnorm import _BatchNorm

from normalization.registry import register


@register("bn")
def keep_batchnorm(bn: _BatchNorm) -> _BatchNorm:
    """``norm=bn`` keeps every BatchNorm as it is (shared statistics over both domains)."""
    return bn
