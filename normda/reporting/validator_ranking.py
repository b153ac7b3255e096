"""How well each label-free validator ranks the evaluations of a sweep, as the benchmarks judge it (``protocols.md``
section 9): the weighted Spearman correlation of its score with the target accuracy over every evaluation of every
finished run (Musgrave, Belongie & Lim 2022), and the target accuracy of the evaluation it selects against the
oracle's (the best by target labels)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from normda.reporting.selections import validator_key
from normda.reporting.tables import Run
from normda.validators import VALIDATORS


def weighted_spearman(scores: np.ndarray, accuracies: np.ndarray, power: float = 2.0) -> float:
    """Musgrave et al.'s weighted Spearman correlation: both series as dense ranks normalised to (0, 1] (rank / its
    maximum), each pair weighted by the larger of its two normalised ranks to the ``power`` (the best evaluations
    count most), and the weighted Pearson correlation of the ranks."""
    x = rankdata(scores, method="dense")
    y = rankdata(accuracies, method="dense")
    x, y = x / x.max(), y / y.max()
    weights = np.maximum(x, y) ** power
    mean_x, mean_y = np.average(x, weights=weights), np.average(y, weights=weights)
    covariance = np.average((x - mean_x) * (y - mean_y), weights=weights)
    spread = np.sqrt(np.average((x - mean_x) ** 2, weights=weights) * np.average((y - mean_y) ** 2, weights=weights))
    return float(covariance / spread) if spread > 0 else float("nan")


def evaluations(runs: list[Run], metric: str = "target_accuracy") -> pd.DataFrame:
    """One line per evaluation of every finished run: its labels, step, ``metric`` and every validator's score."""
    rows = []
    for run in runs:
        if run.status != "done":
            continue
        for record in run.metrics:
            if metric not in record:
                continue
            row = {**run.labels, "run": run.name, "step": record["step"], "accuracy": record[metric]}
            row.update({name: record[validator_key(name)] for name in VALIDATORS.names()
                        if validator_key(name) in record})
            rows.append(row)
    return pd.DataFrame(rows)


def rank(frame: pd.DataFrame) -> pd.DataFrame:
    """Per validator in ``frame`` (one of :func:`evaluations`' frames): its direction, how many evaluations it scored,
    its weighted Spearman correlation with the accuracy (its score oriented so that higher is better), the accuracy
    of the evaluation it selects, the oracle's, and the gap; best correlation first."""
    oracle = frame.accuracy.max()
    rows = []
    for name in VALIDATORS.names():
        if name not in frame:
            continue
        scored = frame.dropna(subset=[name])
        if scored.empty:
            continue
        validator = VALIDATORS.get(name)
        oriented = scored[name] if validator.direction == "max" else -scored[name]
        chosen = scored.loc[oriented.idxmax()]
        rows.append({"validator": name, "better": validator.direction, "evaluations": len(scored),
                     "weighted_spearman": weighted_spearman(oriented.to_numpy(), scored.accuracy.to_numpy()),
                     "selected_accuracy": chosen.accuracy, "selected_run": chosen.run, "selected_step": chosen.step,
                     "oracle_accuracy": oracle, "gap": chosen.accuracy - oracle})
    return pd.DataFrame(rows).sort_values("weighted_spearman", ascending=False, ignore_index=True)
