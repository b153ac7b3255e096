"""A Hydra callback that makes Optuna's sweeper (``hydra-optuna-sweeper``, the ``[search]`` extra) resume a study:
run again, a killed sweep continues where it stopped instead of running ``n_trials`` more.

The plugin already reloads a stored study (``load_if_exists``) and records a failed trial as failed (with
``max_failure_rate: 1.0`` the study goes on). Before the sweeper starts (``on_multirun_start``, when Hydra has composed
the sweep's config but not yet built the sweeper), this callback refuses a study without ``search.objective`` (its
every trial would return nothing), creates the SQLite file's folder, marks the trials a killed sweep left running as
failed (their run folders resume if the sampler asks for the same settings again), and
lowers ``hydra.sweeper.n_trials`` to the trials the study still lacks. A sampler with a seed is given the seed plus the
number of ended trials, so that a resumed study does not draw its first random suggestions again (a resumed study's
next suggestions differ from an uninterrupted one's; the ended trials, which TPE learns from, are the same).

The callback also remembers the study it started: when every trial fails, the plugin's ``study.best_trial`` raises
optuna's bare ``ValueError: Record does not exist.``, and :func:`no_finished_trial` gives ``train.py`` the one line
to say instead.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict, read_write

log = logging.getLogger(__name__)

SQLITE = "sqlite:///"


class StartedStudy:
    """The study this process's sweep runs (storage, name), the folder of its run folders and when it started (a
    ``failed`` file older than that belongs to an earlier sweep); ``None`` until then."""

    value: tuple[str, str, Path, float] | None = None


def no_finished_trial() -> str | None:
    """What to say when the study this process started has no finished trial (each one failed), else ``None``."""
    if StartedStudy.value is None:
        return None
    import optuna
    from optuna.trial import TrialState

    storage, name, runs, started = StartedStudy.value
    try:
        trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    except KeyError:  # the study was never created
        return None
    if any(trial.state == TrialState.COMPLETE for trial in trials):
        return None
    reasons = sorted((path for path in runs.glob("*/failed") if path.stat().st_mtime >= started),
                     key=lambda path: path.stat().st_mtime)
    reason = f" (the last: {reasons[-1].read_text().strip()})" if reasons else ""
    return (f"every trial of study {name} failed{reason}: each run folder under {runs} says why in its `failed` "
            f"file; fix the cause and run the same command again, the study resumes from {storage}")


class ResumeStudy(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        import optuna
        from optuna.trial import TrialState

        if config.search.objective is None:
            from normda.cli import fail  # Hydra turns a callback's exception into a warning: only an exit stops it

            fail("an Optuna study needs a score to maximise, and train.py returns one only with "
                 "search.objective=<validator>: give one (source_val, v_measure, ...)")
        sweeper = config.hydra.sweeper
        storage, name = sweeper.storage, sweeper.study_name
        if not storage:
            return
        StartedStudy.value = (str(storage), str(name), Path(config.trainer.output_dir), time.time())
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
