"""TransNorm against numbers computed by hand, an independent NumPy implementation of the paper's equations, and the
invariants of norm_specs.md section 2.5."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from normda.normalization import (
    TransNorm1d,
    TransNorm2d,
    domain_split,
    using_test_stats,
    transferability_alpha,
)
from normda.errors import BatchTooSmallError


def unit_affine(layer):
    with torch.no_grad():
        layer.weight.fill_(1.0)
        layer.bias.zero_()
    return layer


# -- numbers computed by hand ------------------------------------------------------------------------------------------

def test_train_forward_matches_hand_computation():
    # channel 0: source (1, 3), target (2, 4); channel 1: source (1, -1), target (1, -1)
    x = torch.tensor([[1.0, 1.0], [3.0, -1.0], [2.0, 1.0], [4.0, -1.0]])
    layer = unit_affine(TransNorm1d(2, eps=1e-12))  # torch refuses eps=0 in training; 1e-12 is below float error
    y = layer(x)
    # unbiased variances are all 2; d_0 = |2/sqrt2 - 3/sqrt2| = 1/sqrt2, d_1 = 0
    p0, p1 = 1.0 / (1.0 + 1.0 / math.sqrt(2.0)), 1.0
    alpha = torch.tensor([2 * p0 / (p0 + p1), 2 * p1 / (p0 + p1)])
    # each domain's biased variance is 1, so the normalised values are +-1
    x_hat = torch.tensor([[-1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, -1.0]])
    torch.testing.assert_close(y, x_hat * (1.0 + alpha), rtol=1e-6, atol=1e-6)
    # running statistics, momentum 0.1: mean <- 0.1 * batch mean, var <- 0.9 + 0.1 * unbiased var (= 2)
    torch.testing.assert_close(layer.running_mean_source, torch.tensor([0.2, 0.0]))
    torch.testing.assert_close(layer.running_mean_target, torch.tensor([0.3, 0.0]))
    torch.testing.assert_close(layer.running_var_source, torch.tensor([1.1, 1.1]))
    torch.testing.assert_close(layer.running_var_target, torch.tensor([1.1, 1.1]))


def test_eval_forward_matches_hand_computation():
    layer = unit_affine(TransNorm1d(2, eps=1e-12)).eval()
    layer.running_mean_source.copy_(torch.tensor([0.0, 1.0]))
    layer.running_var_source.copy_(torch.tensor([1.0, 4.0]))
    layer.running_mean_target.copy_(torch.tensor([1.0, 1.0]))
    layer.running_var_target.copy_(torch.tensor([4.0, 4.0]))
    # d_0 = |0/1 - 1/2| = 0.5, d_1 = |1/2 - 1/2| = 0 -> p = (2/3, 1), alpha = 2p / (5/3) = (0.8, 1.2)
    x = torch.tensor([[3.0, 5.0]])
    expected = torch.tensor([[(3.0 - 1.0) / 2.0 * 1.8, (5.0 - 1.0) / 2.0 * 2.2]])  # target statistics
    torch.testing.assert_close(layer(x), expected)


# -- an independent implementation of Algorithm 1 in float64 -----------------------------------------------------------

def reference_transnorm(x, n_source, gamma, beta, eps, momentum, buffers):
    """Eq. 3-7 in NumPy: returns y and the updated (mean_s, var_s, mean_t, var_t)."""
    axes = (0, 2, 3)
    shape = (1, -1, 1, 1)
    stats, outputs, new_buffers = {}, [], []
    for part, (running_mean, running_var) in ((x[:n_source], buffers[:2]), (x[n_source:], buffers[2:])):
        m = part.size / part.shape[1]
        mean = part.mean(axis=axes)
        biased = part.var(axis=axes)
        unbiased = biased * m / (m - 1)
        outputs.append(gamma.reshape(shape) * (part - mean.reshape(shape)) / np.sqrt(biased.reshape(shape) + eps)
                       + beta.reshape(shape))
        stats[len(stats)] = (mean, unbiased)
        new_buffers += [(1 - momentum) * running_mean + momentum * mean,
                        (1 - momentum) * running_var + momentum * unbiased]
    (mean_s, var_s), (mean_t, var_t) = stats[0], stats[1]
    distance = np.abs(mean_s / np.sqrt(var_s + eps) - mean_t / np.sqrt(var_t + eps))
    probability = 1.0 / (1.0 + distance)
    alpha = len(probability) * probability / probability.sum()
    return np.concatenate(outputs) * (1.0 + alpha.reshape(shape)), new_buffers


def reference_eval(x, gamma, beta, eps, buffers, domain="target"):
    mean_s, var_s, mean_t, var_t = buffers
    shape = (1, -1, 1, 1)
    mean, var = (mean_t, var_t) if domain == "target" else (mean_s, var_s)
    z = gamma.reshape(shape) * (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) + beta.reshape(shape)
    distance = np.abs(mean_s / np.sqrt(var_s + eps) - mean_t / np.sqrt(var_t + eps))
    probability = 1.0 / (1.0 + distance)
    return z * (1.0 + (len(probability) * probability / probability.sum()).reshape(shape))


@pytest.mark.parametrize("n_source,n_target", [(6, 6), (3, 9), (7, 4)])
def test_matches_independent_implementation(n_source, n_target):
    generator = torch.Generator().manual_seed(n_source)
    channels = 5
    x = torch.randn(n_source + n_target, channels, 3, 4, generator=generator, dtype=torch.float64)
    x[n_source:] = 2.0 * x[n_source:] + 0.7  # a domain shift
    layer = TransNorm2d(channels).double()
    with torch.no_grad():
        layer.weight.copy_(torch.rand(channels, generator=generator))
        layer.bias.copy_(torch.randn(channels, generator=generator))
    gamma, beta = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    buffers = [np.zeros(channels), np.ones(channels), np.zeros(channels), np.ones(channels)]

    with domain_split(layer, n_source, n_target):
        y = layer(x)
    expected, buffers = reference_transnorm(x.numpy(), n_source, gamma, beta, 1e-5, 0.1, buffers)
    np.testing.assert_allclose(y.detach().numpy(), expected, rtol=1e-10, atol=1e-10)
    for actual, wanted in zip(("running_mean_source", "running_var_source", "running_mean_target",
                               "running_var_target"), buffers):
        np.testing.assert_allclose(getattr(layer, actual).numpy(), wanted, rtol=1e-12)

    layer.eval()
    x_test = torch.randn(4, channels, 3, 4, generator=generator, dtype=torch.float64)
    for domain in ("target", "source"):
        with using_test_stats(layer, domain):
            np.testing.assert_allclose(layer(x_test).detach().numpy(),
                                       reference_eval(x_test.numpy(), gamma, beta, 1e-5, buffers, domain),
                                       rtol=1e-10, atol=1e-10)


# -- invariants -------------------------------------------------------------------------------------------------------

def test_alpha_by_hand_eq_5_and_6():
    """Two channels: one where the domains agree (d = 0, p = 1 / (1 + 0) = 1), one whose normalised means are 2/2 and
    0/1 (d = 1, p = 1/2); alpha = C p / sum(p) = 2 (1, 1/2) / 1.5 = (4/3, 2/3)."""
    alpha = transferability_alpha(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 4.0]),
                                  torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0]), eps=0.0)
    torch.testing.assert_close(alpha, torch.tensor([4 / 3, 2 / 3]))


def test_each_domain_keeps_its_own_running_statistics():
    """After one training batch from fresh buffers (mean 0, variance 1, momentum 0.1) each domain's running mean is
    0.1 x its batch mean and its running variance 0.9 + 0.1 x its unbiased batch variance (what eval mode's alpha and
    normalisation read)."""
    x = torch.randn(16, 3, 4, 4) * torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1)
    x[8:] += torch.tensor([0.0, 1.0, -2.0]).view(1, 3, 1, 1)
    layer = TransNorm2d(3)
    layer(x)
    expected = []
    for part in (x[:8], x[8:]):
        var, mean = torch.var_mean(part, dim=(0, 2, 3), correction=1)
        expected += [0.1 * mean, 0.9 + 0.1 * var]
    torch.testing.assert_close(layer.running_stats("source"), tuple(expected[:2]))
    torch.testing.assert_close(layer.running_stats("target"), tuple(expected[2:]))


def test_identical_domains_give_alpha_one_and_twice_split_batchnorm():
    x_source = torch.randn(4, 3, 2, 2)
    layer = TransNorm2d(3)
    y = layer(torch.cat([x_source, x_source]))
    z = F.batch_norm(x_source, None, None, layer.weight, layer.bias, training=True)
    torch.testing.assert_close(y, 2.0 * torch.cat([z, z]))


def test_alpha_is_detached():
    x = torch.randn(8, 4, 3, 3) + torch.linspace(0, 2, 8).view(8, 1, 1, 1)
    x.requires_grad_(True)
    layer = TransNorm2d(4)
    layer(x).pow(2).sum().backward()

    x_reference = x.detach().clone().requires_grad_(True)
    halves = (x_reference[:4], x_reference[4:])
    with torch.no_grad():
        stats = [torch.var_mean(h, dim=(0, 2, 3), correction=1) for h in halves]
        alpha = transferability_alpha(stats[0][1], stats[0][0], stats[1][1], stats[1][0], 1e-5)
    z = torch.cat([F.batch_norm(h, None, None, layer.weight, layer.bias, training=True) for h in halves])
    (z * (1 + alpha).view(1, -1, 1, 1)).pow(2).sum().backward()
    torch.testing.assert_close(x.grad, x_reference.grad)


def test_running_buffers_follow_their_own_domain_only():
    layer = TransNorm2d(3)
    x = torch.randn(6, 3, 4, 4)
    layer(x)
    source_after = layer.running_mean_source.clone(), layer.running_var_source.clone()

    other = TransNorm2d(3)
    x_changed_target = x.clone()
    x_changed_target[3:] = 5 * torch.randn(3, 3, 4, 4) + 2
    other(x_changed_target)
    torch.testing.assert_close((other.running_mean_source, other.running_var_source), source_after)
    assert not torch.allclose(other.running_mean_target, layer.running_mean_target)


def test_default_split_is_first_half_source_with_extra_sample_in_target():
    x = torch.randn(7, 2, 3, 3)
    default, explicit = TransNorm2d(2), TransNorm2d(2)
    explicit.load_state_dict(default.state_dict())
    y_default = default(x)
    with domain_split(explicit, 3, 4):
        y_explicit = explicit(x)
    torch.testing.assert_close(y_default, y_explicit)
    torch.testing.assert_close(default.running_mean_target, explicit.running_mean_target)


def test_single_domain_batch_uses_running_statistics_of_the_absent_domain():
    layer = TransNorm2d(3)
    layer.running_mean_target.fill_(0.5)
    layer.running_var_target.fill_(2.0)
    x = torch.randn(5, 3, 2, 2)
    with domain_split(layer, 5, 0):
        y = layer(x)
    var, mean = torch.var_mean(x, dim=(0, 2, 3), correction=1)
    alpha = transferability_alpha(mean, var, torch.full((3,), 0.5), torch.full((3,), 2.0), 1e-5)
    z = F.batch_norm(x, None, None, layer.weight, layer.bias, training=True)
    torch.testing.assert_close(y, z * (1 + alpha).view(1, -1, 1, 1))
    torch.testing.assert_close(layer.running_mean_target, torch.full((3,), 0.5))
    torch.testing.assert_close(layer.running_var_target, torch.full((3,), 2.0))


def test_eval_depends_on_source_buffers_only_through_alpha():
    layer = TransNorm2d(2).eval()
    x = torch.randn(3, 2, 2, 2)
    baseline = layer(x)
    layer.running_mean_target.fill_(1.0)
    assert not torch.allclose(layer(x), baseline)
    layer.running_mean_target.zero_()
    # a source variance change that leaves every d_c = |mu_s / sigma_s - mu_t / sigma_t| at 0 changes nothing
    layer.running_var_source.fill_(4.0)
    torch.testing.assert_close(layer(x), baseline)
    # a source mean change moves alpha only: the normalisation keeps the target statistics
    layer.running_mean_source.copy_(torch.tensor([1.0, 0.0]))
    z = F.batch_norm(x, layer.running_mean_target, layer.running_var_target, layer.weight, layer.bias, False)
    alpha = transferability_alpha(layer.running_mean_source, layer.running_var_source, layer.running_mean_target,
                                  layer.running_var_target, 1e-5)
    assert not torch.allclose(alpha, torch.ones(2))
    torch.testing.assert_close(layer(x), z * (1 + alpha).view(1, -1, 1, 1))


def test_three_dimensional_input_of_transnorm1d():
    x = torch.randn(6, 4, 5)
    layer = TransNorm1d(4)
    y = layer(x)
    halves = (x[:3], x[3:])
    stats = [torch.var_mean(h.permute(0, 2, 1).reshape(-1, 4), dim=0, correction=1) for h in halves]  # (N*L, C)
    alpha = transferability_alpha(stats[0][1], stats[0][0], stats[1][1], stats[1][0], 1e-5)
    z = torch.cat([F.batch_norm(h, None, None, layer.weight, layer.bias, True) for h in halves])
    torch.testing.assert_close(y, z * (1 + alpha).view(1, -1, 1))


def test_too_small_a_domain_part_is_a_one_line_error():
    layer = TransNorm1d(8)
    with pytest.raises(BatchTooSmallError) as error:
        layer(torch.randn(3, 8))  # 1 source sample of a 1-D feature
    message = str(error.value)
    assert "TransNorm1d(8)" in message and "source" in message and "data.batch_size" in message
    assert "\n" not in message


def test_wrong_input_rank_is_rejected():
    with pytest.raises(ValueError, match="4-D input"):
        TransNorm2d(3)(torch.randn(4, 3))


def test_fresh_layer_follows_official_initialisation():
    torch.manual_seed(0)
    layer = TransNorm2d(1000)
    assert 0.0 <= layer.weight.min() and layer.weight.max() <= 1.0 and layer.weight.std() > 0.2  # U(0, 1)
    assert torch.all(layer.bias == 0)
    assert torch.all(layer.running_var_source == 1) and torch.all(layer.running_mean_target == 0)
    assert set(layer.state_dict()) == {"weight", "bias", "running_mean_source", "running_var_source",
                                       "running_mean_target", "running_var_target", "num_batches_tracked"}
