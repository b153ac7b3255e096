"""The fast training paths of the domain-aware layers against their plain formulations: ``split_batch_norm`` (TransNorm,
DSBN) and AutoDIAL's kernel-backed function compute the same outputs, gradients and running statistics as
``F.batch_norm`` + ``torch.cat`` and autograd through ``torch.var_mean``; they keep channels-last memory, run under
autocast, and compile without graph breaks."""
from __future__ import annotations

import copy

import pytest
import torch
import torch._dynamo
from torch import nn

from conftest import randomize_batchnorms
from normda import normalization
from normda.normalization import domain_split
from normda.normalization.autodial import (
    _AutoDIALFunction,
    MIXED,
    RUNNING,
    STEP_ROWS,
    mixed_statistics,
    moment_gradients,
    reference_autodial,
    step_statistics,
    step_tables,
)
from normda.normalization.split_batchnorm import reference_split_batch_norm, split_batch_norm

SPLITS = [(6, 6), (3, 9), (7, 0), (0, 5)]


def batch(n_source, n_target, channels=5, dtype=torch.float64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n_source + n_target, channels, 3, 4, generator=generator, dtype=dtype)
    x[n_source:] = 1.8 * x[n_source:] - 0.6
    return x.requires_grad_()


def affine_parameters(channels, seed, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(channels, generator=generator, dtype=dtype).add_(0.5).requires_grad_(),
            torch.randn(channels, generator=generator, dtype=dtype).requires_grad_())


def fresh_buffers(channels, dtype=torch.float64):
    return {domain: (torch.zeros(channels, dtype=dtype), torch.ones(channels, dtype=dtype))
            for domain in ("source", "target")}


def transnorm_scale(statistics):
    means_and_vars = [t for domain in ("source", "target") for t in statistics.get(
        domain, (torch.zeros(5, dtype=torch.float64), torch.ones(5, dtype=torch.float64)))]
    return 1.0 + normalization.transferability_alpha(*means_and_vars, 1e-5)


@pytest.mark.parametrize("n_source,n_target", SPLITS)
@pytest.mark.parametrize("shared_affine,scaled", [(True, True), (False, False), (True, False)])
def test_split_batch_norm_equals_batch_norm_per_part_then_cat(n_source, n_target, shared_affine, scaled):
    source_affine = affine_parameters(5, seed=1)
    target_affine = source_affine if shared_affine else affine_parameters(5, seed=2)
    affine = {"source": source_affine, "target": target_affine}
    scale = transnorm_scale if scaled else None
    momentum = {"source": 0.1, "target": 0.3}
    grad = torch.randn(n_source + n_target, 5, 3, 4, dtype=torch.float64)
    results = []
    for function in (split_batch_norm, reference_split_batch_norm):
        x = batch(n_source, n_target)
        buffers = fresh_buffers(5)
        y = function(x, n_source, affine, buffers, momentum, 1e-5, scale)
        parameters = [x, *{id(p): p for pair in affine.values() for p in pair}.values()]
        grads = torch.autograd.grad(y, parameters, grad, allow_unused=True)
        results.append((y, grads, [t for pair in buffers.values() for t in pair]))
    (y, grads, buffers), (y_ref, grads_ref, buffers_ref) = results
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    for actual, expected in zip(grads, grads_ref):
        if expected is None:  # the affine of an absent domain
            assert actual is None or not actual.any()
        else:
            torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-12)
    for actual, expected in zip(buffers, buffers_ref):
        torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)


def test_split_batch_norm_passes_gradcheck():
    x = batch(3, 4)
    source, target = affine_parameters(5, seed=3), affine_parameters(5, seed=4)

    def function(x, *parameters):
        return split_batch_norm(x, 3, {"source": parameters[:2], "target": parameters[2:]}, fresh_buffers(5),
                                0.1, 1e-5)

    assert torch.autograd.gradcheck(function, (x, *source, *target))


