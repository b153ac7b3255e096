"""The one check of a run's config, before anything is built or written: every group's keys against their schema.

Each group declares its settings once, with types and ranges: ``trainer`` (``TrainerConfig``), ``model``
(``ModelConfig``), ``report`` (``ReportConfig``), ``search`` (``SearchConfig``), ``optim`` (``OptimConfig`` and the optimizer's own signature),
``logger`` (``loggers.LOGGERS``), and each option of the four axes through its registry: a dataset's and a backbone's
declared node schema (``datasets/settings.py``, ``backbones/base.py``), a normalization's and a method's constructor
signature. The rules between keys live beside it (``config_rules.py``). ``${run_name:}`` names a run folder only
after this check has passed, so a wrong setting never leaves a folder behind.
"""
from __future__ import annotations

import json
from typing import Annotated

from omegaconf import DictConfig, OmegaConf

from normda import backbones, dann_cdan, datasets, normalization, validators
from normda.config_identity import recorded_config
from normda.config_rules import check_rules
from normda.errors import ConfigError
from normda.loggers import check_logger
from normda.model import ModelConfig
from normda.optim import check_optim
from normda.registry import AtLeast, check_setting, check_settings, node_settings
from normda.reporting.selections import ReportConfig
from normda.search import SearchConfig
from normda.trainer import TrainerConfig


#: the configs (their recorded text) this process has checked: Hydra's ``${run_name:}`` checks a run's config before
#: it names the folder, and the run itself finds it checked
_CHECKED: set[str] = set()


def check_config(cfg: DictConfig) -> None:
    """Raise one :class:`~normda.errors.ConfigError` naming the first key whose value its schema refuses, or the first
    rule between keys that the config breaks."""
    missing = sorted(OmegaConf.missing_keys(OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])))
    if missing:
        raise ConfigError(f"{', '.join(missing)} must be set: add {missing[0]}=<value> to the command")
    text = json.dumps(recorded_config(cfg), sort_keys=True, default=str)
    if text in _CHECKED:
        return
    check_setting("seed", cfg.seed, Annotated[int, AtLeast(0)])  # numpy's seeds are unsigned
    check_settings(TrainerConfig, cfg.trainer, "trainer", complete=True)
    check_settings(ModelConfig, cfg.model, "model", complete=True)
    check_settings(ReportConfig, cfg.report, "report", complete=True)
    check_settings(SearchConfig, cfg.search, "search", complete=True)
    backbones.BACKBONES.check(cfg.backbone.name, node_settings(cfg.backbone))
    datasets.DATASETS.check(cfg.data.name, node_settings(cfg.data))
    for name in cfg.trainer.validators:
        validators.VALIDATORS.get(name)
    check_setting("norm.exclude", cfg.norm.exclude, list[str])
    normalization.NORMALIZATIONS.check(cfg.norm.name, node_settings(cfg.norm, "exclude"))
    dann_cdan.METHODS.check(cfg.method.name, node_settings(cfg.method), fixed=("features_dim", "num_classes"))
    check_optim(cfg.optim)
    check_logger(cfg.logger)
    check_rules(cfg)
    _CHECKED.add(text)
