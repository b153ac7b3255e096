"""A run that fails records why in its folder and keeps its last good checkpoint: NaN/Inf losses, out of memory,
unreadable checkpoints; and what checkpoint loading refuses."""
from __future__ import annotations

import os

import pytest
import torch

import normda.trainer as trainer_module
from conftest import load_script, run_in_process
from normda.errors import ConfigError, OutOfMemory, RunFolderGone, TrainingDivergedError
from normda.experiment import train
from normda.run_folder import RunFolder
from normda.trainer import check_finite


def test_check_finite_names_the_first_bad_iteration_and_term():
    history = [(7, {"loss": torch.tensor(1.0), "transfer_loss": torch.tensor(0.5)}),
               (8, {"loss": torch.tensor(float("inf")), "transfer_loss": torch.tensor(float("nan"))}),
               (9, {"loss": torch.tensor(float("nan")), "transfer_loss": 0.1})]
    with pytest.raises(TrainingDivergedError, match=r"iteration 8 \(transfer_loss = nan\)"):
        check_finite(history)
    check_finite(history[:1])


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(make_config, tmp_path, monkeypatch):
    calls = {"n": 0}
    cross_entropy = trainer_module.F.cross_entropy

    def breaks_at_iteration_13(*args, **kwargs):
        calls["n"] += 1
        loss = cross_entropy(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 13 else loss

    monkeypatch.setattr(trainer_module.F, "cross_entropy", breaks_at_iteration_13)
    cfg = make_config("trainer.iterations=30", "trainer.eval_every=10", "method=dann")
    with pytest.raises(TrainingDivergedError, match=r"non-finite at iteration 13 \(classification_loss = nan\)"):
        train(cfg, tmp_path / "run")
    run = RunFolder(tmp_path / "run")
    assert run.load_checkpoint()["step"] == 10
    assert [record["step"] for record in run.read_metrics()] == [10]
    assert "non-finite at iteration 13" in run.failure.read_text() and not run.done

    monkeypatch.setattr(trainer_module.F, "cross_entropy", cross_entropy)  # the same command resumes and finishes
    assert train(cfg, tmp_path / "run")["iterations"] == 30
    assert run.done and not run.failure.exists()


def test_out_of_memory_is_recorded_with_the_fix(make_config, tmp_path, monkeypatch):
    def out_of_memory(self, *batches):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(trainer_module.Trainer, "train_step", out_of_memory)
    with pytest.raises(OutOfMemory, match="lower data.batch_size"):
        train(make_config(), tmp_path / "run")
    assert "out of memory" in RunFolder(tmp_path / "run").failure.read_text()


def test_a_batch_the_cpu_cannot_hold_names_its_size_and_the_fix(make_config, tmp_path, monkeypatch):
    def exhausted(self, *batches):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: not enough memory: you "
                           "tried to allocate 96636764160 bytes.")

    monkeypatch.setattr(trainer_module.Trainer, "train_step", exhausted)
    with pytest.raises(OutOfMemory, match=r"the batch of data.batch_size=8 images a domain at 32 px needs more "
                                          r"memory than this machine has: lower data.batch_size or data.image_size"):
        train(make_config(), tmp_path / "run")


def test_a_damaged_checkpoint_is_a_one_line_error(make_config, tmp_path):
    run = RunFolder(tmp_path / "run")
    run.checkpoint.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="cannot read the checkpoint .* delete it"):
        train(make_config(), run.path)


class Payload:
    def __reduce__(self):
        return (print, ("this code ran while loading",))


def test_checkpoints_load_without_running_pickled_code(tmp_path, capsys):
    run = RunFolder(tmp_path / "run")
    torch.save({"step": 1, "payload": Payload()}, run.checkpoint)
    with pytest.raises(ConfigError, match="cannot read the checkpoint"):
        run.load_checkpoint()
    assert "this code ran" not in capsys.readouterr().out


def test_a_diverging_job_in_a_sweep_fails_alone_and_collect_lists_it(tmp_path):
    result = run_in_process("-m", "data=synthetic", "optim.optimizer.lr=1e12,0.01", "logger=none",
                            "trainer.progress=false", "trainer.iterations=6", "trainer.eval_every=3",
                            f"trainer.output_dir={tmp_path / 'runs'}", cwd=tmp_path)
    assert result.returncode == 2  # Hydra ran the other job, then reports the first failure
    assert "error: the loss went non-finite at iteration" in result.stderr
    runs = sorted(path for path in (tmp_path / "runs").iterdir() if path.is_dir())
    assert sorted((run / "done").exists() for run in runs) == [False, True]
    [failed] = [run for run in runs if not (run / "done").exists()]
    assert "the loss went non-finite at iteration" in (failed / "failed").read_text()
    assert load_script("collect").main([str(tmp_path / "runs"), "--out", str(tmp_path / "tables")]) == 0
    assert "failed (the loss went non-finite at iteration" in (tmp_path / "tables" / "table-best.md").read_text()


