"""MDD's objective, DAFT's conversion and recipe, against independent computations; the classifier shapes they need."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from conftest import compose_config
from normda.experiment import build_model, check_config, train
from normda.normalization.daft import DAFTConversion
from normda.dann_cdan.mdd import MDD
from normda.dann_cdan import StepOutputs
from normda.model import ImageClassifier
from normda.optim import Cosine, build_optimizer, lr_schedule
from normda.registry import check_settings
from normda.run_folder import RunFolder
from normda.trainer import training_length
from normda.errors import ConfigError


def outputs(n_source=3, n_target=4, features=6, classes=3, seed=0) -> StepOutputs:
    generator = torch.Generator().manual_seed(seed)
    return StepOutputs(
        logits_source=torch.randn(n_source, classes, generator=generator),
        features_source=torch.randn(n_source, features, generator=generator, requires_grad=True),
        labels_source=torch.zeros(n_source, dtype=torch.long),
        logits_target=torch.randn(n_target, classes, generator=generator),
        features_target=torch.randn(n_target, features, generator=generator, requires_grad=True),
    )


# -- MDD ---------------------------------------------------------------------------------------------------------------

def test_mdd_objective_by_hand():
    torch.manual_seed(0)
    method = MDD(6, 3, margin=4.0, trade_off=0.5).eval()  # eval: the adversarial head's dropout off
    out = outputs()
    terms = method(out, step=500)
    adversarial = method.adversarial_head(torch.cat([out.features_source, out.features_target]))
    source_hat = out.logits_source.argmax(1)
    target_hat = out.logits_target.argmax(1)
    probabilities_s = adversarial[:3].softmax(1)
    probabilities_t = adversarial[3:].softmax(1)
    expected_source = 4.0 * -torch.log(probabilities_s[torch.arange(3), source_hat]).mean()
    expected_target = -torch.log(1 - probabilities_t[torch.arange(4), target_hat] + 1e-6).mean()
    torch.testing.assert_close(terms["disparity_source"], expected_source.detach())
    torch.testing.assert_close(terms["disparity_target"], expected_target.detach())
    torch.testing.assert_close(terms["loss"], 0.5 * (expected_source + expected_target))
    assert terms["grl_coefficient"] == pytest.approx(0.1 * (2 / (1 + math.exp(-0.5)) - 1))


def test_mdd_minmax_signs():
    """The adversarial head descends the objective (agree on source, disagree on target); the features get its
    reversed gradient, scaled by the GRL coefficient."""
    torch.manual_seed(0)
    method = MDD(6, 3).eval()
    out = outputs()
    method(out, step=10**6)["loss"].backward()  # coefficient -> 0.1
    feature_gradient = out.features_target.grad.clone()
    features = torch.cat([out.features_source, out.features_target]).detach().requires_grad_(True)
    adversarial = method.adversarial_head(features)
    loss = 4.0 * F.cross_entropy(adversarial[:3], out.logits_source.argmax(1)) + F.nll_loss(
        torch.log((1 - adversarial[3:].softmax(1)).add(1e-6).clamp(max=1)), out.logits_target.argmax(1))
    loss.backward()
    torch.testing.assert_close(feature_gradient, -0.1 * features.grad[3:], rtol=1e-4, atol=1e-7)


def test_mdd_under_tllib_builds_the_mdd_classifier(make_config):
    model, _ = build_model(make_config("method=mdd"), num_classes=4)
    linear, norm, relu, dropout = model.bottleneck
    assert linear.out_features == 1024 and dropout.p == 0.5
    assert torch.all(linear.bias == 0.1) and abs(linear.weight.std().item() - 0.005) < 5e-4
    assert [type(m) for m in model.head] == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    assert model.head[0].out_features == 1024


# -- DAFT --------------------------------------------------------------------------------------------------------------

def test_daft_is_one_conversion_and_one_recipe_that_combine_with_any_method(make_config, tmp_path, monkeypatch):
    """norm=daft converts the BatchNorms before training; protocol=daft trains with DAFT's recipe; the method stays
    the user's choice (the norm is never switched behind their back)."""
    calls = []
    monkeypatch.setattr(DAFTConversion, "before_training",
                        lambda self, model, loaders, device: calls.append((self.stats_from, sorted(loaders))))
    cfg = make_config("norm=daft", "norm.stats_from=both", "protocol=daft", "method=dann", "trainer.epochs=null",
                      "data.batch_size=8", "trainer.iterations=2", "trainer.eval_every=2")
    assert (cfg.norm.name, cfg.method.name, cfg.protocol) == ("daft", "dann", "daft")
    train(cfg, tmp_path / "run")
    assert calls == [("both", ["source", "target"])]
    assert "train/domain_accuracy" in RunFolder(tmp_path / "run").read_metrics()[0]  # DANN's term was trained
    assert make_config("protocol=daft").norm.name == "transnorm"  # the protocol does not choose the norm


