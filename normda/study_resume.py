"""A Hydra callback that makes Optuna's sweeper (``hydra-optuna-sweeper``, the ``[search]`` extra) resume a study:
run again, a killed sweep continues where it stopped instead of running ``n_trials`` more.

The plugin already reloads a stored study (``load_if_exists``) and records a failed trial as failed (with
``max_failure_rate: 1.0`` the study goes on). Before the sweeper starts (``on_multirun_start``, when Hydra has composed
the sweep's config but not yet built the sweeper), this callback creates the SQLite file's folder, marks the trials a
killed sweep left running as failed (their run folders resume if the sampler asks for the same settings again), and
lowers ``hydra.sweeper.n_trials`` to the trials the study still lacks. A sampler with a seed is given the seed plus the
number of ended trials, so that a resumed study does not draw its first random suggestions again (a resumed study's
next suggestions differ from an uninterrupted one's; the ended trials, which TPE learns from, are the same).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict, read_write

log = logging.getLogger(__name__)

SQLITE = "sqlite:///"


class ResumeStudy(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        import optuna
        from optuna.trial import TrialState

        sweeper = config.hydra.sweeper
        storage, name = sweeper.storage, sweeper.study_name
        if not storage:
            return
        if str(storage).startswith(SQLITE):
            Path(str(storage)[len(SQLITE):]).parent.mkdir(parents=True, exist_ok=True)
        if name not in {summary.study_name for summary in optuna.get_all_study_summaries(storage)}:
            return
        study = optuna.load_study(study_name=name, storage=storage)
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study._storage.set_trial_state(trial._trial_id, TrialState.FAIL)  # optuna 2's storage API
        ended = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)))
        remaining = max(sweeper.n_trials - ended, 0)
        log.info("study %s in %s has %d ended trials of %d: %d to go", name, storage, ended, sweeper.n_trials,
                 remaining)
        with read_write(sweeper), open_dict(sweeper):
            sweeper.n_trials = remaining
            if sweeper.sampler.get("seed") is not None:
                sweeper.sampler.seed = sweeper.sampler.seed + ended
