"""The domain-aware normalizations (TransNorm ablations, DSBN, AutoDIAL): their invariants (norm_specs.md 2.3-2.5) and
the equivalences between them (section 3)."""
from __future__ import annotations

import math

import typing

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from normda import dann_cdan, normalization
from normda.experiment import build_model
from normda.normalization.domain import domain_aware_layers
from normda.normalization.transnorm import DISTANCES, PROBABILITIES, Distance, Probability
from conftest import random_batchnorm
from normda.normalization import TransNorm2d, domain_split, using_test_stats, transferability_alpha
from normda.normalization.autodial import AutoDIALNorm
from normda.errors import BatchTooSmallError, ConfigError


def shifted_batch(n_source=5, n_target=7, channels=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n_source + n_target, channels, 4, 4, generator=generator)
    x[n_source:] = 1.7 * x[n_source:] + 0.4
    return x


# -- TransNorm's Table 6 ablations ------------------------------------------------------------------------------------

def test_alpha_one_doubles_and_alpha_none_keeps_the_domain_specific_output():
    x = shifted_batch()
    bn = random_batchnorm(3, seed=1)
    layers = {alpha: normalization.convert(bn, "transnorm", alpha=alpha) for alpha in ("adaptive", "one", "none")}
    outputs = {}
    for alpha, layer in layers.items():
        with domain_split(layer, 5, 7):
            outputs[alpha] = layer(x)
    z = torch.cat([F.batch_norm(x[:5], None, None, bn.weight, bn.bias, True),
                   F.batch_norm(x[5:], None, None, bn.weight, bn.bias, True)])
    torch.testing.assert_close(outputs["none"], z)
    torch.testing.assert_close(outputs["one"], 2 * z)
    assert not torch.allclose(outputs["adaptive"], 2 * z)


def test_distances_and_probabilities_by_hand():
    mean_s, var_s = torch.tensor([0.0, 1.0]), torch.tensor([4.0, 1.0])
    mean_t, var_t = torch.tensor([1.0, 1.0]), torch.tensor([1.0, 4.0])
    eps = 0.0
    # normalized mean: |0/2 - 1/1| = 1, |1/1 - 1/2| = 0.5; mean: 1, 0; wasserstein: sqrt(1 + 1) and sqrt(0 + 1)
    distances = {"normalized_mean": [1.0, 0.5], "mean": [1.0, 0.0], "wasserstein": [math.sqrt(2.0), 1.0]}
    for distance, (d0, d1) in distances.items():
        for probability, p in {"student_t": lambda d: 1 / (1 + d), "gaussian": lambda d: math.exp(-d * d / 2),
                               "softmax": lambda d: math.exp(-d)}.items():
            alpha = transferability_alpha(mean_s, var_s, mean_t, var_t, eps, distance, probability)
            expected = torch.tensor([p(d0), p(d1)])
            torch.testing.assert_close(alpha, 2 * expected / expected.sum(), msg=f"{distance}/{probability}")


def test_settings_outside_their_annotations_are_config_errors():
    """Each setting's allowed values are stated once, in its option's signature; the registry checks them."""
    with pytest.raises(ConfigError, match=r"norm.distance='l2': give one of normalized_mean, mean, wasserstein"):
        normalization.build("transnorm", distance="l2")
    with pytest.raises(ConfigError, match=r"norm.alpha='fixed': give one of adaptive, one, none"):
        normalization.build("transnorm", alpha="fixed")
    with pytest.raises(ConfigError, match=r"norm.test_stats='both': give one of auto, target, source"):
        normalization.build("dsbn", test_stats="both")
    with pytest.raises(ConfigError, match=r"norm.groups=0: give a value of at least 1"):
        normalization.build("bgn", groups=0)
    with pytest.raises(ConfigError, match=r"norm.sync='yes': give true or false"):
        normalization.build("autodial", sync="yes")
    with pytest.raises(ConfigError, match=r"alpha='fixed': give one of adaptive, one, none"):
        TransNorm2d(4, alpha="fixed")  # a layer built by hand is checked against the same annotation
    assert set(typing.get_args(Distance)) == set(DISTANCES) and set(typing.get_args(Probability)) == set(PROBABILITIES)


def test_test_stats_auto_follows_whether_training_shows_the_target(make_config):
    """norm.test_stats=auto (the default) evaluates with target statistics under every adaptation method, and with
    the source's when the method never forwards a target batch (source only)."""
    for method, expected in (("cdan", "target"), ("source_only", "source"),
                             ("source_only method.forward_target=true", "target")):
        cfg = make_config("norm=transnorm", *f"method={method}".split())
        model, norm = build_model(cfg, num_classes=4)
        norm.choose_test_stats(model, dann_cdan.build(cfg.method, model.features_dim, 4).uses_target)
        assert {layer.test_stats for layer in domain_aware_layers(model)} == {expected}, method
    model, norm = build_model(make_config("norm=dsbn", "norm.test_stats=target", "method=source_only"), 4)
    norm.choose_test_stats(model, trains_on_target=False)  # an explicit choice is kept
    assert {layer.test_stats for layer in domain_aware_layers(model)} == {"target"}


