"""Soft neighbourhood density (Saito et al., ICCV 2021): how densely each target sample's neighbours gather, the mean
entropy of a sharp softmax over its similarities to the other target samples."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from normda.validators.base import Outputs, register

#: the paper's temperature
TEMPERATURE = 0.05


@register("snd", "max", ("target",))
def soft_neighbourhood_density(target: Outputs, temperature: float = TEMPERATURE) -> float:
    """``mean_i H(softmax_j(s_ij / T))`` over ``j != i``, with ``s_ij`` the cosine similarity of the L2-normalised
    target features."""
    features = F.normalize(target.features.float(), dim=1)
    n = features.shape[0]
    similarities = (features @ features.T)[~torch.eye(n, dtype=torch.bool)].view(n, n - 1)
    neighbours = F.softmax(similarities / temperature, dim=1)
    return -(neighbours * torch.log(neighbours.clamp_min(1e-12))).sum(dim=1).mean().item()
