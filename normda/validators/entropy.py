"""Entropy (Morerio et al. 2018; Musgrave et al. 2022): minus the mean entropy of the target predictions; confident
predictions score higher."""
from __future__ import annotations

from normda.validators.base import Outputs, mean_entropy, register


@register("entropy", "max", ("target",))
def entropy(target: Outputs) -> float:
    """``-mean_i H(p_i)`` over the target set."""
    return -mean_entropy(target.probabilities).item()
