"""Label-free search (normda/search.py, experiment=label_free_search): what train.py returns to a sweeper, the
objectives refused, and an Optuna study that records failed trials and resumes where it stopped."""
from __future__ import annotations

import json
import os
import time

import pytest

from conftest import run_in_process
from normda.errors import ConfigError
from normda.run_folder import RunFolder
from normda.schema import check_config
from normda.search import objective_value


def test_an_objective_that_reads_target_labels_is_refused(make_config):
    for objective in ("target_accuracy", "best"):
        with pytest.raises(ConfigError, match=f"search.objective={objective} would choose hyperparameters with the "
                                              f"target test labels"):
            check_config(make_config(f"search.objective={objective}"))
    with pytest.raises(ConfigError, match="search.objective=im is a validator this run does not compute"):
        check_config(make_config("search.objective=im"))
    with pytest.raises(ConfigError, match=r"unknown trainer.validators=vmeasure \(did you mean v_measure\?\)"):
        check_config(make_config("search.objective=vmeasure"))
    check_config(make_config("search.objective=im", "trainer.validators=[im]"))
    check_config(make_config("search.objective=source_val", "data.source_val_fraction=0.25"))  # always recorded


def test_the_objective_is_the_validators_choice_with_higher_better(tmp_path):
    folder = RunFolder(tmp_path / "run")
    for record in ({"step": 2, "target_accuracy": 90.0, "validator/im": 1.0, "validator/dev": 0.5},
                   {"step": 4, "target_accuracy": 10.0, "validator/im": 2.0, "validator/dev": 0.3},
                   {"step": 6, "target_accuracy": 50.0, "validator/im": 1.5, "validator/dev": 0.4}):
        folder.append_metrics(record)
    assert objective_value("im", folder.path) == 2.0  # the highest IM, whatever the accuracy there
    assert objective_value("dev", folder.path) == -0.3  # the lowest risk, negated for a study that maximises
    with pytest.raises(ConfigError, match="recorded no snd score"):
        objective_value("snd", folder.path)


def test_a_study_records_failed_trials_and_resumes_where_it_stopped(tmp_path):
    """TPE (seed 0) over the rate, the trade-off, the warm-up and a batch size that cannot run (1000 images of 29):
    the trials that draw it fail, with their run folders' reasons, and the study goes on; run again with a larger
    n_trials, the study continues from its stored trials, and each finished trial's value is its run's best IM."""
    import optuna

    study = ["-m", "experiment=label_free_search", "search.objective=im", "data=synthetic", "data.source=S",
             "data.target=T", "backbone=lenet", "data.target_val_fraction=0.25", "trainer.ten_crop=false",
             "report.metric=target_accuracy", "trainer.iterations=4", "trainer.eval_every=2", "logger=none",
             "trainer.progress=false", f"trainer.output_dir={tmp_path}", "data.batch_size=choice(8,1000)"]
    first = run_in_process(*study, "hydra.sweeper.n_trials=3", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    resumed = run_in_process(*study, "hydra.sweeper.n_trials=5", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "has 3 ended trials of 5: 2 to go" in resumed.stdout + resumed.stderr
    trials = optuna.load_study(study_name="im-transnorm-U2M", storage=f"sqlite:///{tmp_path}/optuna.db").trials
    states = [trial.state.name for trial in trials]
    assert len(trials) == 5 and "FAIL" in states and "COMPLETE" in states
    assert all((trial.state.name == "FAIL") == (trial.params["data.batch_size"] == 1000) for trial in trials)
    finished = {}
    for folder in tmp_path.glob("synthetic-*"):
        config = (folder / "config.yaml").read_text()
        if (folder / "failed").exists():
            assert "fewer than data.batch_size=1000" in (folder / "failed").read_text()
            continue
        best = max(json.loads(line)["validator/im"] for line in (folder / "metrics.jsonl").read_text().splitlines())
        finished[config.split("lr: ")[1].split("\n")[0]] = best
    for trial in trials:
        if trial.state.name == "COMPLETE":
            assert trial.value == pytest.approx(finished[repr(trial.params["optim.optimizer.lr"])])


def test_a_study_whose_every_trial_fails_ends_in_one_line_naming_the_last_reason(tmp_path):
    """Optuna's sweeper asks for the best trial after the last one; with none finished, optuna raises a bare
    ``ValueError: Record does not exist.``, which train.py replaces with the failures' reason."""
    study = ["-m", "experiment=label_free_search", "search.objective=im", "data=synthetic", "data.source=S",
             "data.target=T", "backbone=lenet", "data.target_val_fraction=0.25", "trainer.ten_crop=false",
             "report.metric=target_accuracy", "trainer.iterations=2", "trainer.eval_every=2", "logger=none",
             "trainer.progress=false", f"trainer.output_dir={tmp_path}", "data.batch_size=1000",
             "hydra.sweeper.n_trials=2"]
    result = run_in_process(*study, cwd=tmp_path)
    assert result.returncode == 2
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: every trial of study im-transnorm-U2M failed (the last: the source domain has "
                                "29 images, fewer than data.batch_size=1000: lower data.batch_size)")
    assert "Traceback" not in result.stderr and "Record does not exist" not in result.stderr


def test_a_failed_file_older_than_the_study_is_not_given_as_its_reason(tmp_path):
    """A run folder an earlier sweep left failed in the same folder says nothing about this study's trials."""
    import optuna

    from normda.study_resume import StartedStudy, no_finished_trial

    storage = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="im-bn-U2M", storage=storage)
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    stale = tmp_path / "an-earlier-sweeps-run"
    stale.mkdir()
    (stale / "failed").write_text("an earlier sweep's reason\n")
    os.utime(stale / "failed", (0, 0))
    StartedStudy.value = (storage, "im-bn-U2M", tmp_path, time.time())
    try:
        assert no_finished_trial() == (
            f"every trial of study im-bn-U2M failed: each run folder under {tmp_path} says why in its `failed` file; "
            f"fix the cause and run the same command again, the study resumes from {storage}")
        os.utime(stale / "failed")  # as if this study's trial had failed there now
        assert "failed (the last: an earlier sweep's reason):" in no_finished_trial()
    finally:
        StartedStudy.value = None


def test_the_search_preset_searches_on_v_measure_and_refuses_a_study_without_an_objective(tmp_path):
    from conftest import compose_config

    assert compose_config(["experiment=label_free_search"]).search.objective == "v_measure"
    result = run_in_process("-m", "experiment=label_free_search", "search.objective=null", "logger=none",
                            f"trainer.output_dir={tmp_path}", cwd=tmp_path)
    assert result.returncode == 2 and not list(tmp_path.glob("*/config.yaml"))
    assert result.stderr.strip().splitlines()[-1] == (
        "error: an Optuna study needs a score to maximise, and train.py returns one only with "
        "search.objective=<validator>: give one (source_val, v_measure, ...)")


def test_a_sweeper_plugin_that_is_not_installed_names_its_extra():
    from hydra.errors import MissingConfigException

    from normda.cli import unknown_option

    error = MissingConfigException("missing", missing_cfg_file="hydra/sweeper/optuna", options=["basic"])
    assert unknown_option(error) == ('hydra/sweeper=optuna is a Hydra plugin that is not installed: pip install -e '
                                     '".[search]"')
