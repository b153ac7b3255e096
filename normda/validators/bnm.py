"""Batch nuclear-norm maximisation (Cui et al., CVPR 2020), as a validator (Musgrave et al. 2022): the nuclear norm of
the target softmax matrix over the number of samples; high for confident and diverse predictions."""
from __future__ import annotations

import torch

from normda.validators.base import Outputs, register


@register("bnm", "max", ("target",))
def batch_nuclear_norm(target: Outputs) -> float:
    """``||P||_* / N`` for the (N, C) matrix ``P`` of target probabilities."""
    probabilities = target.probabilities
    return (torch.linalg.matrix_norm(probabilities, ord="nuc") / probabilities.shape[0]).item()
