"""AdaBN's re-estimation and DAFT's conversion (norm_specs.md 2.2 and 2.6), and when the trainer runs them."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from normda import normalization
from normda.experiment import train
from normda.normalization.adabn import AdaBN, estimate_target_statistics
from normda.normalization.daft import DAFTConversion, batchnorm_statistics
from conftest import randomize_batchnorms


def loader_of(x: torch.Tensor, batch_size: int) -> DataLoader:
    return DataLoader(TensorDataset(x, torch.zeros(len(x), dtype=torch.long)), batch_size=batch_size)


# -- AdaBN -------------------------------------------------------------------------------------------------------------

def test_adabn_statistics_are_the_pooled_statistics_of_the_target_set():
    bn = nn.BatchNorm2d(3)
    target = torch.randn(50, 3, 4, 4) * torch.tensor([1.0, 2.0, 0.5]).view(1, 3, 1, 1) + 1.0
    estimate_target_statistics(nn.Sequential(bn), loader_of(target, 8), torch.device("cpu"))  # 6 x 8 + 2
    values = target.permute(1, 0, 2, 3).reshape(3, -1).double().numpy()
    np.testing.assert_allclose(bn.running_mean.numpy(), values.mean(axis=1), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(bn.running_var.numpy(), values.var(axis=1, ddof=1), rtol=1e-6)


def test_adabn_every_layer_gets_the_pooled_statistics_of_its_inputs():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5), nn.Flatten(),
                          nn.Linear(4 * 4 * 4, 5), nn.BatchNorm1d(5))
    model.train()
    inputs = {1: [], 6: []}
    hooks = [model[i].register_forward_pre_hook(lambda m, x, i=i: inputs[i].append(x[0].detach().clone()))
             for i in inputs]
    estimate_target_statistics(model, loader_of(torch.randn(30, 3, 6, 6), 7), torch.device("cpu"))
    for hook in hooks:
        hook.remove()
    conv_values = torch.cat(inputs[1]).transpose(0, 1).reshape(4, -1).double()
    torch.testing.assert_close(model[1].running_mean.double(), conv_values.mean(dim=1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model[1].running_var.double(), conv_values.var(dim=1), rtol=1e-5, atol=1e-6)
    fc_values = torch.cat(inputs[6]).double()  # the 2-sample last batch counts; dropout was off during the pass
    torch.testing.assert_close(model[6].running_var.double(), fc_values.var(dim=0), rtol=1e-5, atol=1e-6)
    assert model.training and model[3].training  # modes restored


def test_adabn_eval_on_a_single_batch_set_matches_train_mode_first_layer():
    bn = nn.BatchNorm2d(3)
    x = torch.randn(16, 3, 5, 5)
    AdaBN().before_evaluation(nn.Sequential(bn), loader_of(x, 16), torch.device("cpu"))
    m = 16 * 25
    train_output = nn.functional.batch_norm(x, None, None, bn.weight, bn.bias, training=True)
    # the stored variance is unbiased: eval differs from train mode by the m/(m-1) factor only
    scale = torch.sqrt(torch.tensor((1 - 1 / m)))
    torch.testing.assert_close(bn.eval()(x), train_output * scale, rtol=1e-4, atol=1e-5)


# -- DAFT --------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_daft_conversion_keeps_resnet50_eval_logits(dtype, tolerance):
    model = randomize_batchnorms(torchvision.models.resnet50()).eval().to(dtype)
    original = copy.deepcopy(model)
    data = loader_of(torch.randn(12, 3, 64, 64, dtype=dtype) * 1.5 + 0.2, 4)
    DAFTConversion().before_training(model, {"source": data}, torch.device("cpu"))
    assert not torch.allclose(model.bn1.running_mean, original.bn1.running_mean)
    x = torch.randn(3, 3, 64, 64, dtype=dtype)
    with torch.no_grad():
        converted, expected = model(x), original(x)
    scale = expected.abs().max().item()  # randomised statistics give logits in the thousands
    torch.testing.assert_close(converted, expected, rtol=0, atol=tolerance * scale)
    assert not model.training


def test_daft_statistics_are_batch_averages_of_means_and_unbiased_variances():
    bn = nn.BatchNorm2d(2)
    with torch.no_grad():
        bn.running_mean.fill_(0.5)
        bn.running_var.fill_(2.0)
        bn.weight.fill_(1.5)
        bn.bias.fill_(0.1)
    batches = [torch.randn(4, 2, 3, 3), torch.randn(4, 2, 3, 3) + 1, torch.randn(2, 2, 3, 3) * 3]
    (mean_t, var_t), = batchnorm_statistics(nn.Sequential(bn), [loader_of(torch.cat(batches), 4)],
                                            torch.device("cpu")).values()
    expected_mean = torch.stack([b.mean(dim=(0, 2, 3)) for b in batches]).mean(dim=0)
    expected_var = torch.stack([b.var(dim=(0, 2, 3), unbiased=True) for b in batches]).mean(dim=0)
    torch.testing.assert_close(mean_t.float(), expected_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(var_t.float(), expected_var, rtol=1e-5, atol=1e-6)
    DAFTConversion().before_training(nn.Sequential(bn), {"source": loader_of(torch.cat(batches), 4)},
                                     torch.device("cpu"))
    torch.testing.assert_close(bn.weight, 1.5 * torch.sqrt(expected_var + 1e-5) / torch.sqrt(torch.tensor(2 + 1e-5)))
    torch.testing.assert_close(bn.bias, 0.1 + 1.5 * (expected_mean - 0.5) / torch.sqrt(torch.tensor(2 + 1e-5)))
    torch.testing.assert_close(bn.running_var, expected_var)


def test_daft_right_after_conversion_train_mode_matches_the_original_up_to_m_over_m_minus_1():
    bn = randomize_batchnorms(nn.Sequential(nn.BatchNorm2d(3)))[0]
    original = copy.deepcopy(bn).eval()
    x = torch.randn(8, 3, 4, 4)
    DAFTConversion().before_training(nn.Sequential(bn), {"source": loader_of(x, 8)}, torch.device("cpu"))
    m = 8 * 16
    # (y_train - beta_t) = (y_0 - beta_t) sqrt((Sigma_t + eps) / (sigma_X^2 + eps)), sigma_X^2 = Sigma_t (m-1)/m
    sigma = x.var(dim=(0, 2, 3), unbiased=True)
    factor = torch.sqrt((sigma + 1e-5) / (sigma * (m - 1) / m + 1e-5)).view(1, -1, 1, 1)
    beta = bn.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(bn.train()(x) - beta, (original(x) - beta) * factor, rtol=1e-4, atol=1e-5)


def test_daft_leaves_newly_initialised_layers_alone(caplog):
    pretrained = randomize_batchnorms(nn.Sequential(nn.BatchNorm2d(3)))[0]
    fresh = nn.BatchNorm2d(3)
    model = nn.Sequential(pretrained, nn.Conv2d(3, 3, 1), fresh)
    before = copy.deepcopy(model)
    DAFTConversion().before_training(model, {"source": loader_of(torch.randn(8, 3, 4, 4), 4)}, torch.device("cpu"))
    assert not torch.equal(model[0].running_mean, before[0].running_mean)
    torch.testing.assert_close(model[2].state_dict(), before[2].state_dict(), rtol=0, atol=0)
    DAFTConversion().before_training(nn.Sequential(nn.BatchNorm1d(3)), {"source": loader_of(torch.randn(8, 3), 4)},
                                     torch.device("cpu"))
    assert "found no BatchNorm with pretrained statistics and converted nothing" in caplog.text


@pytest.mark.parametrize("stats_from,expected", [("source", ["source"]), ("target", ["target"]),
                                                 ("both", ["source", "target"])])
def test_daft_uses_the_chosen_data(monkeypatch, stats_from, expected):
    seen = []
    monkeypatch.setattr("normda.normalization.daft.batchnorm_statistics",
                        lambda model, loaders, device: seen.extend(loaders) or {})
    DAFTConversion(stats_from).before_training(nn.Sequential(), {"source": "source", "target": "target"}, None)
    assert seen == expected


# -- the trainer runs the hooks at the right moments ------------------------------------------------------------------

def test_trainer_converts_once_before_training_and_adapts_before_each_evaluation(make_config, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(DAFTConversion, "before_training", lambda self, model, loaders, device: calls.append(
        ("daft", sorted(loaders))))
    monkeypatch.setattr(AdaBN, "before_evaluation", lambda self, model, loader, device: calls.append("adabn"))
    train(make_config("norm=daft", "trainer.iterations=4", "trainer.eval_every=2"), tmp_path / "daft")
    assert calls == [("daft", ["source", "target"])]
    (tmp_path / "daft" / "done").unlink()
    train(make_config("norm=daft", "trainer.iterations=6", "trainer.eval_every=2"), tmp_path / "daft")
    assert calls == [("daft", ["source", "target"])]  # a resumed run is not converted again
    calls.clear()
    train(make_config("norm=adabn", "trainer.iterations=4", "trainer.eval_every=2"), tmp_path / "adabn")
    assert calls == ["adabn", "adabn"]


def test_autodial_alpha_trains_without_weight_decay(make_config, tmp_path):
    from normda.experiment import build_model
    from normda.optim import build_optimizer

    cfg = make_config("norm=autodial")
    model, _ = build_model(cfg, num_classes=4)
    optimizer, _ = build_optimizer(model.parameter_groups(cfg.optim.lr_mult), cfg.optim, cfg.trainer.iterations)
    alphas = {id(m.alpha) for m in model.modules() if isinstance(m, normalization.autodial.AutoDIALNorm)}
    assert len(alphas) == 5  # DTN's three convolution BatchNorms and its fc's, and the bottleneck's
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            if id(parameter) in alphas:
                assert group["weight_decay"] == 0.0
    assert any(group["weight_decay"] == 1e-3 for group in optimizer.param_groups)
