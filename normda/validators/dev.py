"""Deep Embedded Validation (You et al., ICML 2019) as its references compute it (``protocols.md`` section 8), DEVN
(Musgrave et al. 2022) and the logistic-regression variant this project used before: an importance-weighted
source-validation risk, lower is better.

The density ratio ``w(x) = p_t(x) / p_s(x)`` comes from a domain classifier on the features (source 1, target 0):
``w = P(target | x) / P(source | x) * N_s / N_t`` at each source-validation sample. ``dev`` and ``devn`` use the
official classifier, scikit-learn's ``MLPClassifier(hidden_layer_sizes=(d, d, 2), alpha=L2)`` (ReLU, one logistic
output, Glorot-uniform init, Adam at lr 1e-3, the L2 as ``alpha / batch`` times the weights added to their
gradients), with the L2 chosen from nine values by accuracy on a random 20% of the source + target features (fitted
on the other 80%), then refitted on all of them. The per-sample term is the cross-entropy of the source-validation
logits.

How long each fit trains is a :class:`FitRecipe`. The official one (:data:`REFERENCE_FIT`, scikit-learn's defaults:
batches of 200, up to 200 epochs, stopping once the epoch loss has not improved by 1e-4 for 10 epochs) takes minutes
to quarter-hours per evaluation on this project's sets; ``dev`` and ``devn`` fit as pytorch-adapt does
(:data:`FAST_FIT`: 2 epochs in batches of 32), and ``scripts/bench_validators.py`` gives what that saves and how far its
risk lands from the reference fit's (``results/bench/validators-cpu.md``). ``dev`` and ``devn`` of one evaluation share
one fit.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from normda.validation import density_ratios, dev_risk
from normda.validators.base import Outputs, register

#: the nine L2 strengths both references choose from
DECAYS = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5)


@dataclass(frozen=True)
class FitRecipe:
    """How long the domain classifier trains: at most ``max_epochs`` epochs of ``batch_size`` samples, stopping early
    once the epoch loss has not improved by ``tol`` for ``patience`` epochs (never, with ``patience`` None)."""

    max_epochs: int
    batch_size: int
    patience: int | None = None
    tol: float = 1e-4


#: scikit-learn's ``MLPClassifier`` defaults, which the official code runs with
REFERENCE_FIT = FitRecipe(max_epochs=200, batch_size=200, patience=10)
#: pytorch-adapt's ``DeepEmbeddedValidator``: two epochs in batches of 32
FAST_FIT = FitRecipe(max_epochs=2, batch_size=32)


def _fit_domain_classifier(features: torch.Tensor, domains: torch.Tensor, alpha: float, seed: int,
                           recipe: FitRecipe) -> nn.Module:
    """The official MLP fitted on (N, d) ``features`` and 0/1 ``domains`` as ``recipe`` says; returns a module giving
    the logit of class 1."""
    d = features.shape[1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        classifier = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d), nn.ReLU(), nn.Linear(d, 2), nn.ReLU(),
                                   nn.Linear(2, 1))
        for layer in classifier:  # scikit-learn's Glorot-uniform init
            if isinstance(layer, nn.Linear):
                bound = (6.0 / (layer.in_features + layer.out_features)) ** 0.5
                nn.init.uniform_(layer.weight, -bound, bound)
                nn.init.uniform_(layer.bias, -bound, bound)
    weights = [layer.weight for layer in classifier if isinstance(layer, nn.Linear)]
    optimizer = torch.optim.Adam(classifier.parameters(), lr=1e-3, eps=1e-8)
    batch_size = min(recipe.batch_size, len(features))
    generator = torch.Generator().manual_seed(seed)
    best, stale = float("inf"), 0
    for _ in range(recipe.max_epochs):
        total = 0.0
        for batch in torch.randperm(len(features), generator=generator).split(batch_size):
            optimizer.zero_grad()
            loss = F.binary_cross_entropy_with_logits(classifier(features[batch]).squeeze(1), domains[batch])
            loss.backward()
            with torch.no_grad():
                for weight in weights:
                    weight.grad += alpha / len(batch) * weight
            optimizer.step()
            total += loss.item() * len(batch)
        epoch_loss = total / len(features)
        stale = stale + 1 if epoch_loss > best - recipe.tol else 0
        best = min(best, epoch_loss)
        if recipe.patience is not None and stale >= recipe.patience:
            break
    return classifier.eval()


def mlp_density_ratios(source: torch.Tensor, target: torch.Tensor, query: torch.Tensor, seed: int = 0,
                       recipe: FitRecipe = FAST_FIT) -> np.ndarray:
    """``p_t / p_s`` at ``query`` from the official MLP domain classifier, its L2 chosen on a 20% split."""
    features = torch.cat([source, target]).float()
    domains = torch.cat([torch.ones(len(source)), torch.zeros(len(target))])
    order = torch.randperm(len(features), generator=torch.Generator().manual_seed(seed))
    held_out, fitted = order[: len(order) // 5], order[len(order) // 5:]

    def accuracy(decay: float) -> float:
        classifier = _fit_domain_classifier(features[fitted], domains[fitted], decay, seed, recipe)
        with torch.no_grad():
            return ((classifier(features[held_out]).squeeze(1) > 0).float() == domains[held_out]).float().mean().item()

    best = max(DECAYS, key=accuracy)  # the first of equals, in the references' order
    classifier = _fit_domain_classifier(features, domains, best, seed, recipe)
    with torch.no_grad():
        source_probability = torch.sigmoid(classifier(query.float()).squeeze(1)).clamp(1e-6, 1 - 1e-6)
    return ((1 - source_probability) / source_probability * len(source) / len(target)).double().numpy()


@lru_cache(maxsize=1)  # dev and devn of one evaluation share the fit
def _evaluation_ratios(source_train: Outputs, target: Outputs, source_val: Outputs) -> np.ndarray:
    return mlp_density_ratios(source_train.features, target.features, source_val.features)


def max_normalised(weights: np.ndarray) -> np.ndarray:
    """DEVN's ``max`` normalisation: ``w / max(w)``, then shifted to mean 1."""
    scaled = weights / weights.max()
    return scaled - scaled.mean() + 1.0


def _losses(source_val: Outputs) -> np.ndarray:
    return F.cross_entropy(source_val.logits.float(), source_val.labels, reduction="none").double().numpy()


@register("dev", "min", ("source_train", "source_val", "target"))
def dev(source_train: Outputs, source_val: Outputs, target: Outputs) -> float:
    return dev_risk(_evaluation_ratios(source_train, target, source_val), _losses(source_val))


@register("devn", "min", ("source_train", "source_val", "target"))
def devn(source_train: Outputs, source_val: Outputs, target: Outputs) -> float:
    return dev_risk(max_normalised(_evaluation_ratios(source_train, target, source_val)), _losses(source_val))


@register("dev_logistic", "min", ("source_train", "source_val", "target"))
def dev_logistic(source_train: Outputs, source_val: Outputs, target: Outputs) -> float:
    """This project's earlier DEV: a logistic regression on standardised features for the density ratio."""
    weights = density_ratios(source_train.features.numpy(), target.features.numpy(), source_val.features.numpy())
    return dev_risk(weights, _losses(source_val))