def test_daft_recipe_linear_zero_head_own_head_rate_and_cosine(make_config, tmp_path):
    """The paper's numbers: a zero linear head on the features at its own absolute rate eta_w (1.0) beside eta_theta,
    SGD with momentum 0.9 and no weight decay, cosine annealing, batch 64, 50 epochs, source-validation stopping."""
    cfg = make_config("norm=daft", "protocol=daft", "method=source_only", "optim.optimizer.lr=0.003",
                      "data.batch_size=8", "data.samples_per_domain=40", "trainer.epochs=2")
    model, _ = build_model(cfg, num_classes=4)
    assert isinstance(model.bottleneck, nn.Identity)  # the head sits directly on the pretrained features
    assert torch.all(model.head.weight == 0) and torch.all(model.head.bias == 0)
    assert cfg.optim.lr_schedule.kind == "cosine" and cfg.optim.optimizer.weight_decay == 0.0
    assert not cfg.optim.optimizer.nesterov and cfg.optim.optimizer.momentum == 0.9
    defaults = compose_config(["protocol=daft"])
    assert (defaults.data.batch_size, defaults.trainer.epochs, defaults.optim.head_lr) == (64, 50, 1.0)
    assert (defaults.data.source_val_fraction, defaults.report.selection) == (0.1, "source_val")
    train(cfg, tmp_path / "run")
    metrics = RunFolder(tmp_path / "run").read_metrics()
    # 40 source images, 4 held out: 36 // 8 = 4 iterations per epoch, one evaluation after each of the 2 epochs
    assert [m["step"] for m in metrics] == [4, 8]
    first, last = metrics
    assert first["lr/backbone"] == pytest.approx(0.003 * 0.5 * (1 + math.cos(math.pi * 4 / 8)))
    assert first["lr/head"] == pytest.approx(1.0 * 0.5 * (1 + math.cos(math.pi * 4 / 8)))  # eta_w, not 10 eta_theta
    assert last["lr/head"] == pytest.approx(0.0, abs=1e-12)  # the cosine reaches 0 at the run's last iteration


def test_daft_multi_layer_head_keeps_random_initialisation():
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(12, 8))
    backbone.out_features = 8
    linear = ImageClassifier(backbone, 5, bottleneck_dim=None, head_weight_std=0.0)
    layered = ImageClassifier(backbone, 5, bottleneck_dim=None, head_hidden=16, head_weight_std=0.0)
    assert torch.all(linear.head.weight == 0)
    assert all(layer.weight.abs().sum() > 0 for layer in layered.head if isinstance(layer, nn.Linear))


