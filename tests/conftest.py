from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import runpy
import subprocess
import sys
from unittest import mock
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SHARED_DATA = ROOT.parent / "shared" / "data"

os.environ.setdefault("WANDB_MODE", "disabled")
if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest -n 2: one core per worker, not two threads each on both cores
    torch.set_num_threads(1)

from normda.resolvers import register_resolvers  # noqa: E402

register_resolvers()

#: what every test run uses unless it says otherwise: no W&B, generated data, tiny lengths, no progress bar
FAST = ["logger=none", "data=synthetic", "trainer.progress=false"]


def compose_config(overrides: list[str], hydra_node: bool = False) -> DictConfig:
    """The config ``python train.py <overrides>`` would run with."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        return compose("config", overrides=overrides, return_hydra_config=hydra_node)


@pytest.fixture
def make_config(tmp_path):
    def make(*overrides: str) -> DictConfig:
        return compose_config([*FAST, f"trainer.output_dir={tmp_path}", *overrides])

    return make


def randomize_batchnorm(bn: nn.modules.batchnorm._BatchNorm, generator: torch.Generator):
    """Give ``bn`` distinct statistics and affine parameters, as a pretrained layer has."""
    n = bn.num_features
    with torch.no_grad():
        bn.weight.copy_(torch.rand(n, generator=generator) + 0.5)
        bn.bias.copy_(torch.randn(n, generator=generator))
        bn.running_mean.copy_(torch.randn(n, generator=generator))
        bn.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
    return bn


def random_batchnorm(channels: int = 8, seed: int = 0) -> nn.BatchNorm2d:
    return randomize_batchnorm(nn.BatchNorm2d(channels), torch.Generator().manual_seed(seed))


def randomize_batchnorms(model: nn.Module) -> nn.Module:
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            randomize_batchnorm(module, generator)
    return model


def load_script(name: str):
    """``scripts/<name>.py`` as a module, so that a test calls its ``main(argv)`` in this process."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_in_process(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python train.py <args>`` run in this process (``runpy``, as the interpreter runs a script, without starting
    one): its exit status and what it printed, as :func:`run_cli` returns them."""
    from normda.cli import Started
    from normda.study_resume import StartedStudy

    GlobalHydra.instance().clear()
    stdout, stderr = io.StringIO(), io.StringIO()
    previous = os.getcwd()
    os.chdir(cwd)
    try:
        with mock.patch.object(sys, "argv", [str(ROOT / "train.py"), *args]), contextlib.redirect_stdout(stdout), \
                contextlib.redirect_stderr(stderr), mock.patch.dict(os.environ, {"HYDRA_FULL_ERROR": "1"}):
            try:
                runpy.run_path(str(ROOT / "train.py"), run_name="__main__")
                status = 0
            except SystemExit as exit_:
                status = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        os.chdir(previous)
        GlobalHydra.instance().clear()
        Started.value = False
        StartedStudy.value = None
    return subprocess.CompletedProcess(["train.py", *args], status, stdout.getvalue(), stderr.getvalue())


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python train.py <args>`` in ``cwd`` (W&B disabled unless ``env`` says otherwise)."""
    env = {**os.environ, "WANDB_MODE": "disabled", **(env or {})}
    env = {key: value for key, value in env.items() if value != ""}
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
