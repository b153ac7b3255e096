"""Where the source part of a batch ends, and which domain's statistics evaluation uses.

A training step runs one forward pass over the concatenated batch ``[x_source; x_target]``. Domain-aware layers
(TransNorm, DSBN and AutoDIAL) need the split point; the trainer states it with :func:`domain_split`. Without it, a
layer follows the official TransNorm rule: the first ``N // 2`` samples are source, the rest target.

In eval mode the layers normalise with one domain's statistics. Which one is decided in one place,
:meth:`DomainAwareOption.choose_test_stats`, from ``norm.test_stats``: ``target`` or ``source``, or ``auto``
(the default): the target's when training shows the layers target batches, the source's when it never does (source
only), since the target statistics would then be the untouched pretrained ones. :func:`using_test_stats` switches
them for one block (DEV evaluates held-out source data with source statistics).

Layers never import the trainer: the trainer sets two plain attributes on every :class:`DomainAwareNorm` it finds.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Literal

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from normda.errors import BatchTooSmallError
from normda.normalization.base import Normalization, layer_label

DOMAINS = ("source", "target")
Domain = Literal["source", "target"]
TestStats = Literal["auto", "target", "source"]


def copy_running_stats(bn: _BatchNorm, layer: nn.Module, domains: tuple[str, ...] = DOMAINS) -> None:
    """Copy a BatchNorm's running mean/var into ``layer.running_mean_<domain>``/``running_var_<domain>`` for every
    domain (pretrained statistics start both domains), and its batch counter."""
    if not bn.track_running_stats:
        return
    with torch.no_grad():
        for domain in domains:
            getattr(layer, f"running_mean_{domain}").copy_(bn.running_mean)
            getattr(layer, f"running_var_{domain}").copy_(bn.running_var)
        layer.num_batches_tracked.copy_(bn.num_batches_tracked)


def update_factor(num_batches_tracked: torch.Tensor | None, momentum: float | None) -> float:
    """Count one more batch and return its weight in the running averages, as ``nn.BatchNorm`` does: ``momentum``, or
    ``1 / batches`` for a cumulative average (``momentum=None``); 0 where no statistics are tracked (``None``)."""
    if num_batches_tracked is None:
        return 0.0
    num_batches_tracked.add_(1)
    return 1.0 / float(num_batches_tracked) if momentum is None else momentum


class DomainAwareNorm:
    """Mixin for normalization layers that keep separate source and target statistics: where the batch splits, which
    statistics evaluation uses, the per-domain running buffers and the check that each domain's part can be
    normalised."""

    #: ``(n_source, n_target)`` of the current batch, or None for the official first-half rule.
    domain_split: tuple[int, int] | None = None
    #: the statistics used in eval mode: ``"target"`` (default) or ``"source"``.
    test_stats: str = "target"
    #: ``norm.sync``: in a distributed job, each domain's batch statistics over all processes (normalization/sync.py).
    sync: bool = False

    def register_domain_statistics(self, num_features: int, track_running_stats: bool, **extra: float) -> None:
        """``running_mean_<domain>`` (0) and ``running_var_<domain>`` (1) for each domain, any ``extra`` per-domain
        scalar (``running_<name>_<domain>``, AutoDIAL's Caffe scale), and ``num_batches_tracked``; all None for a
        layer that keeps no running statistics."""
        for domain in DOMAINS:
            kept = {"mean": torch.zeros(num_features), "var": torch.ones(num_features),
                    **{name: torch.tensor(value) for name, value in extra.items()}}
            for name, value in kept.items():
                self.register_buffer(f"running_{name}_{domain}", value if track_running_stats else None)
        self.register_buffer("num_batches_tracked",
                             torch.tensor(0, dtype=torch.long) if track_running_stats else None)

    def running_stats(self, domain: str) -> tuple[torch.Tensor, torch.Tensor]:
        return getattr(self, f"running_mean_{domain}"), getattr(self, f"running_var_{domain}")

    def check_batch(self, shape: torch.Size, sizes: tuple[int, int]) -> None:
        """Raise :class:`BatchTooSmallError` where a domain's part of a batch of ``shape`` holds one value per channel
        (a variance needs two)."""
        for domain, size in zip(DOMAINS, sizes):
            values = size * shape[2:].numel()
            if size and values < 2:
                raise BatchTooSmallError(
                    f"{self.layer_description()} at {layer_label(self)} got {values} value per channel in the "
                    f"{domain} part of the batch ({size} of {tuple(shape)}): give each domain at least 2 samples "
                    f"(raise data.batch_size)")

    def layer_description(self) -> str:
        return type(self).__name__

    def split_sizes(self, batch_size: int) -> tuple[int, int]:
        """Return ``(n_source, n_target)`` for a batch of ``batch_size`` samples."""
        if self.domain_split is None:
            n_source = batch_size // 2
            return n_source, batch_size - n_source
        n_source, n_target = self.domain_split
        if n_source + n_target != batch_size:
            raise ValueError(
                f"{type(self).__name__}: domain split {n_source}+{n_target} does not match the batch of {batch_size}"
            )
        return n_source, n_target


def domain_aware_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, DomainAwareNorm)]


@contextmanager
def domain_split(model: nn.Module, n_source: int, n_target: int) -> Iterator[None]:
    """Within the block, batches given to ``model`` hold ``n_source`` source samples followed by ``n_target`` target.

    Either count may be 0 (a single-domain batch).
    """
    if n_source < 0 or n_target < 0:
        raise ValueError(f"domain split sizes must be non-negative, got {n_source} and {n_target}")
    layers = domain_aware_layers(model)
    previous = [layer.domain_split for layer in layers]
    for layer in layers:
        layer.domain_split = (n_source, n_target)
    try:
        yield
    finally:
        for layer, split in zip(layers, previous):
            layer.domain_split = split


def set_test_stats(model: nn.Module, domain: Domain) -> None:
    """Make every domain-aware layer of ``model`` evaluate with ``domain``'s statistics from now on."""
    if domain not in DOMAINS:
        raise ValueError(f"{domain!r} is not a domain: source or target")
    for layer in domain_aware_layers(model):
        layer.test_stats = domain


@contextmanager
def using_test_stats(model: nn.Module, domain: str) -> Iterator[None]:
    """Within the block, domain-aware layers of ``model`` evaluate with ``domain``'s statistics."""
    layers = domain_aware_layers(model)
    previous = [layer.test_stats for layer in layers]
    set_test_stats(model, domain)
    try:
        yield
    finally:
        for layer, value in zip(layers, previous):
            layer.test_stats = value


class DomainAwareOption(Normalization):
    """Base of the ``norm=`` options whose layers keep per-domain statistics (``transnorm``, ``dsbn``, ``autodial``):
    ``test_stats`` (which statistics evaluation uses) and ``sync`` (per-domain statistics over all processes of a
    ``torchrun`` job, ``normalization/sync.py``)."""

    def __init__(self, test_stats: TestStats = "auto", sync: bool = False):
        self.test_stats = test_stats
        self.sync = sync

    def configure(self, layer: DomainAwareNorm) -> DomainAwareNorm:
        """Give a new layer this option's settings (``auto`` evaluates with the target until told otherwise)."""
        layer.test_stats = "target" if self.test_stats == "auto" else self.test_stats
        layer.sync = self.sync
        return layer

    def choose_test_stats(self, model: nn.Module, trains_on_target: bool) -> None:
        if self.test_stats == "auto":
            set_test_stats(model, "target" if trains_on_target else "source")
