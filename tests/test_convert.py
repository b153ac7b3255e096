"""normalization.convert on real torchvision and timm models."""
from __future__ import annotations

import copy
import io

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from normda import normalization
from conftest import random_batchnorm, randomize_batchnorms
from normda.normalization import NormAct, TransNorm1d, TransNorm2d
from normda.errors import ConfigError


@pytest.fixture(scope="module")
def resnet50_pair():
    original = randomize_batchnorms(torchvision.models.resnet50()).eval()
    converted = normalization.convert(copy.deepcopy(original), "transnorm")
    return original, converted


def test_resnet50_has_53_batchnorms_all_replaced(resnet50_pair):
    original, converted = resnet50_pair
    batchnorms = {name for name, m in original.named_modules() if isinstance(m, nn.BatchNorm2d)}
    transnorms = {name for name, m in converted.named_modules() if isinstance(m, TransNorm2d)}
    assert len(batchnorms) == 53
    assert transnorms == batchnorms  # same places, stem BN and downsample BNs included
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in converted.modules())


def test_statistics_and_affine_carry_over_into_both_domains(resnet50_pair):
    original, converted = resnet50_pair
    layers = dict(converted.named_modules())
    for name, bn in original.named_modules():
        if isinstance(bn, nn.BatchNorm2d):
            tn = layers[name]
            torch.testing.assert_close(tn.weight, bn.weight, rtol=0, atol=0)
            torch.testing.assert_close(tn.bias, bn.bias, rtol=0, atol=0)
            for domain in ("source", "target"):
                torch.testing.assert_close(getattr(tn, f"running_mean_{domain}"), bn.running_mean, rtol=0, atol=0)
                torch.testing.assert_close(getattr(tn, f"running_var_{domain}"), bn.running_var, rtol=0, atol=0)


def test_converted_eval_layer_is_twice_batchnorm_when_domains_share_statistics(resnet50_pair):
    # identical source and target buffers give d = 0, alpha = 1: a freshly converted layer outputs 2 x BN (spec 2.5)
    original, converted = resnet50_pair
    x = torch.randn(2, 64, 8, 8)
    torch.testing.assert_close(converted.bn1.eval()(x), 2.0 * original.bn1.eval()(x))


@pytest.mark.parametrize("make", [lambda: torchvision.models.mobilenet_v2(),
                                  lambda: timm.create_model("efficientnet_lite0", pretrained=False)],
                         ids=["mobilenet_v2", "efficientnet_lite0"])
def test_preserve_function_keeps_the_eval_function_of_a_clipping_network(make):
    # ReLU6 after every BatchNorm: the official conversion's 2z is clipped, so the network's function changes; with
    # preserve_function the halved gamma/beta times (1 + alpha) = 2 (identical domain buffers) give back BN's output
    torch.manual_seed(0)
    original = randomize_batchnorms(make()).eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        expected = original(x)
        preserved = normalization.convert(copy.deepcopy(original), "transnorm", preserve_function=True).eval()(x)
        official = normalization.convert(copy.deepcopy(original), "transnorm").eval()(x)
    scale = expected.abs().max()
    assert (preserved - expected).abs().max() / scale < 1e-4
    assert (official - expected).abs().max() / scale > 0.1


def test_preserve_function_leaves_alpha_none_as_it_is():
    # alpha=none computes z already: nothing to halve
    bn = random_batchnorm().eval()
    layer = normalization.convert(copy.deepcopy(bn), "transnorm", alpha="none", preserve_function=True).eval()
    torch.testing.assert_close(layer.weight, bn.weight)
    x = torch.randn(4, 8, 5, 5)
    torch.testing.assert_close(layer(x), bn(x))


def test_state_dict_round_trip(resnet50_pair):
    _, converted = resnet50_pair
    converted.train()
    converted(torch.randn(4, 3, 64, 64))  # move the two domains' statistics apart
    buffer = io.BytesIO()
    torch.save(converted.state_dict(), buffer)
    buffer.seek(0)
    fresh = normalization.convert(torchvision.models.resnet50(), "transnorm")
    fresh.load_state_dict(torch.load(buffer, weights_only=True))  # strict: every key matches
    converted.eval(), fresh.eval()
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(fresh(x), converted(x))
    assert "layer1.0.bn1.running_mean_source" in fresh.state_dict()


def test_timm_fused_norm_activation_keeps_its_activation():
    model = randomize_batchnorms(timm.create_model("efficientnet_lite0", num_classes=0)).eval()
    original_stem = copy.deepcopy(model.bn1)
    normalization.convert(model, "transnorm")
    assert sum(isinstance(m, NormAct) for m in model.modules()) == 49
    assert isinstance(model.bn1.norm, TransNorm2d) and isinstance(model.bn1.act, nn.ReLU6)
    x = torch.randn(2, 32, 8, 8)
    expected = F.relu6(2.0 * F.batch_norm(x, original_stem.running_mean, original_stem.running_var,
                                          original_stem.weight, original_stem.bias, False, eps=original_stem.eps))
    torch.testing.assert_close(model.bn1.eval()(x), expected)
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 1280)


def test_bn_keeps_the_model_unchanged():
    model = torchvision.models.resnet18()
    layers = list(model.modules())
    assert normalization.convert(model, "bn") is model
    assert list(model.modules()) == layers


def test_exclude_patterns_keep_batchnorm():
    model = normalization.convert(torchvision.models.resnet18(), "transnorm", exclude=["bn1", "layer4.*"])
    assert isinstance(model.bn1, nn.BatchNorm2d)
    assert isinstance(model.layer4[0].bn1, nn.BatchNorm2d) and isinstance(model.layer4[0].downsample[1],
                                                                           nn.BatchNorm2d)
    assert isinstance(model.layer1[0].bn1, TransNorm2d)