def test_autodial_function_equals_autograd_through_its_moments():
    x = batch(4, 7)
    weight, bias = affine_parameters(5, seed=5)
    alpha = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    grad = torch.randn_like(x)
    updates = []
    y = _AutoDIALFunction.apply(x, weight, bias, alpha, 4, 1e-5, updates.append)
    x_hat, mixed_ref, counts = reference_autodial(x, alpha, 4, 1e-5)
    assert counts == [4 * 12, 7 * 12]
    y_ref = x_hat * weight.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    [rows] = updates  # mu_s', var_s', mu_t', var_t', the variances unbiased over all 11 * 12 values
    unbiased = mixed_ref.detach() * torch.tensor([[1.0], [132 / 131]], dtype=torch.float64)
    torch.testing.assert_close(torch.stack(rows).view(2, 2, -1), unbiased, rtol=1e-12, atol=1e-12)
    inputs = (x, weight, bias, alpha)
    for actual, expected in zip(torch.autograd.grad(y, inputs, grad), torch.autograd.grad(y_ref, inputs, grad)):
        torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(lambda *a: _AutoDIALFunction.apply(*a, 4, 1e-5, lambda *_: None), inputs)


@pytest.mark.parametrize("alpha_value", [0.6, 1.0])
def test_step_statistics_and_moment_gradients_are_mixed_statistics_and_its_gradient(alpha_value):
    generator = torch.Generator().manual_seed(6)
    counts = (8, 20)
    alpha = torch.tensor(alpha_value, dtype=torch.float64, requires_grad=True)
    moments = torch.rand(2, 2, 4, generator=generator, dtype=torch.float64).requires_grad_()
    mixed = mixed_statistics(alpha, moments)
    eps = 1e-3
    tables = step_tables(counts, eps, 4, torch.float64, torch.device("cpu"))
    powers, statistics = step_statistics(alpha.detach(), moments.detach().view(4, -1).unbind(), tables)
    assert statistics.shape == (len(STEP_ROWS), 4)
    torch.testing.assert_close(powers, torch.tensor([1.0, alpha_value, alpha_value ** 2], dtype=torch.float64))
    with_eps = torch.tensor([[0.0], [eps]], dtype=torch.float64)  # the kernels' rows: mu_d', var_d' + eps
    torch.testing.assert_close(statistics[MIXED].view(2, 2, -1), mixed.detach() + with_eps, rtol=1e-14, atol=1e-15)
    unbiased = torch.tensor([[1.0], [28 / 27]], dtype=torch.float64)  # the running rows: var_d' unbiased over 28
    torch.testing.assert_close(statistics[RUNNING].view(2, 2, -1), mixed.detach() * unbiased, rtol=1e-14, atol=1e-15)
    if alpha_value == 1.0:  # each domain by its own moments, exactly
        torch.testing.assert_close(statistics[RUNNING][0::2], moments.detach()[:, 0], rtol=0, atol=0)
    # scaled_sums = (gamma r sum g, gamma r^2 sum g x_hat) per part: dL/dmu' = -first, dL/dvar' = -second / 2
    scaled_sums = torch.randn(4, 4, generator=generator, dtype=torch.float64)
    grad_mixed = scaled_sums.view(2, 2, 4) * torch.tensor([[-1.0], [-0.5]], dtype=torch.float64)
    grad_alpha, grad_moments = torch.autograd.grad(mixed, [alpha, moments], grad_mixed)
    actual_alpha, terms = moment_gradients(powers, statistics, scaled_sums, tables)
    torch.testing.assert_close(actual_alpha, grad_alpha, rtol=1e-12, atol=1e-12)
    per_value = torch.tensor([[[1 / 8], [2 / 8]], [[1 / 20], [2 / 20]]], dtype=torch.float64)  # offset, slope
    torch.testing.assert_close(terms[:4].view(2, 2, 4), grad_moments * per_value, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(terms[4], scaled_sums[1] + scaled_sums[3])


def small_net(norm: str) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4),
                        nn.BatchNorm1d(4))
    return normalization.convert(net, norm).train()


def step(model, x, n_source, forward=None):
    with domain_split(model, n_source, x.shape[0] - n_source):
        y = (forward or model)(x)
    y.float().pow(2).sum().backward()
    return y


DOMAIN_NORMS = ["transnorm", "dsbn", "autodial"]