def test_test_stats_source_evaluates_with_source_statistics():
    bn = random_batchnorm(3, seed=1)
    layer = normalization.convert(bn, "transnorm", test_stats="source")
    layer(shifted_batch())
    layer.eval()
    x = torch.randn(2, 3, 4, 4)
    with using_test_stats(layer, "source"):
        expected = layer(x)
    torch.testing.assert_close(layer(x), expected)
    layer.test_stats = "target"
    assert not torch.allclose(layer(x), expected)


# -- equivalences (norm_specs.md section 3) ---------------------------------------------------------------------------

@pytest.mark.parametrize("n_source,n_target", [(6, 6), (4, 9)])
def test_transnorm_without_alpha_equals_dsbn_with_tied_affine_and_autodial_at_one(n_source, n_target):
    x = shifted_batch(n_source, n_target)
    bn = random_batchnorm(3, seed=1)
    transnorm = normalization.convert(bn, "transnorm", alpha="none")
    dsbn = normalization.convert(bn, "dsbn")
    autodial = normalization.convert(bn, "autodial", running_average="pytorch")
    outputs = []
    for layer in (transnorm, dsbn, autodial):
        with domain_split(layer, n_source, n_target):
            outputs.append(layer(x))
    torch.testing.assert_close(outputs[1], outputs[0])
    torch.testing.assert_close(outputs[2], outputs[0], rtol=1e-5, atol=1e-5)
    for domain in ("source", "target"):  # TransNorm and DSBN update the same buffers
        branch = getattr(dsbn, domain)
        torch.testing.assert_close(getattr(transnorm, f"running_mean_{domain}"), branch.running_mean)
        torch.testing.assert_close(getattr(transnorm, f"running_var_{domain}"), branch.running_var)
        torch.testing.assert_close(getattr(autodial, f"running_mean_{domain}"), branch.running_mean)


def test_autodial_at_one_half_with_equal_halves_is_batchnorm_and_not_with_unequal_ones():
    x = shifted_batch(6, 6)
    layer = AutoDIALNorm(3)
    with torch.no_grad():
        layer.alpha.fill_(0.5)
    torch.testing.assert_close(layer(x), F.batch_norm(x, None, None, training=True), rtol=1e-5, atol=1e-5)
    x = shifted_batch(4, 8)
    with domain_split(layer, 4, 8):
        assert not torch.allclose(layer(x), F.batch_norm(x, None, None, training=True), atol=1e-3)


# -- DSBN --------------------------------------------------------------------------------------------------------------

def test_dsbn_split_forward_equals_two_separate_forwards():
    bn = random_batchnorm(3, seed=1)
    x = shifted_batch(4, 6)
    layer = normalization.convert(bn, "dsbn")
    with torch.no_grad():
        layer.target.weight.mul_(2.0)  # the branches have their own affine
    source, target = nn.BatchNorm2d(3), nn.BatchNorm2d(3)
    source.load_state_dict(layer.source.state_dict())
    target.load_state_dict(layer.target.state_dict())
    with domain_split(layer, 4, 6):
        y = layer(x)
    torch.testing.assert_close(y, torch.cat([source(x[:4]), target(x[4:])]))
    torch.testing.assert_close(layer.source.state_dict(), source.state_dict())
    torch.testing.assert_close(layer.target.state_dict(), target.state_dict())


def test_dsbn_single_domain_batch_and_evaluation_branch():
    layer = normalization.convert(random_batchnorm(3, seed=1), "dsbn")
    before = layer.source.running_mean.clone()
    with domain_split(layer, 0, 5):
        layer(torch.randn(5, 3, 2, 2))
    torch.testing.assert_close(layer.source.running_mean, before)
    assert layer.target.num_batches_tracked == 1
    layer.eval()
    x = torch.randn(2, 3, 2, 2)
    torch.testing.assert_close(layer(x), layer.target(x))
    with using_test_stats(layer, "source"):
        torch.testing.assert_close(layer(x), layer.source(x))


def test_dsbn_branches_of_a_fused_timm_layer_have_no_activation():
    model = timm.create_model("efficientnet_lite0", num_classes=0)
    normalization.convert(model, "dsbn")
    assert type(model.bn1.norm.source) is nn.BatchNorm2d and isinstance(model.bn1.act, nn.ReLU6)


def test_dsbn_too_small_part_names_the_layer():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    normalization.convert(model, "dsbn")
    with pytest.raises(BatchTooSmallError, match="DomainSpecificBatchNorm at 1 got 1 value per channel in the source"):
        with domain_split(model, 1, 3):
            model(torch.randn(4, 4))


# -- AutoDIAL ----------------------------------------------------------------------------------------------------------

