"""BGN, Switchable Norm, GN/IN/LN and WeightAlign: invariants and equivalences of norm_specs.md sections 2.7-2.10
and 3, against torch's own functional implementations."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from normda import normalization
from normda.experiment import build_model
from conftest import random_batchnorm
from normda.normalization.bgn import BatchGroupNorm
from normda.normalization.standard import InstanceNorm
from normda.normalization.switchable import SwitchNorm
from normda.normalization.weight_align import ChannelAffine, WeightAlignment, align_convolutions
from normda.errors import BatchTooSmallError, ConfigError


def maps(n=6, c=8, size=5, seed=0):
    return torch.randn(n, c, size, size, generator=torch.Generator().manual_seed(seed)) * 2 + 0.3


# -- Batch Group Normalization ----------------------------------------------------------------------------------------

def test_bgn_channel_mode_with_g_equal_c_is_batchnorm_buffers_too():
    bn = random_batchnorm()
    layer = normalization.convert(nn.Sequential(random_batchnorm()), "bgn", groups=8, mode="channel")[0]
    reference = nn.BatchNorm2d(8)
    reference.load_state_dict(bn.state_dict())
    layer.load_state_dict({"weight": bn.weight, "bias": bn.bias, "running_mean": bn.running_mean,
                           "running_var": bn.running_var, "num_batches_tracked": bn.num_batches_tracked})
    x = maps()
    torch.testing.assert_close(layer(x), reference(x))
    torch.testing.assert_close(layer.running_mean, reference.running_mean)
    torch.testing.assert_close(layer.running_var, reference.running_var)
    layer.eval(), reference.eval()
    torch.testing.assert_close(layer(x), reference(x))


def test_bgn_one_group_normalises_over_everything_and_groups_have_zero_mean_unit_variance():
    x = maps()
    one = BatchGroupNorm(8, 1)
    torch.testing.assert_close(one(x), (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-5))
    layer = BatchGroupNorm(8, 4)
    grouped = layer(x).reshape(6, 4, -1).transpose(0, 1).reshape(4, -1)
    torch.testing.assert_close(grouped.mean(dim=1), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(grouped.var(dim=1, unbiased=False), torch.ones(4), atol=1e-4, rtol=0)


def test_bgn_flat_groups_can_cut_channels_and_pool_pretrained_statistics():
    bn = random_batchnorm(channels=4)
    layer = normalization.convert(nn.Sequential(bn), "bgn", groups=8)[0]  # two groups per channel
    torch.testing.assert_close(layer.running_mean, bn.running_mean.repeat_interleave(2))
    torch.testing.assert_close(layer.running_var, bn.running_var.repeat_interleave(2))
    pairs = normalization.convert(nn.Sequential(random_batchnorm(channels=4)), "bgn", groups=2)[0]
    original = random_batchnorm(channels=4)
    expected_mean = original.running_mean.view(2, 2).mean(dim=1)
    second = (original.running_var + original.running_mean**2).view(2, 2).mean(dim=1)
    torch.testing.assert_close(pairs.running_mean, expected_mean)
    torch.testing.assert_close(pairs.running_var, second - expected_mean**2)


def test_bgn_depends_on_the_batch():
    layer = BatchGroupNorm(8, 4)
    x = maps()
    other = x.clone()
    other[1:] += 3.0
    assert not torch.allclose(layer(x)[0], layer(other)[0])


def test_bgn_bad_groups_and_sizes_are_one_line_errors():
    model = nn.Sequential(nn.Conv2d(3, 6, 1), nn.BatchNorm2d(6))
    normalization.convert(model, "bgn", groups=4)
    with pytest.raises(ConfigError, match=r"BGN at 1 cannot split its 6 values per sample \(6, 1, 1\) into 4"):
        model(torch.randn(2, 3, 1, 1))
    with pytest.raises(ConfigError, match="cannot split the 6 channels of 1 into 4 groups"):
        normalization.convert(nn.Sequential(nn.Conv2d(3, 6, 1), nn.BatchNorm2d(6)), "bgn", groups=4, mode="channel")
    cutting = BatchGroupNorm(2, 8)
    cutting(torch.randn(4, 2, 4, 4))
    cutting.eval()
    with pytest.raises(ConfigError, match=r"statistics belong to \(4, 4\) maps, not \(8, 8\)"):
        cutting(torch.randn(4, 2, 8, 8))
    with pytest.raises(BatchTooSmallError, match="raise data.batch_size or lower norm.groups"):
        BatchGroupNorm(4, 4)(torch.randn(1, 4))


# -- Switchable Normalization -----------------------------------------------------------------------------------------

def one_hot(layer: SwitchNorm, index: int) -> SwitchNorm:
    with torch.no_grad():
        for ratio in (layer.mean_weight, layer.var_weight):
            ratio.fill_(-50.0)
            ratio[index] = 50.0
    return layer


def test_sn_exact_mode_with_one_hot_ratios_is_in_ln_and_bn():
    x = maps()
    references = {0: F.instance_norm(x), 1: F.group_norm(x, 1), 2: F.batch_norm(x, None, None, training=True)}
    for index, expected in references.items():
        torch.testing.assert_close(one_hot(SwitchNorm(8), index)(x), expected, rtol=1e-5, atol=1e-5)
    bn = random_batchnorm()
    layer = one_hot(normalization.convert(nn.Sequential(bn), "sn")[0], 2).eval()
    torch.testing.assert_close(layer(x), bn.eval()(x), rtol=1e-5, atol=1e-5)  # copied running statistics


def test_sn_official_mode_adds_the_unbiased_offsets():
    x = maps(size=3)
    layer = one_hot(SwitchNorm(8, variance_mode="official"), 2)
    var_in = x.reshape(6, 8, -1).var(dim=2, unbiased=False)
    offset = var_in.mean(dim=0) / (9 - 1)  # mean over the batch of the biased IN variance / (L - 1)
    var_bn = x.var(dim=(0, 2, 3), unbiased=False) + offset
    expected = (x - x.mean(dim=(0, 2, 3)).view(1, -1, 1, 1)) / torch.sqrt(var_bn.view(1, -1, 1, 1) + 1e-5)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_sn_ratios_start_at_a_third_sum_to_one_and_learn():
    layer = SwitchNorm(8)
    torch.testing.assert_close(torch.softmax(layer.mean_weight, 0), torch.full((3,), 1 / 3))
    layer(maps()).pow(2).sum().backward()
    assert layer.mean_weight.grad.abs().sum() > 0 and layer.var_weight.grad.abs().sum() > 0
    assert SwitchNorm(8, using_bn=False).normalizers == ["in", "ln"]
    assert SwitchNorm(8, one_d=True).normalizers == ["ln", "bn"]
    bn_dominant = SwitchNorm(8, init_ratio="bn_dominant")
    assert torch.softmax(bn_dominant.mean_weight, 0)[2] > 0.99


def test_sn_one_d_features_and_errors():
    features = torch.randn(6, 8)
    layer = one_hot(SwitchNorm(8, one_d=True), 0)
    torch.testing.assert_close(layer(features), F.layer_norm(features, (8,)), rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="1x1 maps, where the official unbiased IN variance is undefined"):
        SwitchNorm(8, variance_mode="official")(torch.randn(4, 8, 1, 1))
    SwitchNorm(8)(torch.randn(4, 8, 1, 1))  # exact mode is defined there
    with pytest.raises(BatchTooSmallError, match="set norm.using_bn=false"):
        SwitchNorm(8)(torch.randn(1, 8, 3, 3))
    SwitchNorm(8, using_bn=False)(torch.randn(1, 8, 3, 3))


def test_bgn_with_more_groups_than_bottleneck_features_is_batchnorm_there(make_config):
    """Table 7's G = 512 on Office-31 (D->A, W->A, W->D): the ResNet's maps keep 512 groups; the 256-wide bottleneck
    gets one group per feature, which computes what its BatchNorm1d computes."""
    cfg = make_config("norm=bgn", "data=office31", "data.source=D", "data.target=A", "backbone=resnet50",
                      "backbone.pretrained=false")
    assert cfg.norm.groups == 512
    model, _ = build_model(cfg, num_classes=31)
    bottleneck = model.bottleneck[1]
    assert bottleneck.groups == 256 and model.backbone.bn1.groups == 512
    reference = nn.BatchNorm1d(256)
    reference.load_state_dict({key: value for key, value in model.bottleneck[1].state_dict().items()
                               if key != "_extra_state"})
    features = torch.randn(6, 256)
    torch.testing.assert_close(bottleneck.train()(features), reference.train()(features))


def test_bgn_trained_size_survives_a_state_dict_round_trip():
    cutting = BatchGroupNorm(2, 8)  # 8 groups of 2 channels' 4x4 maps: groups cut through channels
    cutting.train()(torch.randn(4, 2, 4, 4))
    restored = BatchGroupNorm(2, 8)
    restored.load_state_dict(cutting.state_dict())
    assert restored.trained_size == (4, 4)
    restored.eval()(torch.randn(1, 2, 4, 4))
    with pytest.raises(ConfigError, match=r"belong to \(4, 4\) maps, not \(2, 8\)"):
        restored(torch.randn(1, 2, 2, 8))  # as many values per sample, another layout


def test_sn_running_averages_follow_the_official_momenta():
    """A converted model's SN layers update their BN running statistics as the official layers: weight 0.1 of the new
    batch over maps (SwitchNorm2d's momentum 0.9), 0.003 over (N, C) features (SwitchNorm1d's momentum 0.997)."""
    model = normalization.convert(nn.Sequential(random_batchnorm(4), nn.Flatten(), nn.BatchNorm1d(36)), "sn")
    maps_layer, features_layer = model[0], model[2]
    assert (maps_layer.momentum, features_layer.momentum) == (0.1, 0.003)
    start = features_layer.running_mean.clone()
    x = torch.randn(5, 4, 3, 3)
    model.train()(x)
    features = maps_layer(x).flatten(1)
    torch.testing.assert_close(features_layer.running_mean, 0.997 * start + 0.003 * features.mean(dim=0))


# -- GN, IN, LN --------------------------------------------------------------------------------------------------------

def test_group_norm_extremes_are_layer_and_instance_norm():
    x = maps()
    bn = random_batchnorm()
    gn_one = normalization.convert(nn.Sequential(random_batchnorm()), "gn", groups=1)[0]
    ln = normalization.convert(nn.Sequential(random_batchnorm()), "ln")[0]
    gn_all = normalization.convert(nn.Sequential(random_batchnorm()), "gn", groups=8)[0]
    instance = normalization.convert(nn.Sequential(random_batchnorm()), "in")[0]
    torch.testing.assert_close(gn_one(x), ln(x))
    torch.testing.assert_close(gn_all(x), instance(x))
    affine = bn.weight.view(1, -1, 1, 1), bn.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(ln(x), F.layer_norm(x, x.shape[1:]) * affine[0] + affine[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(instance(x), F.instance_norm(x) * affine[0] + affine[1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["gn", "in", "ln", "wa"])
def test_batch_independent_normalizations(name):
    model = nn.Sequential(nn.Conv2d(3, 32, 3), nn.BatchNorm2d(32), nn.ReLU(), nn.Conv2d(32, 32, 3),
                          nn.BatchNorm2d(32))
    normalization.convert(model, name)
    x = torch.randn(4, 3, 8, 8)
    other = x.clone()
    other[1:] = 5 * torch.randn(3, 3, 8, 8) + 2
    torch.testing.assert_close(model(x)[0], model(other)[0])
    model.eval()
    torch.testing.assert_close(model(x)[0], model(other)[0])


def test_instance_norm_refusals_name_the_layer():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 4), nn.BatchNorm1d(4))
    with pytest.raises(ConfigError, match=r"norm=in cannot replace 4 \(BatchNorm1d\).*norm.exclude=\[BatchNorm1d\]"):
        normalization.convert(model, "in")
    normalization.convert(model, "in", exclude=["BatchNorm1d"])
    with pytest.raises(BatchTooSmallError, match=r"InstanceNorm at 1 got input of shape \(2, 4, 1, 1\)"):
        model(torch.randn(2, 3, 1, 1))
    assert isinstance(model[1], InstanceNorm) and isinstance(model[4], nn.BatchNorm1d)
    with pytest.raises(ConfigError, match="cannot split the 4 channels of 1 into 32 equal groups"):
        normalization.convert(nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)), "gn")


# -- WeightAlign -------------------------------------------------------------------------------------------------------

def test_weight_align_filter_moments_and_invariance():
    conv = nn.Conv2d(6, 5, 3)
    align_convolutions(conv, eps=0.0)  # Eq. 10 exactly: the invariance holds up to the guard eps otherwise
    with torch.no_grad():
        conv.parametrizations.weight[0].gamma.copy_(torch.tensor([0.5, 1.0, 1.5, 2.0, 3.0]))
    filters = conv.weight.flatten(1)
    n = filters.shape[1]
    torch.testing.assert_close(filters.mean(dim=1), torch.zeros(5), atol=1e-6, rtol=0)
    torch.testing.assert_close(filters.var(dim=1, unbiased=False) * n / 2,
                               conv.parametrizations.weight[0].gamma.detach() ** 2, rtol=1e-4, atol=0)
    before = conv.weight.detach().clone()
    with torch.no_grad():
        original = conv.parametrizations.weight.original
        original[2] = 3.0 * original[2] - 0.7  # a > 0, any b: same aligned filter
    torch.testing.assert_close(conv.weight, before, rtol=1e-5, atol=1e-6)


def test_weight_align_applies_to_convolutions_only_and_can_skip_the_stem():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    normalization.convert(model, "wa", include_stem=False)
    assert not hasattr(model[0], "parametrizations") and hasattr(model[3], "parametrizations")
    assert not hasattr(model[7], "parametrizations")  # the classifier is left alone
    assert isinstance(model[1], ChannelAffine)
    x = torch.randn(2, 3, 8, 8)
    y = model(x)
    model.eval()
    torch.testing.assert_close(model(x), y)  # no sample statistics: train = eval


def test_weight_align_on_aligned_filters_is_the_plain_network():
    # equivalence 5: gamma 1 and filters with mean 0 and variance 2/n: BN+WA computes what BN does
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    with torch.no_grad():
        w = model[0].weight.flatten(1)
        w -= w.mean(dim=1, keepdim=True)
        w *= torch.sqrt(2.0 / w.shape[1] / w.var(dim=1, unbiased=False, keepdim=True))
    x = torch.randn(4, 3, 6, 6)
    plain = model(x)
    aligned = WeightAlignment(4, eps=0.0)(model[0].weight)
    torch.testing.assert_close(aligned, model[0].weight, rtol=1e-5, atol=1e-6)
    normalization.convert(model, "bn_wa")
    torch.testing.assert_close(model(x), plain, rtol=1e-4, atol=1e-4)
