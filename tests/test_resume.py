"""Exact resume: the data order as a function of (seed, iteration), and a run killed with SIGKILL that, started again,
ends bit-identical to an uninterrupted one."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from normda.datasets.sampling import ResumableSampler, SeededSamples

ROOT = Path(__file__).resolve().parents[1]


def batches(sampler: ResumableSampler) -> list[list[tuple[int, int]]]:
    items = list(sampler)
    return [items[i:i + sampler.batch_size] for i in range(0, len(items), sampler.batch_size)]


def test_a_sampler_started_at_k_continues_the_one_started_at_0():
    whole = batches(ResumableSampler(10, 3, seed=7, start_batch=0, stop_batch=12))
    assert len(whole) == 12  # 3 batches per epoch (the tenth sample is dropped), 4 epochs
    for start in (1, 3, 5, 11):
        assert batches(ResumableSampler(10, 3, seed=7, start_batch=start, stop_batch=12)) == whole[start:]


def test_each_epoch_is_a_new_permutation_without_repeats():
    whole = batches(ResumableSampler(9, 3, seed=0, start_batch=0, stop_batch=9))
    epochs = [sorted(index for batch in whole[e * 3:(e + 1) * 3] for index, _ in batch) for e in range(3)]
    assert all(epoch == list(range(9)) for epoch in epochs)
    orders = [[index for batch in whole[e * 3:(e + 1) * 3] for index, _ in batch] for e in range(3)]
    assert orders[0] != orders[1]
    seeds = [seed for batch in whole for _, seed in batch]
    assert len(set(seeds)) == len(seeds)


def test_ranks_split_each_global_batch_between_them():
    single = batches(ResumableSampler(16, 4, seed=3, start_batch=0, stop_batch=8))  # 4 global batches of 4 per epoch
    ranks = [batches(ResumableSampler(16, 2, seed=3, start_batch=0, stop_batch=8, rank=r, world_size=2))
             for r in range(2)]
    for step in range(8):
        assert ranks[0][step] + ranks[1][step] == single[step]


class RandomlyAugmented(Dataset):
    """Returns a value drawn from torch's RNG: what a random crop or flip does."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, index: int):
        return torch.rand(()) + index


def loaded(num_workers: int, start: int) -> list[torch.Tensor]:
    sampler = ResumableSampler(12, 4, seed=1, start_batch=start, stop_batch=6)
    loader = DataLoader(SeededSamples(RandomlyAugmented()), batch_size=4, sampler=sampler, num_workers=num_workers,
                        generator=torch.Generator().manual_seed(0))
    return list(loader)


def test_augmentations_depend_on_the_sample_not_on_workers_or_the_start():
    state = torch.get_rng_state()
    reference = loaded(0, 0)
    assert torch.equal(torch.get_rng_state(), state)  # the process's RNG is left alone
    assert all(torch.equal(a, b) for a, b in zip(loaded(2, 0), reference))
    assert all(torch.equal(a, b) for a, b in zip(loaded(0, 2), reference[2:]))
    assert not torch.equal(reference[0], reference[3])  # epoch 1 draws new augmentations


RUN = ["data=synthetic", "data.samples_per_domain=40", "backbone=dtn", "method=cdan_e", "norm=transnorm",
       "trainer.iterations=60", "trainer.eval_every=15", "trainer.deterministic=true", "logger=none",
       "trainer.progress=false"]


def train(output: Path, *extra: str, wait: bool = True):
    command = [sys.executable, str(ROOT / "train.py"), *RUN, f"trainer.output_dir={output}", *extra]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    if wait:
        out, _ = process.communicate(timeout=300)
        assert process.returncode == 0, out
        return out
    return process


def run_folder(output: Path) -> Path:
    (folder,) = [path for path in output.iterdir() if path.is_dir()]
    return folder