def test_autodial_mixed_statistics_by_hand():
    x = shifted_batch(4, 8, channels=2)
    layer = AutoDIALNorm(2, eps=1e-5, running_average="pytorch")
    with torch.no_grad():
        layer.alpha.fill_(0.7)
    with domain_split(layer, 4, 8):
        y = layer(x)
    var_s, mean_s = torch.var_mean(x[:4], dim=(0, 2, 3), correction=0)
    var_t, mean_t = torch.var_mean(x[4:], dim=(0, 2, 3), correction=0)
    a = 0.7
    mean_st = a * mean_s + (1 - a) * mean_t
    # the variance identity: alpha-weighted mean of squared deviations from mu_st over the two parts
    var_st = a * ((x[:4] - mean_st.view(1, -1, 1, 1)) ** 2).mean(dim=(0, 2, 3)) + (1 - a) * (
        (x[4:] - mean_st.view(1, -1, 1, 1)) ** 2).mean(dim=(0, 2, 3))
    torch.testing.assert_close(var_st, a * var_s + (1 - a) * var_t + a * (1 - a) * (mean_s - mean_t) ** 2)
    expected_source = (x[:4] - mean_st.view(1, -1, 1, 1)) / torch.sqrt(var_st.view(1, -1, 1, 1) + 1e-5)
    torch.testing.assert_close(y[:4], expected_source, rtol=1e-5, atol=1e-5)
    m = 12 * 16  # both halves count in the unbiased correction
    torch.testing.assert_close(layer.running_var_source, 0.9 + 0.1 * var_st * m / (m - 1), rtol=1e-5, atol=1e-6)


def test_autodial_alpha_learns_and_stays_in_range():
    layer = AutoDIALNorm(3)
    with torch.no_grad():
        layer.alpha.fill_(0.8)
    optimizer = torch.optim.SGD(layer.parameters(), lr=10.0)
    x = shifted_batch(6, 6)
    layer(x)[:6].pow(3).sum().backward()
    assert layer.alpha.grad is not None and layer.alpha.grad.abs() > 0
    optimizer.step()
    layer(x)
    assert 0.5 <= layer.alpha.item() <= 1.0
    assert layer.alpha.no_weight_decay


def test_autodial_caffe_running_average_is_bias_corrected():
    layer = AutoDIALNorm(2, moving_average_fraction=0.5)
    batches = [shifted_batch(4, 4, channels=2, seed=s) for s in range(3)]
    for x in batches:
        layer(x)
    # s: 1, 1.5, 1.75; r = (l^2 m1 + l m2 + m3) / (l^2 + l + 1) with l = 0.5 (no pull towards the initial zeros)
    means = [torch.var_mean(x[:4], dim=(0, 2, 3), correction=0)[1] for x in batches]
    expected = (0.25 * means[0] + 0.5 * means[1] + means[2]) / 1.75
    torch.testing.assert_close(layer.running_mean_source, expected, rtol=1e-5, atol=1e-6)


def test_autodial_on_a_fresh_batchnorm_starts_its_average_empty_as_caffe():
    """A BatchNorm that never trained holds placeholders (0, 1): the first batch's statistics replace them (Caffe's
    average starts at s = 0), while trained statistics count as one average (s = 1)."""
    fresh = normalization.convert(nn.BatchNorm2d(3), "autodial")
    x = shifted_batch(4, 4, channels=3)
    fresh(x)
    source_mean = torch.var_mean(x[:4], dim=(0, 2, 3), correction=0)[1]  # alpha = 1: each domain its own
    torch.testing.assert_close(fresh.running_mean_source, source_mean, rtol=1e-5, atol=1e-6)
    assert float(fresh.running_weight_source) == 1.0
    trained = normalization.convert(random_batchnorm(3, seed=1), "autodial")
    start = trained.running_mean_source.clone()
    trained(x)
    torch.testing.assert_close(trained.running_mean_source, (0.999 * start + source_mean) / 1.999, rtol=1e-5,
                               atol=1e-6)


def test_autodial_evaluates_with_target_row():
    layer = normalization.convert(random_batchnorm(3, seed=1), "autodial")
    layer(shifted_batch())
    layer.eval()
    x = torch.randn(2, 3, 2, 2)
    expected = F.batch_norm(x, layer.running_mean_target, layer.running_var_target, layer.weight, layer.bias, False)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_autodial_carries_pretrained_statistics_and_handles_single_domain_batches():
    bn = random_batchnorm(3, seed=1)
    layer = normalization.convert(bn, "autodial")
    for domain in ("source", "target"):
        torch.testing.assert_close(getattr(layer, f"running_mean_{domain}"), bn.running_mean)
        torch.testing.assert_close(getattr(layer, f"running_var_{domain}"), bn.running_var)
    source_before = layer.running_mean_source.clone()
    x = torch.randn(6, 3, 2, 2) + 2.0
    with domain_split(layer, 0, 6):
        y = layer(x)
    expected = F.batch_norm(x, None, None, layer.weight, layer.bias, training=True)
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)  # its own statistics
    torch.testing.assert_close(layer.running_mean_source, source_before)  # the other row untouched
    assert not torch.allclose(layer.running_mean_target, bn.running_mean)
