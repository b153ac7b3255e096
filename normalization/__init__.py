"""Normalization layers for domain adaptation, chosen by name, and the converter that swaps them into any model.

>>> import torchvision
>>> from normda import normalization
>>> model = normalization.convert(torchvision.models.resnet50(), "transnorm")

``base.py`` holds what an option is (:class:`Normalization`), the table of options (``NORMALIZATIONS``), ``register``
and ``build``; each other file is one family of layers and its ``norm=`` options (``transnorm.py``, ``dsbn.py``,
``autodial.py``, ``adabn.py``, ``daft.py``, ``bgn.py``, ``switchable.py``, ``weight_align.py``, ``standard.py`` for
BN/GN/IN/LN), beside ``convert.py`` (the swap), ``domain.py`` (where the source part of a batch ends, and which
domain's statistics evaluation uses), ``split_batchnorm.py`` and ``sync.py`` (per-domain batch statistics, in one
process and across processes).
"""
from normda.normalization.base import NORMALIZATIONS, Normalization, build, register
from normda.normalization.convert import NormAct, convert
from normda.normalization.domain import (
    DomainAwareNorm,
    domain_split,
    using_test_stats,
    set_test_stats,
)
from normda.normalization.transnorm import TransNorm1d, TransNorm2d, TransNorm3d, transferability_alpha

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
    "using_test_stats",
    "register",
    "set_test_stats",
    "transferability_alpha",
]
