"""``norm.sync=true`` over 2 processes (gloo, CPU): each process holds part of the source and part of the target, and
the synchronised layers give what one process holding the whole batch gives: outputs, input and parameter gradients,
running statistics."""
from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from normda.normalization import domain_split
from normda.normalization.autodial import AutoDIALNorm
from normda.normalization.dsbn import DomainSpecificBatchNorm
from normda.normalization.transnorm import TransNorm2d

ROOT = Path(__file__).resolve().parents[1]
#: per rank: (source rows, target rows) of the whole batch; unequal on purpose, and one share of each domain alone
SHARES = {"mixed": [((0, 3), (0, 2)), ((3, 5), (2, 6))], "one_domain_each": [((0, 5), (0, 0)), ((5, 5), (0, 6))]}
N_SOURCE, N_TARGET = 5, 6


def make_layer(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "transnorm":
        layer = TransNorm2d(4)
    elif kind == "dsbn":
        layer = DomainSpecificBatchNorm(torch.nn.BatchNorm2d(4))
    else:
        layer = AutoDIALNorm(4, running_average="pytorch")
        with torch.no_grad():
            layer.alpha.fill_(0.8)
    with torch.no_grad():
        for parameter in layer.parameters():
            if parameter.dim():
                parameter.copy_(torch.rand_like(parameter) + 0.5)
    layer.sync = True
    return layer.double()


def whole_batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(N_SOURCE + N_TARGET, 4, 3, 3, generator=generator, dtype=torch.float64)
    x[N_SOURCE:] = 2.0 * x[N_SOURCE:] + 1.0
    return x, torch.randn(x.shape, generator=generator, dtype=torch.float64)


def step(layer: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor, n_source: int) -> dict:
    x = x.clone().requires_grad_(True)
    with domain_split(layer, n_source, x.shape[0] - n_source):
        out = layer(x)
    out.backward(grad)
    return {"out": out.detach(), "grad_x": x.grad,
            "params": {name: p.grad for name, p in layer.named_parameters()},
            "buffers": {name: b.clone() for name, b in layer.named_buffers()}}


def rows(tensor: torch.Tensor, share) -> torch.Tensor:
    (s0, s1), (t0, t1) = share
    return torch.cat([tensor[s0:s1], tensor[N_SOURCE + t0:N_SOURCE + t1]])


KINDS = ("transnorm", "dsbn", "autodial")


def worker(rank: int, init_file: str, out_dir: str) -> None:
    # a collective that waits for the other process more than a minute (a hang) fails instead of blocking the suite
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=60))
    try:
        x, grad = whole_batch()
        for case, shares in SHARES.items():
            share = shares[rank]
            for kind in KINDS:
                result = step(make_layer(kind), rows(x, share), rows(grad, share), share[0][1] - share[0][0])
                torch.save(result, os.path.join(out_dir, f"{kind}-{case}-rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def synchronised_steps(tmp_path_factory) -> Path:
    """One 2-process gloo job that runs a step of every synchronised layer on its share of the batch."""
    folder = tmp_path_factory.mktemp("sync")
    mp.start_processes(worker, args=(str(folder / "init"), str(folder)), nprocs=2, start_method="spawn")
    return folder


@pytest.mark.parametrize("case", SHARES)
@pytest.mark.parametrize("kind", KINDS)
def test_synchronised_statistics_equal_the_whole_batch(kind, case, synchronised_steps):
    """Where one process holds a single domain, too: no process waits alone in an all-reduce (AutoDIAL), and every
    process's running statistics are the whole batch's (DSBN)."""
    x, grad = whole_batch()
    single = step(make_layer(kind), x, grad, N_SOURCE)
    ranks = [torch.load(synchronised_steps / f"{kind}-{case}-rank{r}.pt", weights_only=True) for r in range(2)]
    for rank, share in zip(ranks, SHARES[case]):
        torch.testing.assert_close(rank["out"], rows(single["out"], share), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(rank["grad_x"], rows(single["grad_x"], share), rtol=1e-9, atol=1e-12)
        for name, buffer in single["buffers"].items():  # every process holds the whole batch's running statistics
            torch.testing.assert_close(rank["buffers"][name], buffer, rtol=1e-10, atol=1e-12, msg=name)
    for name, expected in single["params"].items():  # DDP sums (averages) these across processes
        if expected is not None:
            torch.testing.assert_close(ranks[0]["params"][name] + ranks[1]["params"][name], expected, rtol=1e-9,
                                       atol=1e-12, msg=name)


@pytest.mark.slow
def test_torchrun_trains_one_run_with_ddp_and_synchronised_transnorm(tmp_path):
    """``torchrun --nproc_per_node=2 train.py ...`` on the CPU (gloo): one run folder, written once, whose checkpoint
    holds both processes' RNG states; run again, it is finished."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", str(ROOT / "train.py"),
               "data=synthetic", "norm=transnorm", "norm.sync=true", "method=dann", "trainer.device=cpu",
               "logger=none", "trainer.progress=false", "trainer.iterations=6", "trainer.eval_every=3",
               f"trainer.output_dir={tmp_path}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("target accuracy on shifted") == 1  # process 0 reports
    [run] = [path for path in tmp_path.iterdir() if path.is_dir()]
    assert (run / "done").exists()
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [3, 6]
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=True)
    assert len(checkpoint["rng"]) == 2 and checkpoint["step"] == 6
    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "already finished" in again.stdout


def torchrun(output: Path, *extra: str, wait: bool = True):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", str(ROOT / "train.py"),
               "data=synthetic", "data.samples_per_domain=40", "norm=transnorm", "norm.sync=true", "method=cdan_e",
               "trainer.device=cpu", "trainer.deterministic=true", "logger=none", "trainer.progress=false",
               "trainer.iterations=40", "trainer.eval_every=10", f"trainer.output_dir={output}", *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    if wait:
        out, _ = process.communicate(timeout=300)
        assert process.returncode == 0, out[-3000:]
    return process


@pytest.mark.slow
def test_a_killed_torchrun_job_resumes_to_the_uninterrupted_result(tmp_path):
    """Both processes killed (SIGKILL to the whole group) after the second checkpoint, then started again: the run
    ends with the metrics and weights of an uninterrupted 2-process run (every process's RNG and data share)."""
    torchrun(tmp_path / "whole")
    process = torchrun(tmp_path / "killed", wait=False)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        metrics = list((tmp_path / "killed").glob("*/metrics.jsonl"))
        if metrics and len(metrics[0].read_text().splitlines()) >= 2:
            break
        time.sleep(0.01)
    assert process.poll() is None, "the job ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    torchrun(tmp_path / "killed")
    [whole], [killed] = ([p for p in (tmp_path / name).iterdir() if p.is_dir()] for name in ("whole", "killed"))

    def records(run: Path) -> list[dict]:
        return [{k: v for k, v in json.loads(line).items() if k != "wall_time_s"}
                for line in (run / "metrics.jsonl").read_text().splitlines()]

    assert records(killed) == records(whole) and len(records(whole)) == 4
    final, reference = (torch.load(run / "checkpoint.pt", weights_only=True) for run in (killed, whole))
    for key, value in reference["model"].items():
        assert torch.equal(final["model"][key], value), key


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
