from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

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
