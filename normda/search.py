"""Label-free hyperparameter search: with ``search.objective=<validator>``, ``train.py`` returns to a Hydra sweeper
(Optuna's: ``experiment=label_free_search``) that validator's score of the run, never its target accuracy.

A run's score is the validator's value at the evaluation it selects (the one ``collect.py --selection <validator>``
reports), returned so that higher is always better: negated for the validators where lower is better (DEV, DEVN), so
that a study maximises whatever it searches on. An objective that reads target labels (the target accuracy, the
oracle) is refused before the run starts.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from normda.errors import ConfigError
from normda.reporting.selections import METRICS, records_validator, validator_key
from normda.run_folder import RunFolder
from normda.validators import VALIDATORS

@dataclass(frozen=True)
class SearchConfig:
    """The ``search`` node of ``conf/config.yaml``."""

    objective: str | None  # a label-free validator; null: train.py returns nothing to a sweeper


def check_objective(cfg: DictConfig) -> None:
    """``search.objective`` names a validator the run computes, and never something that reads target labels."""
    objective = cfg.search.objective
    if objective is None:
        return
    if objective in METRICS or objective in ("best", "oracle", "last"):
        raise ConfigError(f"search.objective={objective} would choose hyperparameters with the target test labels, "
                          f"which unsupervised adaptation does not have: give a label-free validator "
                          f"({', '.join(VALIDATORS.names())})")
    if objective not in VALIDATORS.names():
        VALIDATORS.get(objective)  # the registry's one-line error, with the nearest name
    if not records_validator(cfg, objective):
        raise ConfigError(f"search.objective={objective} is a validator this run does not compute: add it to "
                          f"trainer.validators")


def objective_value(objective: str, run_dir: str | Path) -> float:
    """The run's score by ``objective``: its value at the evaluation it selects, negated where lower is better."""
    from normda.reporting.selections import SELECTIONS

    records = RunFolder.existing(run_dir).read_metrics()
    chosen = SELECTIONS[objective][1](records, "target_accuracy")
    if chosen is None:
        raise ConfigError(f"the run in {run_dir} recorded no {objective} score: give it data to compute it with "
                          f"(trainer.validators, data.source_val_fraction)")
    value = float(chosen[validator_key(objective)])
    return value if VALIDATORS.get(objective).direction == "max" else -value
