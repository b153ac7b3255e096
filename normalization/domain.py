"""Where the source part of a batch ends, and which domain's statistics evaluation uses.

A training step runs one forward pass over the concatenated batch ``[x_source; x_target]``. Domain-aware layers
(TransNorm, and later DSBN and AutoDIAL) need the split point; the trainer states it with :func:`domain_split`. Without
it, a layer follows the official TransNorm rule: the first ``N // 2`` samples are source, the rest target. In eval mode
the layers normalise with the statistics of :func:`evaluation_domain` (target by default).

Layers never import the trainer: the trainer sets two plain attributes on every :class:`DomainAwareNorm` it finds.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from normda.errors import ConfigError

DOMAINS = ("source", "target")


def check_domain(domain: str, key: str) -> None:
    if domain not in DOMAINS:
        raise ConfigError(f"{key}={domain!r} is not a domain: choose source or target")


def check_sync(sync: object) -> bool:
    """``norm.sync`` must be true or false."""
    if not isinstance(sync, bool):
        raise ConfigError(f"norm.sync={sync!r} is not a boolean: set norm.sync=true or norm.sync=false")
    return sync


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


class DomainAwareNorm:
    """Mixin for normalization layers that keep separate source and target statistics."""

    #: ``(n_source, n_target)`` of the current batch, or None for the official first-half rule.
    domain_split: tuple[int, int] | None = None
    #: the statistics used in eval mode: ``"target"`` (default) or ``"source"``.
    eval_domain: str = "target"
    #: ``norm.sync``: in a distributed job, each domain's batch statistics over all processes (normalization/sync.py).
    sync: bool = False

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


def set_evaluation_domain(model: nn.Module, domain: str) -> None:
    """Make every domain-aware layer of ``model`` evaluate with ``domain``'s statistics from now on."""
    check_domain(domain, "evaluation domain")
    for layer in domain_aware_layers(model):
        layer.eval_domain = domain


@contextmanager
def evaluation_domain(model: nn.Module, domain: str) -> Iterator[None]:
    """Within the block, domain-aware layers of ``model`` evaluate with ``domain``'s statistics."""
    layers = domain_aware_layers(model)
    previous = [layer.eval_domain for layer in layers]
    set_evaluation_domain(model, domain)
    try:
        yield
    finally:
        for layer, value in zip(layers, previous):
            layer.eval_domain = value
