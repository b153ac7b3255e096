"""Label-free validators (``protocols.md`` sections 8-9): scores of a checkpoint computed without target labels, each
in its own file, registered by name, with the direction in which it is better and the sets it reads.

A validator reads one :class:`Outputs` per evaluation set (``source_train``, ``source_val``, ``target``), the features
and logits of one forward pass over that set, and returns one number.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch

from normda.registry import Registry

Direction = Literal["max", "min"]
SetName = Literal["source_train", "source_val", "target"]


@dataclass(frozen=True, eq=False)
class Outputs:
    """One evaluation set's features (N, D) and logits (N, C), and its labels where the validator may read them
    (the labelled source sets only). Hashed and compared by identity: what two validators derive from one set (its
    k-means clusters) is computed once."""

    features: torch.Tensor
    logits: torch.Tensor
    labels: torch.Tensor | None = None

    @property
    def probabilities(self) -> torch.Tensor:
        return self.logits.float().softmax(dim=1)


@dataclass(frozen=True)
class Validator:
    """A validator: its score function over the sets it ``needs``, and whether a higher (``max``) or lower (``min``)
    score is better."""

    name: str
    score: Callable[..., float]
    direction: Direction
    needs: tuple[SetName, ...]

    def __call__(self, sets: dict[str, Outputs]) -> float:
        return float(self.score(*(sets[name] for name in self.needs)))

    def better(self, a: float, b: float) -> bool:
        return a > b if self.direction == "max" else a < b


VALIDATORS: Registry[Validator] = Registry("validator", "normda.validators", "trainer.validators")


def register(name: str, direction: Direction, needs: tuple[SetName, ...]):
    """Register a score function as validator ``name``."""

    def decorator(score: Callable[..., float]) -> Callable[..., float]:
        VALIDATORS.register(name)(Validator(name, score, direction, needs))
        return score

    return decorator


def mean_entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """``mean_i H(p_i)`` with ``H(p) = -sum_c p_c log p_c`` (0 log 0 = 0)."""
    return -(probabilities * torch.log(probabilities.clamp_min(1e-12))).sum(dim=1).mean()
