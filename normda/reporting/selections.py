"""What a table reports of a run (``report.metric``) and which of its evaluations (``report.selection``): the one table
of each, the types a config is checked against (generated from them), and the ``report`` node's schema."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

from normda.validators.base import VALIDATORS

#: metric -> what it measures (each evaluation's line in ``metrics.jsonl`` holds it, where the run computes it)
METRICS = {
    "target_accuracy": "accuracy on the target test set",
    "target_accuracy_10crop": "accuracy on the target test set with ten crops of each image (trainer.ten_crop)",
    "target_mean_class_accuracy": "accuracy on the target test set averaged over its classes",
}


def _pick(records: list[dict], key: str, better: Callable[[float, float], bool]) -> dict | None:
    chosen = None
    for record in records:
        if key in record and (chosen is None or better(record[key], chosen[key])):
            chosen = record
    return chosen


#: where each evaluation's line keeps a validator's score: ``validator/<name>``, except the two the trainer records
#: whenever part of the source is held out (``data.source_val_fraction``), under the names they had before
VALIDATOR_KEYS = {"source_val": "source_val_accuracy", "dev_logistic": "dev_risk"}


def validator_key(name: str) -> str:
    return VALIDATOR_KEYS.get(name, f"validator/{name}")


def records_validator(cfg, name: str) -> bool:
    """Whether a run of ``cfg`` records ``name``'s score at each evaluation."""
    return name in cfg.trainer.validators or (name in VALIDATOR_KEYS and bool(cfg.data.source_val_fraction))


def _by_validator(name: str) -> Callable[[list[dict], str], dict | None]:
    """The evaluation ``name`` scores best (the later of equals); its direction is read when a table is made."""

    def choose(records: list[dict], metric: str) -> dict | None:
        validator = VALIDATORS.get(name)
        return _pick(records, validator_key(name), lambda new, old: not validator.better(old, new))

    return choose


_DESCRIPTIONS = {
    "source_val": "the evaluation with the best accuracy on held-out source data (no target labels)",
    "dev": "the evaluation with the lowest Deep Embedded Validation risk (You et al., ICML 2019; no target labels)",
    "dev_logistic": "the evaluation with the lowest DEV risk from a logistic-regression density ratio (no target "
                    "labels)",
}

#: selection rule -> (description, function from a run's metrics lines and the reported metric to the chosen line):
#: the last evaluation, the oracle, and one rule per label-free validator (``normda/validators/``)
SELECTIONS: dict[str, tuple[str, Callable[[list[dict], str], dict | None]]] = {
    "last": ("the last evaluation", lambda records, metric: records[-1] if records else None),
    "best": ("the best of all evaluations on the target test set: the papers' protocol, which selects with the "
             "target labels", lambda records, metric: _pick(records, metric, lambda new, old: new > old)),
    **{name: (_DESCRIPTIONS.get(name, f"the evaluation the label-free validator {name} scores best (no target "
                                      f"labels)"), _by_validator(name))
       for name in VALIDATORS.names()},
}

Metric = Literal[tuple(METRICS)]
Selection = Literal[tuple(SELECTIONS)]


@dataclass(frozen=True)
class ReportConfig:
    """The ``report`` node of ``conf/config.yaml``: how ``scripts/collect.py`` tabulates the run unless told
    otherwise."""

    metric: Metric
    selection: Selection