def test_training_length_in_epochs():
    by_iterations = OmegaConf.create({"iterations": 100, "eval_every": 10, "epochs": None, "epoch_of": "source"})
    assert training_length(by_iterations, 1000, 4000, 32) == (100, 10)
    by_epochs = OmegaConf.create({"iterations": 100, "eval_every": 10, "epochs": 3, "epoch_of": "source"})
    assert training_length(by_epochs, 1000, 4000, 32) == (3 * 31, 31)  # 1000 // 32 full batches per epoch
    assert training_length(by_epochs, 1000, 4000, 32, world_size=2) == (3 * 15, 15)
    by_epochs.epoch_of = "larger"  # the CDAN digits code: max(len(source), len(target)) batches an epoch
    assert training_length(by_epochs, 1000, 4000, 32) == (3 * 125, 125)
    assert training_length(by_epochs, 5000, 4000, 32) == (3 * 156, 156)


def test_schedules():
    cosine = Cosine(100)
    assert [cosine(i) for i in (0, 50, 100, 150)] == pytest.approx([1.0, 0.5, 0.0, 0.0])
    inverse = lr_schedule("inverse_decay", gamma=0.001, power=0.75)
    assert inverse(1000) == pytest.approx(2 ** -0.75)
    with pytest.raises(ConfigError, match=r"optim.lr_schedule.kind='step' \(did you mean multistep\?\): give one "
                                          r"of inverse_decay, cosine, multistep"):
        check_settings(lr_schedule, {"kind": "step"}, "optim.lr_schedule")


def test_the_cdan_digits_schedule_steps_the_network_only():
    # train_svhnmnist.py: 10 epochs; before epochs 3, 6 and 9 the network's lr is multiplied by 0.3, the
    # discriminator's never. With 7 iterations an epoch: epoch e starts at iteration 7 (e - 1).
    cfg = OmegaConf.create({"optimizer": {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.01},
                            "lr_schedule": {"_target_": "normda.optim.lr_schedule", "kind": "multistep",
                                            "milestones": [0.2, 0.5, 0.8], "factor": 0.3},
                            "unscheduled": ["method"]})
    network, discriminator = nn.Linear(2, 2), nn.Linear(2, 1)
    optimizer, scheduler = build_optimizer(
        [{"name": "backbone", "params": list(network.parameters()), "lr_mult": 1.0},
         {"name": "method", "params": list(discriminator.parameters()), "lr_mult": 1.0}], cfg, iterations=70)
    rates = {}
    for step in range(70):
        if step % 7 == 0:
            rates[step // 7 + 1] = [group["lr"] for group in optimizer.param_groups]
        optimizer.step()
        scheduler.step()
    expected = {1: 0.01, 2: 0.01, 3: 0.003, 4: 0.003, 5: 0.003, 6: 0.0009, 7: 0.0009, 8: 0.0009, 9: 0.00027,
                10: 0.00027}
    assert {epoch: pytest.approx(pair) for epoch, pair in rates.items()} == {
        epoch: [rate, 0.01] for epoch, rate in expected.items()}


# -- the classifier's options ------------------------------------------------------------------------------------------

def test_classifier_options():
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(12, 8))
    backbone.out_features = 8
    direct = ImageClassifier(backbone, 5, bottleneck_dim=None)
    logits, features = direct(torch.randn(2, 3, 2, 2))
    assert features.shape == (2, 8) and logits.shape == (2, 5) and isinstance(direct.bottleneck, nn.Identity)
    official = ImageClassifier(backbone, 5, bottleneck_dim=256, bottleneck_weight_std=0.005, bottleneck_bias=0.0,
                               head_weight_std=0.01)
    assert torch.all(official.bottleneck[0].bias == 0) and abs(official.head.weight.std().item() - 0.01) < 2e-3


def test_official_transnorm_bottleneck_gamma_is_uniform(make_config):
    torch.manual_seed(0)
    model, _ = build_model(make_config("protocol=transnorm", "data=synthetic", "model.bottleneck_dim=512"), 4)
    gamma = model.bottleneck[1].weight
    assert 0 <= gamma.min() and gamma.max() <= 1 and gamma.std() > 0.2
    with pytest.raises(ConfigError, match="model.bottleneck_gamma_init='normal'"):  # checked once, with the schema
        check_config(make_config("model.bottleneck_gamma_init=normal"))
