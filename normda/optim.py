"""Optimizer and learning-rate schedule of a protocol, built with Hydra's ``instantiate``."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from normda.errors import ConfigError
from normda.registry import AtLeast, check_setting, check_settings, node_settings, suggestion


class InverseDecay:
    """The "inv" schedule of DANN, CDAN and TLlib: ``lr_i = lr_0 (1 + gamma i)^(-power)``, stepped every iteration."""

    def __init__(self, gamma: float = 0.001, power: float = 0.75):
        self.gamma = gamma
        self.power = power

    def __call__(self, step: int) -> float:
        return (1.0 + self.gamma * step) ** (-self.power)


class Cosine:
    """Cosine annealing over ``total`` iterations (DAFT's schedule): ``lr_i = lr_0 (1 + cos(pi i / total)) / 2``."""

    def __init__(self, total: int):
        self.total = max(int(total), 1)

    def __call__(self, step: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(step, self.total) / self.total))


class MultiStep:
    """Steps at fractions of the run (the CDAN code's digits schedule: times 0.3 before epochs 3, 6 and 9 of 10, i.e.
    ``milestones`` 0.2, 0.5, 0.8): ``lr_i = lr_0 factor^k``, with ``k`` the milestones ``round(fraction x total)``
    that iteration ``i`` has reached."""

    def __init__(self, milestones: list[float], factor: float, total: int):
        self.steps = sorted(round(fraction * max(int(total), 1)) for fraction in milestones)
        self.factor = factor

    def __call__(self, step: int) -> float:
        return self.factor ** sum(step >= milestone for milestone in self.steps)


def lr_schedule(kind: Literal["inverse_decay", "cosine", "multistep"] = "inverse_decay", gamma: float = 0.001,
                power: float = 0.75, milestones: list[Annotated[float, AtLeast(0)]] = (),
                factor: Annotated[float, AtLeast(0)] = 0.1, total: int = 1) -> InverseDecay | Cosine | MultiStep:
    """The learning-rate factor of iteration i: ``kind`` ``inverse_decay`` (``gamma``, ``power``), ``cosine`` or
    ``multistep`` (``factor`` at each of ``milestones``, fractions of the run), over ``total`` iterations: the run's
    length, which ``build_optimizer`` passes. One factory, so that a config can switch the kind without leftover
    keys."""
    if kind == "inverse_decay":
        return InverseDecay(gamma, power)
    return Cosine(total) if kind == "cosine" else MultiStep(list(milestones), factor, total)


def split_weight_decay(group: dict) -> list[dict]:
    """Move the parameters marked ``no_weight_decay`` (AutoDIAL's alpha, for one) into a group of their own without
    weight decay."""
    exempt = [p for p in group["params"] if getattr(p, "no_weight_decay", False)]
    decayed = [p for p in group["params"] if not getattr(p, "no_weight_decay", False)]
    no_decay = {**group, "params": exempt, "weight_decay": 0.0, "name": f"{group['name']}/no_decay"}
    return [g for g in ({**group, "params": decayed}, no_decay) if g["params"]]


@dataclass(frozen=True)
class OptimConfig:
    """The ``optim`` node: the optimizer (a ``_partial_`` node of a ``torch.optim`` class), the schedule, each part's
    multiple of the base rate, and DAFT's head rate (``protocol=daft``)."""

    optimizer: dict[str, Any]
    lr_schedule: dict[str, Any]
    lr_mult: dict[str, Any]  # part -> multiple (each checked below, by its own name)
    head_lr: Annotated[float, AtLeast(0)] | None = None
    unscheduled: list[str] = ()  # parts whose rate stays at its start (the CDAN digits code's discriminator)


#: the parts of a run whose learning rate is a multiple of the base one (``optim.lr_mult``)
PARTS = ("backbone", "bottleneck", "head", "method")


def check_optim(cfg: Any) -> None:
    """The ``optim`` node's schema: an optimizer class of ``torch.optim`` with settings of its constructor, and this
    module's schedule with its settings; nothing else is reachable from a config value. The base learning rate is a
    positive number, each part's multiple of it (``lr_mult``: :data:`PARTS`) at least 0."""
    check_settings(OptimConfig, OmegaConf.to_container(cfg, resolve=True), "optim", complete=True)
    target = str(cfg.optimizer.get("_target_"))
    module, _, name = target.rpartition(".")
    optimizer_class = getattr(torch.optim, name, None) if module == "torch.optim" else None
    if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, Optimizer)):
        raise ConfigError(f"optim.optimizer._target_={target} is not an optimizer of torch.optim: name one, e.g. "
                          f"torch.optim.SGD or torch.optim.AdamW")
    if str(cfg.lr_schedule.get("_target_")) != f"{__name__}.lr_schedule":
        raise ConfigError(f"optim.lr_schedule._target_={cfg.lr_schedule.get('_target_')} is not "
                          f"{__name__}.lr_schedule: choose the schedule with optim.lr_schedule.kind")
    check_settings(optimizer_class, node_settings(cfg.optimizer), "optim.optimizer", name, fixed=("params",))
    check_settings(lr_schedule, node_settings(cfg.lr_schedule), "optim.lr_schedule")
    base_lr = cfg.optimizer.lr
    if isinstance(base_lr, bool) or not isinstance(base_lr, (int, float)) or not base_lr > 0:
        raise ConfigError(f"optim.optimizer.lr={base_lr}: give a positive learning rate, e.g. "
                          f"optim.optimizer.lr=0.001")
    for part, multiple in cfg.lr_mult.items():  # DAFT's head: optim.head_lr / optim.optimizer.lr
        if part not in PARTS:
            raise ConfigError(f"optim.lr_mult has no part {part}{suggestion(part, list(PARTS))}: its parts are "
                              f"{', '.join(PARTS)}")
        check_setting(f"optim.lr_mult.{part}", multiple, Annotated[float, AtLeast(0)])
    for part in cfg.get("unscheduled") or ():
        if part not in PARTS:
            raise ConfigError(f"optim.unscheduled names no part {part}{suggestion(part, list(PARTS))}: its parts "
                              f"are {', '.join(PARTS)}")


def build_optimizer(param_groups: list[dict], cfg: Any, iterations: int) -> tuple[Optimizer, LambdaLR]:
    """The ``cfg.optimizer`` factory (a ``_partial_`` node) over ``param_groups`` (each with a ``name``, a part of
    :data:`PARTS`, and an ``lr_mult``), each at ``lr * lr_mult``, and a ``LambdaLR`` applying ``cfg.lr_schedule`` to
    every group's initial rate but those of the parts in ``cfg.unscheduled``; the schedule spans the run's
    ``iterations`` (a node checked by :func:`check_optim`)."""
    factory = instantiate(cfg.optimizer)
    base_lr = cfg.optimizer.lr
    groups = [{**split, "lr": base_lr * split["lr_mult"]} for group in param_groups for split in
              split_weight_decay(group)]
    optimizer = factory(groups)
    schedule = instantiate(cfg.lr_schedule, total=iterations)
    unscheduled = set(cfg.get("unscheduled") or ())
    return optimizer, LambdaLR(optimizer, [(lambda step: 1.0) if group["name"].split("/")[0] in unscheduled
                                           else schedule for group in optimizer.param_groups])
