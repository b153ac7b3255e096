"""Deep Embedded Validation (You, Wang, Long & Jordan, ICML 2019): a target risk estimate without target labels.

A domain classifier, trained on source-training and target features, estimates the density ratio
``w(x) = p_t(x) / p_s(x) = (n_s / n_t) P(target | x) / P(source | x)`` for each held-out source-validation sample.
The importance-weighted validation loss ``L_i = w_i loss_i`` is an unbiased estimate of the target risk; DEV lowers its
variance with ``w`` as a control variate, whose expectation is 1:

    eta = -Cov(L, w) / Var(w),    DEV risk = mean(L) + eta mean(w) - eta

The checkpoint with the lowest DEV risk is the one DEV selects (the TransNorm paper chose hyperparameters this way).
"""
from __future__ import annotations

import numpy as np


def density_ratios(source_features: np.ndarray, target_features: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``p_t(x) / p_s(x)`` at ``query`` from a logistic-regression domain classifier on standardised features."""
    from sklearn.linear_model import LogisticRegression  # only runs that hold out source data need scikit-learn
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(np.concatenate([source_features, target_features]))
    inputs = scaler.transform(np.concatenate([source_features, target_features]))
    domains = np.concatenate([np.zeros(len(source_features)), np.ones(len(target_features))])
    classifier = LogisticRegression(max_iter=1000).fit(inputs, domains)
    target_probability = np.clip(classifier.predict_proba(scaler.transform(query))[:, 1], 1e-6, 1 - 1e-6)
    return target_probability / (1 - target_probability) * len(source_features) / len(target_features)


def dev_risk(weights: np.ndarray, losses: np.ndarray) -> float:
    """The control-variate estimate of the importance-weighted risk."""
    weighted = weights * losses
    covariance = np.cov(np.stack([weighted, weights]), ddof=1)
    eta = -covariance[0, 1] / covariance[1, 1] if covariance[1, 1] > 0 else 0.0
    return float(weighted.mean() + eta * weights.mean() - eta)