def test_bottleneck_batchnorm1d_becomes_transnorm1d():
    bottleneck = nn.Sequential(nn.Linear(8, 4), nn.BatchNorm1d(4), nn.ReLU())
    normalization.convert(bottleneck, "transnorm")
    assert isinstance(bottleneck[1], TransNorm1d)
    assert torch.all(bottleneck[1].weight == 1)  # gamma copied from the BatchNorm, not the official U(0, 1)


def test_a_batchnorm_itself_is_returned_converted():
    assert isinstance(normalization.convert(nn.BatchNorm2d(3), "transnorm"), TransNorm2d)


def test_unknown_name_and_option_are_config_errors():
    with pytest.raises(ConfigError, match="unknown norm=foo: choose one of adabn, autodial, bgn, bn"):
        normalization.convert(nn.BatchNorm2d(3), "foo")
    with pytest.raises(ConfigError, match="norm=transnorm has no setting colour .its settings: alpha, distance"):
        normalization.convert(nn.BatchNorm2d(3), "transnorm", colour="red")


@pytest.mark.parametrize("norm", ["transnorm", "dsbn", "autodial", "bn_wa", "wa", "gn_wa", "sn", "bgn"])
def test_converting_twice_changes_nothing(norm):
    """A converted model converted again with the same option has the same layers, parameters and outputs."""
    torch.manual_seed(0)
    model = normalization.convert(randomize_batchnorms(torchvision.models.resnet18()), norm)
    once = {name: type(module) for name, module in model.named_modules()}
    state = copy.deepcopy(model.state_dict())
    normalization.convert(model, norm)
    assert {name: type(module) for name, module in model.named_modules()} == once
    assert model.state_dict().keys() == state.keys()
    x = torch.randn(4, 3, 64, 64)
    model.eval()
    reference = normalization.convert(randomize_batchnorms(torchvision.models.resnet18()), norm).eval()
    reference.load_state_dict(state)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))


@pytest.mark.parametrize("norm", ["transnorm", "dsbn", "autodial", "bgn", "sn", "gn", "adabn"])
def test_a_syncbatchnorm_model_converts_as_its_batchnorm_twin(norm):
    """torch's SyncBatchNorm.convert_sync_batchnorm model converts to the same layers' function as the BatchNorm one:
    the same outputs in training (one process) and in evaluation."""
    plain = randomize_batchnorms(torchvision.models.resnet18())
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(plain))
    models = [normalization.convert(model, norm) for model in (plain, synced)]
    x = torch.randn(4, 3, 64, 64)
    for training in (True, False):
        outputs = []
        for model in models:
            model.train(training)
            with normalization.domain_split(model, 2, 2), torch.no_grad():
                outputs.append(model(x))
        torch.testing.assert_close(outputs[1], outputs[0])


@pytest.mark.parametrize("norm", ["transnorm", "dsbn", "autodial", "bgn", "sn", "gn", "in", "ln", "wa"])
def test_a_frozen_batchnorm_stays_frozen(norm):
    """A BatchNorm whose gamma/beta do not train, or that is kept in eval mode, is converted with the same freezing."""
    frozen, in_eval = random_batchnorm(32, seed=1), random_batchnorm(32, seed=2)
    frozen.weight.requires_grad_(False)
    frozen.bias.requires_grad_(False)
    in_eval.eval()
    model = normalization.convert(nn.Sequential(frozen, in_eval, random_batchnorm(32, seed=3)), norm)
    affine = {index: [p for name, p in layer.named_parameters() if name.rpartition(".")[2] in ("weight", "bias")]
              for index, layer in enumerate(model)}
    assert affine[0] and not any(p.requires_grad for p in affine[0])
    assert all(p.requires_grad for p in affine[1] + affine[2])
    assert [layer.training for layer in model] == [True, False, True]


@pytest.mark.parametrize("norm,settings", [("transnorm", {"alpha": "none"}), ("autodial", {}), ("dsbn", {}),
                                           ("adabn", {})])
def test_a_batchnorm_without_running_statistics_keeps_using_batch_statistics(norm, settings):
    """``track_running_stats=False``: the converted layer keeps no running statistics and, as the BatchNorm, evaluates
    with the batch's own (TransNorm with alpha=none and AutoDIAL are then that BatchNorm in eval mode, after training
    steps too)."""
    bn = random_batchnorm(8, seed=4)
    untracked = nn.BatchNorm2d(8, track_running_stats=False)
    untracked.load_state_dict({"weight": bn.weight, "bias": bn.bias})
    model = nn.Sequential(copy.deepcopy(untracked))
    normalization.convert(model, norm, **settings)
    assert not [name for name, _ in model.named_buffers() if "running" in name]
    model.train()
    with normalization.domain_split(model, 4, 4), torch.no_grad():
        model(torch.randn(8, 8, 5, 5))
    x = torch.randn(6, 8, 5, 5) * 3 + 2
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), untracked.eval()(x))


def test_transnorm_without_running_statistics_scales_by_the_mean_alpha():
    """With no statistics of the other domain, alpha is 1 on every channel (its mean under Eq. 6): y = 2 BN(x)."""
    untracked = nn.BatchNorm2d(8, track_running_stats=False)
    model = normalization.convert(nn.Sequential(copy.deepcopy(untracked)), "transnorm")
    x = torch.randn(6, 8, 5, 5) * 3 + 2
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), 2 * untracked.eval()(x))
        model.train()
        with normalization.domain_split(model, 6, 0):  # one domain in training too
            torch.testing.assert_close(model(x), 2 * untracked.train()(x))
