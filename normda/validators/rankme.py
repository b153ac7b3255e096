"""RankMe (Garrido et al., ICML 2023): the effective rank of the target feature matrix, ``exp`` of the entropy of its
normalised singular values."""
from __future__ import annotations

import torch

from normda.validators.base import Outputs, register


@register("rankme", "max", ("target",))
def rankme(target: Outputs, eps: float = 1e-7) -> float:
    """``exp(-sum_k p_k log p_k)`` with ``p_k = sigma_k / sum_j sigma_j + eps`` (the paper's eps): r for a matrix of r
    equal non-zero singular values."""
    singular = torch.linalg.svdvals(target.features.double())
    p = singular / singular.sum() + eps
    return torch.exp(-(p * torch.log(p)).sum()).item()
