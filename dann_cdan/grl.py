"""Gradient reversal (Ganin & Lempitsky, ICML 2015) and its warm-start coefficient schedule."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


class _GradientReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, coefficient: float) -> torch.Tensor:
        ctx.coefficient = coefficient
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return -ctx.coefficient * grad_output, None


def grad_reverse(x: torch.Tensor, coefficient: float) -> torch.Tensor:
    """Identity in the forward pass; multiplies the gradient by ``-coefficient`` in the backward pass."""
    return _GradientReverse.apply(x, coefficient)


@dataclass(frozen=True)
class WarmStartSchedule:
    """``lambda(i) = 2 (hi - lo) / (1 + exp(-alpha i / max_iters)) - (hi - lo) + lo``.

    It rises from ``lo`` at iteration 0 towards ``hi``. DANN's paper uses ``alpha = 10`` over the whole run; TLlib
    writes the same curve as ``alpha = 1, max_iters = 1000`` (``lambda(1000) = 0.462``); the official TransNorm code
    uses ``alpha = 10, max_iters = 5000``.
    """

    alpha: float = 1.0
    lo: float = 0.0
    hi: float = 1.0
    max_iters: int = 1000

    def __call__(self, step: int) -> float:
        span = self.hi - self.lo
        return 2.0 * span / (1.0 + math.exp(-self.alpha * step / self.max_iters)) - span + self.lo
