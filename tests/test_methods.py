"""Gradient reversal, the domain-adversarial loss, DANN and CDAN (maps, entropy conditioning), against hand
computations."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from normda.dann_cdan.cdan import CDAN, MultilinearMap, RandomizedMultilinearMap, prediction_entropy
from normda.dann_cdan.dann import DANN
from normda.dann_cdan.discriminator import DomainDiscriminator, domain_adversarial_loss
from normda.dann_cdan.grl import WarmStartSchedule, grad_reverse
from normda.dann_cdan import METHODS, StepOutputs, build as build_method
from normda.errors import ConfigError


def test_warm_start_schedule_values():
    tllib = WarmStartSchedule()  # alpha 1, max_iters 1000 (TLlib) = alpha 10 over 10000 (original CDAN)
    assert tllib(0) == 0.0
    assert tllib(1000) == pytest.approx(2 / (1 + math.exp(-1)) - 1)  # 0.4621
    assert tllib(1000) == pytest.approx(0.46211716)
    assert tllib(100_000) == pytest.approx(1.0, abs=1e-12)
    assert WarmStartSchedule(alpha=10, max_iters=10_000)(1000) == pytest.approx(tllib(1000))
    assert WarmStartSchedule(alpha=10, max_iters=5000)(5000) == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    mdd = WarmStartSchedule(hi=0.1)
    assert mdd(10**7) == pytest.approx(0.1)
    assert all(tllib(i) < tllib(i + 100) for i in range(0, 5000, 100))


def test_gradient_reversal_multiplies_the_gradient_by_minus_coefficient():
    x = torch.randn(5, 3, requires_grad=True)
    y = grad_reverse(x, 0.3)
    torch.testing.assert_close(y, x)
    upstream = torch.randn(5, 3)
    y.backward(upstream)
    torch.testing.assert_close(x.grad, -0.3 * upstream)


def test_domain_adversarial_loss_by_hand():
    d_source, d_target = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0, 1.0])
    loss, accuracy = domain_adversarial_loss(d_source, d_target)
    sigmoid = torch.sigmoid
    bce_s = -torch.log(sigmoid(d_source)).mean()
    bce_t = -torch.log(1 - sigmoid(d_target)).mean()
    torch.testing.assert_close(loss, 0.5 * (bce_s + bce_t))
    assert accuracy.item() == pytest.approx(2 / 5)  # correct: 2.0 (source), -3.0 (target)

    w_s, w_t = torch.tensor([1.0, 3.0]), torch.tensor([1.0, 1.0, 2.0])
    weighted, _ = domain_adversarial_loss(d_source, d_target, w_s, w_t)
    terms_s = -torch.log(sigmoid(d_source))
    terms_t = -torch.log(1 - sigmoid(d_target))
    torch.testing.assert_close(weighted, 0.5 * ((w_s * terms_s).sum() / 4 + (w_t * terms_t).sum() / 4))


def test_multilinear_map_is_the_flattened_outer_product():
    f, g = torch.randn(4, 5), torch.softmax(torch.randn(4, 3), dim=1)
    mapped = MultilinearMap()(f, g)
    assert mapped.shape == (4, 15)
    torch.testing.assert_close(mapped[2].view(3, 5), torch.outer(g[2], f[2]))


def test_randomized_map_shape_scaling_and_saved_matrices():
    torch.manual_seed(0)
    layer = RandomizedMultilinearMap(features_dim=6, num_classes=3, output_dim=16)
    f, g = torch.randn(4, 6), torch.softmax(torch.randn(4, 3), dim=1)
    mapped = layer(f, g)
    assert mapped.shape == (4, 16)
    torch.testing.assert_close(mapped, (f @ layer.random_features) * (g @ layer.random_classes) / 4.0)
    state = layer.state_dict()
    assert set(state) == {"random_features", "random_classes"}
    other = RandomizedMultilinearMap(6, 3, 16)
    other.load_state_dict(state)
    torch.testing.assert_close(other(f, g), mapped)


def step_outputs(n_source=4, n_target=4, features=6, classes=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return StepOutputs(
        logits_source=torch.randn(n_source, classes, generator=generator, requires_grad=True),
        features_source=torch.randn(n_source, features, generator=generator, requires_grad=True),
        labels_source=torch.randint(0, classes, (n_source,), generator=generator),
        logits_target=torch.randn(n_target, classes, generator=generator, requires_grad=True),
        features_target=torch.randn(n_target, features, generator=generator, requires_grad=True),
    )


def test_cdan_discriminator_input_sizes():
    assert CDAN(256, 31).discriminator[0].in_features == 256 * 31  # 7,936 for Office-31
    assert CDAN(256, 65, randomized=True).discriminator[0].in_features == 1024
    assert "map.random_features" in CDAN(8, 4, randomized=True).state_dict()


@pytest.mark.parametrize("weighting", ["tllib", "official"])
def test_cdan_entropy_weights_by_hand(weighting):
    """TLlib: detached weights normalised over the whole batch; the CDAN code: normalised within each domain (the
    value; its gradient path is the next test's)."""
    torch.manual_seed(0)
    method = CDAN(6, 3, entropy=True, entropy_weighting=weighting).eval()
    outputs = step_outputs(n_source=3, n_target=5)
    terms = method(outputs, step=500)

    probabilities = F.softmax(torch.cat([outputs.logits_source, outputs.logits_target]), dim=1).detach()
    weights = 1 + torch.exp(-prediction_entropy(probabilities))
    joint = MultilinearMap()(torch.cat([outputs.features_source, outputs.features_target]), probabilities)
    logits = method.discriminator(joint)
    bce = torch.cat([F.binary_cross_entropy_with_logits(logits[:3], torch.ones(3), reduction="none"),
                     F.binary_cross_entropy_with_logits(logits[3:], torch.zeros(5), reduction="none")])
    if weighting == "tllib":  # TLlib: w / sum(w) * B, then the mean of w * BCE over the batch
        expected = (weights / weights.sum() * 8 * bce).mean()
    else:
        expected = 0.5 * ((weights[:3] * bce[:3]).sum() / weights[:3].sum()
                          + (weights[3:] * bce[3:]).sum() / weights[3:].sum())
    torch.testing.assert_close(terms["loss"], expected)


def test_prediction_entropy_by_hand():
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    expected = torch.tensor([-math.log(1 + 1e-5), -math.log(0.5 + 1e-5)])
    torch.testing.assert_close(prediction_entropy(p), expected)


def test_entropy_gradient_is_reversed_only_when_asked():
    outputs = step_outputs()
    for weighting, reversed_grad in (("tllib", False), ("official", True)):
        torch.manual_seed(0)
        method = CDAN(6, 3, entropy=True, entropy_weighting=weighting)
        for tensor in (outputs.logits_source, outputs.logits_target):
            tensor.grad = None
        method(outputs, step=1000)["loss"].backward()
        # the discriminator input uses the detached softmax: logits get gradient through the entropy weights only
        assert (outputs.logits_target.grad is not None and outputs.logits_target.grad.abs().sum() > 0) == reversed_grad


def test_dann_reverses_the_discriminator_gradient_into_the_features():
    torch.manual_seed(0)
    method = DANN(6, 3).eval()
    outputs = step_outputs()
    terms = method(outputs, step=1000)
    terms["loss"].backward()
    gradient = outputs.features_source.grad.clone()

    features = torch.cat([outputs.features_source, outputs.features_target]).detach().requires_grad_(True)
    logits = method.discriminator(features)
    loss, _ = domain_adversarial_loss(logits[:4], logits[4:])
    loss.backward()
    torch.testing.assert_close(gradient, -WarmStartSchedule()(1000) * features.grad[:4])
    assert terms["grl_coefficient"] == pytest.approx(0.46211716)


def test_discriminator_variants():
    assert isinstance(DomainDiscriminator(8)[1], torch.nn.BatchNorm1d)
    assert isinstance(DomainDiscriminator(8, batch_norm=False)[2], torch.nn.Dropout)
    assert DomainDiscriminator(8)(torch.randn(4, 8)).shape == (4,)


def test_build_method_from_config_and_unknown_options():
    assert set(METHODS.names()) >= {"source_only", "dann", "cdan"}
    cfg = OmegaConf.create({"name": "cdan", "entropy": True, "grl": {"alpha": 1.0, "max_iters": 10}})
    method = build_method(cfg, features_dim=6, num_classes=3)
    assert method.entropy and method.grl_schedule.max_iters == 10
    with pytest.raises(ConfigError, match="method=dann has no setting entropy"):
        build_method(OmegaConf.create({"name": "dann", "entropy": True}), 6, 3)
    with pytest.raises(ConfigError, match=r"method.trade_off='high': give a number"):
        build_method(OmegaConf.create({"name": "dann", "trade_off": "high"}), 6, 3)
    with pytest.raises(ConfigError, match=r"unknown method=mmd \(did you mean mdd\?\)"):
        build_method(OmegaConf.create({"name": "mmd"}), 6, 3)
