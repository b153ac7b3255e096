"""The rules that tie one setting to another, stated once and checked with the settings' types before a run starts
(:func:`normda.experiment.check_config`). A setting the command gave explicitly is either honoured or refused here in
one line; no run silently ignores one, and no run records a number it does not measure.

Each rule reads the composed, unresolved config (a value set by interpolation is a default another key chose; a
literal value was set by the command, a preset or a protocol) and raises :class:`ConfigError` naming the keys and the
fix.
"""
from __future__ import annotations

from typing import Callable

from omegaconf import DictConfig, OmegaConf

from normda.errors import ConfigError


def length_in_one_unit(cfg: DictConfig) -> None:
    """With ``trainer.epochs`` set (DAFT's protocol), the run's length and evaluation interval are whole epochs
    (``trainer.training_length``): an ``iterations`` or ``eval_every`` given as well would be ignored, so it is
    refused."""
    if cfg.trainer.epochs is None:
        return
    for key in ("iterations", "eval_every"):
        if not OmegaConf.is_interpolation(cfg.trainer, key):
            raise ConfigError(
                f"trainer.{key}={cfg.trainer[key]} cannot apply while trainer.epochs={cfg.trainer.epochs} sets the "
                f"run's length in epochs (protocol={cfg.protocol}): give trainer.epochs=<n> instead, or add "
                f"trainer.epochs=null to train by iterations")


def reported_metric_is_measured(cfg: DictConfig) -> None:
    """The accuracy a run is recorded to be reported with (``report.metric``) must be one the run measures: the 10-crop
    accuracy only exists with ``trainer.ten_crop=true``."""
    if cfg.report.metric == "target_accuracy_10crop" and not cfg.trainer.ten_crop:
        raise ConfigError("report.metric=target_accuracy_10crop is never measured with trainer.ten_crop=false: set "
                          "trainer.ten_crop=true, or report.metric=target_accuracy")


def selection_is_measured(cfg: DictConfig) -> None:
    """A selection by a label-free validator (``report.selection=<validator>``) reads scores the run records: the
    validator must be one the run computes (``trainer.validators``; ``source_val`` and ``dev_logistic`` are recorded
    whenever part of the source is held out), and one that reads held-out source data needs
    ``data.source_val_fraction > 0``."""
    from normda.reporting.selections import records_validator
    from normda.validators import VALIDATORS

    selection = cfg.report.selection
    if selection in ("last", "best"):
        return
    if "source_val" in VALIDATORS.get(selection).needs and not cfg.data.source_val_fraction:
        raise ConfigError(f"report.selection={selection} needs source data held out of training, and "
                          f"data.source_val_fraction is {cfg.data.source_val_fraction}: set "
                          f"data.source_val_fraction=0.1, or report.selection=best")
    if not records_validator(cfg, selection):
        raise ConfigError(f"report.selection={selection} reads a validator this run does not compute: add it to "
                          f"trainer.validators, or choose another report.selection")


def validators_have_their_sets(cfg: DictConfig) -> None:
    """A validator that reads labelled source samples held out of training (``source_val``, ``dev`` ...) needs
    ``data.source_val_fraction > 0``."""
    from normda.validators import VALIDATORS

    for name in cfg.trainer.validators:
        needs = VALIDATORS.get(name).needs
        if "source_val" in needs and not cfg.data.source_val_fraction:
            raise ConfigError(f"trainer.validators has {name}, which reads source samples held out of training, and "
                              f"data.source_val_fraction is {cfg.data.source_val_fraction}: set "
                              f"data.source_val_fraction=0.1, or leave {name} out")


def search_objective_is_label_free(cfg: DictConfig) -> None:
    from normda.search import check_objective

    check_objective(cfg)


RULES: tuple[Callable[[DictConfig], None], ...] = (length_in_one_unit, reported_metric_is_measured,
                                                   selection_is_measured, validators_have_their_sets,
                                                   search_objective_is_label_free)


def check_rules(cfg: DictConfig) -> None:
    for rule in RULES:
        rule(cfg)
