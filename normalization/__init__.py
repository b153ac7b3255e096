"""Normalization layers for domain adaptation, chosen by name, and the converter that swaps them into any model.

>>> import torchvision, normalization
>>> model = normalization.convert(torchvision.models.resnet50(), "transnorm")
"""
from normalization.convert import NormAct, build, convert
from normalization.domain import (
    DomainAwareNorm,
    domain_split,
    evaluation_domain,
    set_evaluation_domain,
)
from normalization.registry import NORMALIZATIONS, Normalization, register
from normalization.transnorm import TransNorm1d, TransNorm2d, TransNorm3d, transferability_alpha

__all__ = [
    "NORMALIZATIONS",
    "DomainAwareNorm",
    "NormAct",
    "Normalization",
    "TransNorm1d",
    "TransNorm2d",
    "TransNorm3d",
    "build",
    "convert",
    "domain_split",
    "evaluation_domain",
    "register",
    "set_evaluation_domain",
    "transferability_alpha",
]
