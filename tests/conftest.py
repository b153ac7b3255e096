from __future__ import annotations

import os
import subprocess
import sys
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
sys.path.insert(0, str(ROOT))

from dann_cdan.run import register_resolvers  # noqa: E402

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


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python train.py <args>`` in ``cwd`` (W&B disabled unless ``env`` says otherwise)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "0", **(env or {})}
    env = {key: value for key, value in env.items() if value != ""}
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
