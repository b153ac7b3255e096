"""The pipeline end to end on generated data: every norm x method trains, and a run folder holds what it should."""
from __future__ import annotations

import json

import pytest
import torch

import torchvision

from normda import normalization
from conftest import CONF
from normda.experiment import train
from normda.registry import node_settings
from normda.config_identity import config_id
from normda.run_folder import RunFolder
from normda.normalization import NORMALIZATIONS, TransNorm1d, TransNorm2d

NORMS = NORMALIZATIONS.names()
METHODS = sorted(path.stem for path in (CONF / "method").glob("*.yaml"))
#: layers whose behaviour depends on the method (per-domain statistics: with or without target batches)
DOMAIN_AWARE = ("autodial", "dsbn", "transnorm")
#: every norm with one method, in turn (each method with several norms), and the domain-aware norms with every method
PAIRS = sorted({(norm, METHODS[i % len(METHODS)]) for i, norm in enumerate(NORMS)}
               | {(norm, method) for norm in DOMAIN_AWARE for method in METHODS})


def test_the_pairs_cover_every_norm_and_every_method():
    assert {norm for norm, _ in PAIRS} == set(NORMS) and {method for _, method in PAIRS} == set(METHODS)
    assert all({n for n, m in PAIRS if m == method} - set(DOMAIN_AWARE) for method in METHODS)  # and a plain norm


@pytest.mark.parametrize("norm,method", PAIRS, ids=[f"{n}-{m}" for n, m in PAIRS])
def test_one_training_step_of_each_norm_and_method(make_config, tmp_path, norm, method):
    cfg = make_config(f"norm={norm}", f"method={method}", "trainer.iterations=1", "trainer.eval_every=1")
    summary = train(cfg, tmp_path / "run")
    folder = RunFolder(tmp_path / "run")
    records = folder.read_metrics()
    assert len(records) == 1 and records[0]["step"] == 1
    assert summary["target_accuracy_last"] == records[0]["target_accuracy"]  # the summary is the metrics' last line
    momentum = folder.load_checkpoint()["optimizer"]["state"]  # SGD keeps a momentum buffer once it has stepped
    assert momentum and all(torch.isfinite(state["momentum_buffer"]).all() for state in momentum.values())
    assert torch.isfinite(torch.tensor(records[0]["train/loss"]))
    diagnostic = {"dann": "train/domain_accuracy", "cdan": "train/domain_accuracy", "cdan_e": "train/target_entropy",
                  "mdd": "train/disparity_target"}.get(method)
    if diagnostic:
        assert torch.isfinite(torch.tensor(records[0][diagnostic]))


@pytest.mark.parametrize("norm", NORMS)
def test_every_norm_converts_a_torchvision_resnet_and_trains_it(make_config, norm):
    cfg = make_config(f"norm={norm}")
    model = normalization.convert(torchvision.models.resnet18(), norm, exclude=cfg.norm.exclude,
                                  **node_settings(cfg.norm, "exclude"))
    model.train()
    with normalization.domain_split(model, 2, 2):
        model(torch.randn(4, 3, 64, 64)).logsumexp(dim=1).mean().backward()
    first = next(model.parameters())  # the stem convolution's weight (its original, under WeightAlign)
    assert first.grad is not None and first.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(2, 3, 64, 64))).all()


def test_run_folder_contents(make_config, tmp_path):
    cfg = make_config("trainer.iterations=4", "trainer.eval_every=2")
    run_dir = tmp_path / "run"
    summary = train(cfg, run_dir)
    run = RunFolder(run_dir)
    assert run.done
    assert [record["step"] for record in run.read_metrics()] == [2, 4]
    written = json.loads(run.summary.read_text())
    assert written == json.loads(json.dumps(summary))
    for key in ("target_accuracy_last", "target_accuracy_best", "target_accuracy_best_step", "per_class_accuracy_last",
                "iterations", "wall_time_s", "config_id", "dataset_sizes", "versions"):
        assert key in written
    assert set(written["per_class_accuracy_last"]) == {"class_0", "class_1", "class_2", "class_3"}
    best = max(run.read_metrics(), key=lambda record: record["target_accuracy"])  # the first of equal ones
    assert (written["target_accuracy_best"], written["target_accuracy_best_step"]) == (best["target_accuracy"],
                                                                                       best["step"])
    assert "method:\n  name: cdan" in run.config.read_text() and "${" not in run.config.read_text()
    checkpoint = run.load_checkpoint()
    assert checkpoint["step"] == 4
    assert any(key.endswith("running_mean_source") for key in checkpoint["model"])


def test_finished_run_is_not_trained_again(make_config, tmp_path):
    cfg = make_config("trainer.iterations=2", "trainer.eval_every=2")
    first = train(cfg, tmp_path / "run")
    stamp = (tmp_path / "run" / "checkpoint.pt").stat().st_mtime_ns
    again = train(cfg, tmp_path / "run")
    assert again.pop("already_finished") is True and again == first
    assert (tmp_path / "run" / "checkpoint.pt").stat().st_mtime_ns == stamp


def test_interrupted_run_resumes_from_its_checkpoint(make_config, tmp_path):
    run_dir = tmp_path / "run"
    train(make_config("trainer.iterations=2", "trainer.eval_every=2"), run_dir)
    (run_dir / "done").unlink()  # as if it had been killed after its checkpoint at iteration 2
    summary = train(make_config("trainer.iterations=4", "trainer.eval_every=2"), run_dir)
    uninterrupted = train(make_config("trainer.iterations=4", "trainer.eval_every=2"), tmp_path / "whole")
    assert summary["target_accuracy_last"] == uninterrupted["target_accuracy_last"]
    resumed, whole = RunFolder(run_dir).read_metrics(), RunFolder(tmp_path / "whole").read_metrics()
    assert [record["step"] for record in resumed] == [2, 4]
    assert [record["train/loss"] for record in resumed] == [record["train/loss"] for record in whole]


def test_transnorm_reaches_backbone_and_bottleneck(make_config, tmp_path):
    from normda.experiment import build_model

    model, _ = build_model(make_config("norm=transnorm"), num_classes=4)
    assert sum(isinstance(m, TransNorm2d) for m in model.backbone.modules()) == 3  # DTN's three conv BNs
    assert sum(isinstance(m, TransNorm1d) for m in model.backbone.modules()) == 1  # DTN's fc BN
    assert isinstance(model.bottleneck[1], TransNorm1d)


def test_config_id_ignores_where_things_live_but_not_what_is_computed(make_config):
    base = config_id(make_config())
    assert config_id(make_config("trainer.output_dir=/elsewhere", "data.num_workers=3")) == base
    assert config_id(make_config("seed=1")) != base
    assert config_id(make_config("optim.optimizer.lr=0.1")) != base
