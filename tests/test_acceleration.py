"""The speed options of a run (trainer.amp, trainer.channels_last, trainer.compile) and bounded-memory evaluation."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from normda.acceleration import Acceleration
from normda.evaluate import evaluate
from normda.experiment import train
from normda.config_identity import config_id
from normda.run_folder import RunFolder


def summary_of(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


@pytest.mark.parametrize("options", [
    ["trainer.amp=true"],
    ["trainer.amp=true", "trainer.amp_dtype=float16"],
    ["trainer.channels_last=true"],
])
def test_speed_options_train_a_run(make_config, tmp_path, options):
    """Each option trains what full precision, contiguous memory trains: the same first loss within the option's
    precision (channels-last: the same arithmetic; bfloat16 or float16 autocast: within 2%)."""
    common = ("trainer.iterations=2", "trainer.eval_every=2", "data.samples_per_domain=16", "backbone=lenet")
    train(make_config(*common), tmp_path / "plain")
    train(make_config(*common, *options), tmp_path / "run")
    [plain], [fast] = RunFolder(tmp_path / "plain").read_metrics(), RunFolder(tmp_path / "run").read_metrics()
    tolerance = 0.02 if "trainer.amp=true" in options else 1e-4
    assert fast["train/loss"] == pytest.approx(plain["train/loss"], rel=tolerance)
    checkpoint = RunFolder(tmp_path / "run").load_checkpoint()
    assert "grad_scaler" in checkpoint
    float16 = "trainer.amp_dtype=float16" in options
    assert bool(checkpoint["grad_scaler"]) == float16  # the loss scaler runs for float16 only


def test_amp_runs_the_forward_pass_in_bfloat16_on_the_cpu(make_config):
    acceleration = Acceleration.from_config(make_config("trainer.amp=true").trainer, torch.device("cpu"))
    assert acceleration.amp_dtype == torch.bfloat16
    with acceleration.autocast():
        assert nn.Linear(3, 2)(torch.randn(4, 3)).dtype == torch.bfloat16
    assert not acceleration.grad_scaler().is_enabled()


def test_channels_last_moves_model_and_images(make_config):
    acceleration = Acceleration.from_config(make_config("trainer.channels_last=true").trainer, torch.device("cpu"))
    conv = nn.Conv2d(3, 4, 3)
    assert acceleration.prepare(conv) is conv
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert acceleration.inputs(torch.randn(2, 3, 5, 5)).is_contiguous(memory_format=torch.channels_last)
    assert acceleration.inputs(torch.randn(2, 3)).shape == (2, 3)  # features are left alone


def test_speed_options_other_than_precision_keep_the_config_id(make_config):
    base = config_id(make_config())
    assert config_id(make_config("trainer.channels_last=true", "trainer.compile=true")) == base
    assert config_id(make_config("trainer.amp=true")) != base


@pytest.mark.slow
def test_compiled_run_matches_the_eager_run(make_config, tmp_path):
    options = ["trainer.iterations=3", "trainer.eval_every=3", "norm=transnorm"]
    eager = train(make_config(*options), tmp_path / "eager")
    compiled = train(make_config(*options, "trainer.compile=true"), tmp_path / "compiled")
    assert abs(compiled["target_accuracy_last"] - eager["target_accuracy_last"]) <= 1.0


class Identity(nn.Module):
    def forward(self, x):
        return x, x


def test_evaluation_keeps_a_bounded_strided_sample_of_features():
    images = torch.eye(4).repeat(25, 1)  # 100 samples, 4 classes, each predicted correctly
    labels = torch.arange(4).repeat(25)
    loader = DataLoader(TensorDataset(images, labels), batch_size=16)
    result = evaluate(Identity(), loader, 4, torch.device("cpu"), keep_features=30)
    assert result.accuracy == 100.0 and result.samples == 100
    assert result.features.shape == (25, 4)  # every 4th sample: 0, 4, ..., 96
    assert torch.equal(result.labels, labels[::4])
    assert evaluate(Identity(), loader, 4, torch.device("cpu")).features is None
