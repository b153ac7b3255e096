"""What the TransNorm paper's analysis figures measure, from a finished run folder.

* :func:`load_trained`: the run's model (its ``config.yaml`` and ``checkpoint.pt``) and its data.
* :func:`domain_features`: bottleneck features and labels of source and target samples.
* :func:`a_distance`: the proxy A-distance ``2 (1 - 2 err)`` of a domain classifier trained on half of the features and
  tested on the other half (Ben-David et al., 2010; Figure 5c).
* :func:`ideal_joint_error`: lambda, the error of one classifier trained on the labelled features of both domains
  (the ideal joint hypothesis of the same bound), measured on held-out halves.
* :func:`transnorm_alphas`: the per-channel alpha of every TransNorm layer from its running statistics (Figure 3).

The classifiers are scikit-learn's logistic regressions on standardised features.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.utils.data import DataLoader, Subset

from normda import datasets
from normda.evaluate import evaluate
from normda.experiment import build_model
from normda.config_identity import with_added_settings
from normda.run_folder import RunFolder
from normda.datasets.base import hold_out
from normda.normalization import TransNorm1d, TransNorm2d, TransNorm3d, transferability_alpha
from normda.errors import DataNotFoundError


def load_trained(run_dir: str | Path):
    """``(cfg, model, task)`` of a run: the model rebuilt from its config (no download: the checkpoint holds the
    weights) with its last checkpoint loaded, in eval mode."""
    run = RunFolder.existing(run_dir)
    if not run.config.exists() or not run.checkpoint.exists():
        raise DataNotFoundError(f"{run.path} is not a run folder with a checkpoint: give a folder train.py wrote")
    cfg = with_added_settings(OmegaConf.load(run.config))
    cfg.backbone.pretrained, cfg.backbone.weights = False, None
    task = datasets.build(cfg.data)
    model, _ = build_model(cfg, task.num_classes)
    model.load_state_dict(run.load_checkpoint()["model"])
    return cfg, model.eval(), task


def _subset(dataset, limit: int):
    indices = hold_out(len(dataset), 1.0 - min(limit / len(dataset), 1.0), seed=0)[0]
    return Subset(dataset, indices)


def domain_features(model: nn.Module, task, limit: int = 500, batch_size: int = 64):
    """Bottleneck features and labels of at most ``limit`` source-training and target-test samples:
    ``(source_features, source_labels, target_features, target_labels)`` as NumPy arrays."""
    parts = []
    for dataset, domain in ((task.source_train, "source"), (task.target_test, None)):
        loader = DataLoader(_subset(dataset, limit), batch_size=batch_size)
        result = evaluate(model, loader, task.num_classes, torch.device("cpu"), domain,
                          keep_features=len(loader.dataset))
        parts += [result.features.numpy(), result.labels.numpy()]
    return tuple(parts)


def _held_out_error(features: np.ndarray, labels: np.ndarray, seed: int = 0) -> float:
    train_x, test_x, train_y, test_y = train_test_split(features, labels, test_size=0.5, random_state=seed,
                                                        stratify=labels if len(np.unique(labels)) > 1 else None)
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(train_x, train_y)
    return float(np.mean(classifier.predict(test_x) != test_y))


def a_distance(source_features: np.ndarray, target_features: np.ndarray) -> float:
    """Proxy A-distance between the two feature sets: 0 when a classifier cannot tell them apart, 2 when it always
    can."""
    features = np.concatenate([source_features, target_features])
    domains = np.concatenate([np.zeros(len(source_features)), np.ones(len(target_features))])
    return 2.0 * (1.0 - 2.0 * min(_held_out_error(features, domains), 0.5))


def ideal_joint_error(source_features: np.ndarray, source_labels: np.ndarray, target_features: np.ndarray,
                      target_labels: np.ndarray) -> float:
    """lambda: the held-out error of one classifier trained on both domains' labelled features."""
    return _held_out_error(np.concatenate([source_features, target_features]),
                           np.concatenate([source_labels, target_labels]))


def transnorm_alphas(model: nn.Module) -> dict[str, np.ndarray]:
    """Every TransNorm layer's per-channel alpha (Eq. 5-6) from its running statistics, by layer name."""
    alphas = {}
    for name, layer in model.named_modules():
        if isinstance(layer, (TransNorm1d, TransNorm2d, TransNorm3d)):
            with torch.no_grad():
                alpha = transferability_alpha(*layer.running_stats("source"), *layer.running_stats("target"),
                                              layer.eps, layer.distance, layer.probability)
            alphas[name] = alpha.cpu().numpy()
    return alphas
