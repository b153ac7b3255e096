"""Mirrors of the run folder's numbers: nothing (``logger=none``) or Weights & Biases (``logger=wandb``).

The run folder is always written; a logger only copies the same numbers elsewhere.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from omegaconf import OmegaConf

from normda.errors import ConfigError
from normda.registry import check_settings, suggestion

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoggerConfig:
    """What every ``logger`` node has; ``logger=none`` (the run folder only) has nothing else."""

    name: str


@dataclass(frozen=True)
class WandbConfig(LoggerConfig):
    """``logger=wandb`` (``conf/logger/wandb.yaml``)."""

    mode: Literal["auto", "online", "offline", "disabled"]
    project: str
    entity: str | None
    group: str | None
    tags: list[str]


class NullLogger:
    def log(self, metrics: dict[str, float], step: int) -> None:
        pass

    def update_summary(self, summary: dict[str, Any]) -> None:
        pass

    def finish(self) -> None:
        pass


class WandbLogger:
    """One W&B run per training run, stored in the run folder. ``mode=auto`` logs online when this machine is logged
    in and offline otherwise (``wandb sync <run folder>/wandb/offline-run-*`` uploads it later); if an online start
    fails the run goes on offline. The W&B id is the run folder's config id, so a resumed run continues its W&B run."""

    def __init__(self, cfg: Any, run_dir: Path, run_id: str, name: str, config: dict):
        import wandb

        mode = cfg.mode
        if mode == "auto":
            mode = "online" if wandb.login(prompt=False, verify=False) else "offline"
        options = dict(project=cfg.project, entity=cfg.entity, group=cfg.group, tags=list(cfg.tags), name=name,
                       id=run_id, resume="allow", dir=str(run_dir), config=config, reinit="finish_previous")
        try:
            self.run = wandb.init(mode=mode, **options)
        except Exception as error:  # noqa: BLE001 - any failure to reach W&B must not stop training
            if mode != "online":
                raise
            log.warning("W&B could not start online (%s); logging offline instead", str(error).splitlines()[0])
            wandb.teardown()  # the failed online attempt still holds the run id
            self.run = wandb.init(mode="offline", **options)

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def update_summary(self, summary: dict[str, Any]) -> None:
        self.run.summary.update(summary)

    def finish(self) -> None:
        self.run.finish()


#: ``logger=<name>`` -> (its node's schema, the logger it builds)
LOGGERS = {"none": (LoggerConfig, lambda cfg, run_dir, run_id, name, config: NullLogger()),
           "wandb": (WandbConfig, WandbLogger)}


def check_logger(cfg: Any) -> None:
    if cfg.name not in LOGGERS:
        raise ConfigError(f"unknown logger={cfg.name}{suggestion(cfg.name, list(LOGGERS))}: choose one of "
                          f"{', '.join(LOGGERS)}")
    check_settings(LOGGERS[cfg.name][0], OmegaConf.to_container(cfg, resolve=True), "logger", cfg.name,
                   complete=True)


def build_logger(cfg: Any, run_dir: Path, run_id: str, name: str, config: dict) -> NullLogger | WandbLogger:
    """The ``logger`` node's logger (a node checked by :func:`check_logger`)."""
    return LOGGERS[cfg.name][1](cfg, run_dir, run_id, name, config)
