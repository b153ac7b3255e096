"""Information maximisation (Gomes et al. 2010; SHOT's objective): confident and diverse target predictions,
``H(mean_i p_i) - mean_i H(p_i)``."""
from __future__ import annotations

from normda.validators.base import Outputs, mean_entropy, register


@register("im", "max", ("target",))
def information_maximisation(target: Outputs) -> float:
    """``H(p_bar) - mean_i H(p_i)``: 0 for uniform predictions and for one class everywhere, ``log C`` for one-hot
    predictions spread evenly over the C classes."""
    probabilities = target.probabilities
    return (mean_entropy(probabilities.mean(dim=0, keepdim=True)) - mean_entropy(probabilities)).item()