def test_a_nan_before_any_checkpoint_says_that_nothing_was_kept(make_config, tmp_path):
    cfg = make_config("optim.optimizer.lr=1e12", "trainer.iterations=40", "trainer.eval_every=20")
    with pytest.raises(TrainingDivergedError) as error:
        train(cfg, tmp_path / "run")
    message = str(error.value)
    assert "the run stopped before its first checkpoint (iteration 20), so no state was kept" in message
    assert "resume" not in message and not RunFolder(tmp_path / "run").checkpoint.exists()


def test_a_run_whose_checkpoint_was_deleted_keeps_no_metrics_of_the_lost_state(make_config, tmp_path):
    """Deleting a damaged checkpoint (as its message says) trains the run from the start: the evaluations of the
    deleted state go too, so metrics.jsonl never holds two lines for one evaluation."""
    cfg = make_config("trainer.iterations=6", "trainer.eval_every=2")
    run = RunFolder(tmp_path / "run")
    train(cfg, run.path)
    run.done_marker.unlink()
    run.checkpoint.unlink()
    train(cfg, run.path)
    assert [record["step"] for record in run.read_metrics()] == [2, 4, 6]


def test_a_run_folder_deleted_while_training_is_one_line(make_config, tmp_path, monkeypatch):
    import shutil

    save = RunFolder.save_checkpoint

    def delete_first(self, state):
        shutil.rmtree(self.path)
        save(self, state)

    monkeypatch.setattr(RunFolder, "save_checkpoint", delete_first)
    with pytest.raises(RunFolderGone, match=r"the run folder .*run was deleted while the run was writing to it "
                                            r"\(FileNotFoundError\): run the same command"):
        train(make_config("trainer.iterations=4", "trainer.eval_every=2"), tmp_path / "run")


def test_one_writer_per_run_folder_and_a_dead_holder_is_taken_over(tmp_path, caplog):
    from normda.errors import RunFolderBusy

    run = RunFolder(tmp_path / "run")
    with run.writer_lock():
        assert run.lock_file.read_text().startswith(f"process {os.getpid()} on ")
        with pytest.raises(RunFolderBusy, match=f"process {os.getpid()} on .* is training the run folder"):
            with run.writer_lock():
                pass
    assert run.lock_file.read_text() == ""  # released
    run.lock_file.write_text("process 4194303 on elsewhere")  # what a process killed while training leaves
    with caplog.at_level("WARNING"), run.writer_lock():
        pass
    assert "took over the lock of process 4194303 on elsewhere" in caplog.text


def test_an_interrupt_between_evaluations_saves_what_the_next_one_needs(make_config, tmp_path, monkeypatch):
    """The trainer stops after the step a signal lands in; resumed, the run's evaluations (the training-loss means
    over each interval included) are those of the run that was never interrupted."""
    import signal

    from normda.interrupts import Interrupted

    cfg = make_config("trainer.iterations=15", "trainer.eval_every=5", "method=dann")
    train(cfg, tmp_path / "whole")
    step = trainer_module.Trainer.train_step

    def signalled_in_step_7(self, *batches):
        terms = step(self, *batches)
        if self.step == 6:  # the seventh step, counted after it returns
            self.interrupts.requested = signal.SIGINT
        return terms

    monkeypatch.setattr(trainer_module.Trainer, "train_step", signalled_in_step_7)
    with pytest.raises(Interrupted, match="interrupted at iteration 7") as stopped:
        train(cfg, tmp_path / "stopped")
    assert stopped.value.exit_status == 130
    stopped_run = RunFolder(tmp_path / "stopped")
    assert stopped_run.load_checkpoint()["step"] == 7 and not stopped_run.failure.exists()
    monkeypatch.setattr(trainer_module.Trainer, "train_step", step)
    train(cfg, tmp_path / "stopped")

    def evaluations(folder):
        return [{key: value for key, value in record.items() if key != "wall_time_s"}
                for record in RunFolder(folder).read_metrics()]

    assert evaluations(tmp_path / "stopped") == evaluations(tmp_path / "whole")
