"""Optimizer and learning-rate schedule of a protocol, built with Hydra's ``instantiate``."""
from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


class InverseDecay:
    """The "inv" schedule of DANN, CDAN and TLlib: ``lr_i = lr_0 (1 + gamma i)^(-power)``, stepped every iteration."""

    def __init__(self, gamma: float = 0.001, power: float = 0.75):
        self.gamma = gamma
        self.power = power

    def __call__(self, step: int) -> float:
        return (1.0 + self.gamma * step) ** (-self.power)


def split_weight_decay(group: dict) -> list[dict]:
    """Move the parameters marked ``no_weight_decay`` (AutoDIAL's alpha, for one) into a group of their own without
    weight decay."""
    exempt = [p for p in group["params"] if getattr(p, "no_weight_decay", False)]
    decayed = [p for p in group["params"] if not getattr(p, "no_weight_decay", False)]
    return [g for g in ({**group, "params": decayed}, {**group, "params": exempt, "weight_decay": 0.0}) if g["params"]]


def build_optimizer(param_groups: list[dict], cfg: Any) -> tuple[Optimizer, LambdaLR]:
    """The ``cfg.optimizer`` factory (a ``_partial_`` node) over ``param_groups``, each at ``lr * lr_mult``, and a
    ``LambdaLR`` applying ``cfg.lr_schedule`` to every group's initial rate."""
    factory = instantiate(cfg.optimizer)
    base_lr = cfg.optimizer.lr
    groups = [{**split, "lr": base_lr * split["lr_mult"]} for group in param_groups for split in
              split_weight_decay(group)]
    optimizer = factory(groups)
    return optimizer, LambdaLR(optimizer, instantiate(cfg.lr_schedule))