def metrics(folder: Path) -> list[dict]:
    return [{key: value for key, value in json.loads(line).items() if key != "wall_time_s"}
            for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_to_the_uninterrupted_result(tmp_path):
    train(tmp_path / "whole")
    whole = run_folder(tmp_path / "whole")

    process = train(tmp_path / "killed", wait=False)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:  # kill once the second checkpoint is on disk
        folder = next((p for p in (tmp_path / "killed").glob("*") if p.is_dir()), None)
        if folder and (folder / "metrics.jsonl").exists() and len(metrics(folder)) >= 2:
            break
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed = run_folder(tmp_path / "killed")
    assert not (killed / "done").exists()

    out = train(tmp_path / "killed")
    assert "resuming" in out
    assert metrics(killed) == metrics(whole)
    final = torch.load(killed / "checkpoint.pt", weights_only=True)
    reference = torch.load(whole / "checkpoint.pt", weights_only=True)
    for part in ("model", "method"):
        assert final[part].keys() == reference[part].keys()
        for key, value in reference[part].items():
            assert torch.equal(final[part][key], value), f"{part}.{key} differs after resuming"
    assert json.loads((killed / "summary.json").read_text())["target_accuracy_last"] == \
        json.loads((whole / "summary.json").read_text())["target_accuracy_last"]

    again = train(tmp_path / "killed")
    assert "already finished, nothing to do" in again


def interrupt_after_first_evaluation(output: Path, signal_number: int) -> tuple[Path, str, int]:
    """Start the run, send ``signal_number`` once its first evaluation is on disk (so the signal lands between two
    evaluations), and return its folder, its output and its exit status."""
    process = train(output, wait=False)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        folder = next((p for p in output.glob("*") if p.is_dir()), None)
        if folder and (folder / "metrics.jsonl").exists() and metrics(folder):
            break
        time.sleep(0.01)
    time.sleep(0.2)  # past the checkpoint of that evaluation, most often
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(signal_number)
    out, _ = process.communicate(timeout=120)
    return run_folder(output), out, process.returncode


@pytest.mark.slow
@pytest.mark.parametrize("signal_number,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_run_saves_says_so_and_resumes_to_the_uninterrupted_result(tmp_path, signal_number, status):
    train(tmp_path / "whole")
    whole = run_folder(tmp_path / "whole")
    folder, out, returncode = interrupt_after_first_evaluation(tmp_path / "stopped", signal_number)
    name = signal.Signals(signal_number).name
    assert returncode == status and "Traceback" not in out
    [line] = [line for line in out.splitlines() if line.startswith("error: ")]
    step = torch.load(folder / "checkpoint.pt", weights_only=True)["step"]
    assert line == (f"error: interrupted at iteration {step} ({name}); its checkpoint is saved: run the same command "
                    f"to resume")
    assert 15 <= step < 60 and not (folder / "done").exists() and not (folder / "failed").exists()
    assert "resuming" in train(tmp_path / "stopped")
    assert metrics(folder) == metrics(whole)  # the training-loss means too: the partial sums were saved
    assert json.loads((folder / "summary.json").read_text())["target_accuracy_last"] == \
        json.loads((whole / "summary.json").read_text())["target_accuracy_last"]


@pytest.mark.slow
def test_a_second_command_on_a_running_folder_is_refused_naming_the_first(tmp_path):
    command = [sys.executable, str(ROOT / "train.py"), "data=synthetic", "logger=none", "trainer.progress=false",
               "trainer.iterations=1000000", "trainer.eval_every=1000000", f"hydra.run.dir={tmp_path / 'run'}"]
    first = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        lock = tmp_path / "run" / "lock"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (lock.exists() and lock.read_text()):
            time.sleep(0.05)
        second = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    finally:
        first.kill()
        first.wait()
    assert second.returncode == 2 and "Traceback" not in second.stderr
    assert f"error: process {first.pid} on " in second.stderr
    assert "is training the run folder" in second.stderr and not (tmp_path / "run" / "failed").exists()