@pytest.mark.parametrize("norm", DOMAIN_NORMS)
def test_channels_last_input_gives_the_same_step_in_channels_last_memory(norm):
    x = torch.randn(10, 3, 8, 8, dtype=torch.float64)
    model, model_cl = small_net(norm).double(), small_net(norm).double().to(memory_format=torch.channels_last)
    norm_output = {}
    model_cl[1].register_forward_hook(lambda module, args, output: norm_output.setdefault("y", output))
    y, y_cl = step(model, x, 6), step(model_cl, x.to(memory_format=torch.channels_last), 6)
    assert norm_output["y"].is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y_cl, y, rtol=1e-10, atol=1e-10)
    for p, q in zip(model.parameters(), model_cl.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("norm", DOMAIN_NORMS)
def test_bfloat16_autocast_step_is_close_to_float32(norm):
    x = torch.randn(10, 3, 8, 8)
    model, model_amp = small_net(norm), small_net(norm)
    y = step(model, x, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y_amp = step(model_amp, x, 6)
    assert y_amp.dtype == torch.bfloat16
    torch.testing.assert_close(y_amp.float(), y, rtol=0.05, atol=0.05)
    assert all(torch.isfinite(p.grad).all() for p in model_amp.parameters())


@pytest.mark.parametrize("norm", DOMAIN_NORMS)
def test_domain_aware_layers_compile_without_graph_breaks_and_match_eager(norm):
    model = small_net(norm)
    x = torch.randn(10, 3, 8, 8)
    with domain_split(model, 6, 4):
        explanation = torch._dynamo.explain(model)(x)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    eager, compiled = small_net(norm), small_net(norm)
    y = step(eager, x, 6)
    y_compiled = step(compiled, x, 6, forward=torch.compile(compiled, backend="aot_eager"))
    torch.testing.assert_close(y_compiled, y, rtol=1e-5, atol=1e-5)
    for p, q in zip(eager.parameters(), compiled.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-4)
    for a, b in zip(eager.buffers(), compiled.buffers()):
        torch.testing.assert_close(b, a)


@pytest.mark.slow
def test_transnorm_compiles_with_inductor():
    eager = small_net("transnorm")
    compiled = copy.deepcopy(eager)
    x = torch.randn(10, 3, 8, 8)
    y = step(eager, x, 6)
    y_compiled = step(compiled, x, 6, forward=torch.compile(compiled))
    torch.testing.assert_close(y_compiled, y, rtol=1e-5, atol=1e-5)
    for p, q in zip(eager.parameters(), compiled.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype,tolerance", [(torch.bfloat16, 5e-2), (torch.float16, 1e-2)])  # ~6 rounding units
@pytest.mark.parametrize("norm,settings", [("dsbn", {}), ("autodial", {}), ("transnorm", {"alpha": "none"}),
                                           ("transnorm", {}), ("bgn", {"groups": 4}), ("sn", {})],
                         ids=["dsbn", "autodial", "transnorm-alpha-none", "transnorm", "bgn", "sn"])
def test_a_model_cast_to_half_precision_trains_as_its_float32_twin(norm, settings, dtype, tolerance):
    """model.half() / model.to(torch.bfloat16): parameters and buffers in half precision. A training step gives the
    float32 layer's outputs and gradients up to the precision's rounding, in the model's dtype."""
    base = normalization.convert(randomize_batchnorms(nn.Sequential(nn.BatchNorm2d(8))), norm, **settings)[0]
    low = copy.deepcopy(base).to(dtype)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(12, 8, 3, 3, generator=generator) * 2 + 1
    grad = torch.randn(x.shape, generator=generator)
    results = []
    for layer, inputs in ((base, x.clone()), (low, x.to(dtype))):
        inputs.requires_grad_(True)
        with normalization.domain_split(layer, 5, 7):
            out = layer.train()(inputs)
        out.backward(grad.to(out.dtype))
        results.append((out, inputs.grad, [p.grad for p in layer.parameters()]))
    (out, grad_x, grads), (low_out, low_grad_x, low_grads) = results
    assert low_out.dtype == dtype and low_grad_x.dtype == dtype and all(g.dtype == dtype for g in low_grads)
    torch.testing.assert_close(low_out.float(), out, rtol=tolerance, atol=tolerance)
    torch.testing.assert_close(low_grad_x.float(), grad_x, rtol=tolerance, atol=tolerance)
    for low_grad, reference in zip(low_grads, grads):
        scale = reference.abs().max().clamp(min=1.0)
        torch.testing.assert_close(low_grad.float() / scale, reference / scale, rtol=tolerance, atol=tolerance)
