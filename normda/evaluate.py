"""Accuracy on a labelled set, streamed batch by batch into a confusion matrix."""
from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader

from normda.acceleration import Acceleration
from normda.normalization import using_test_stats


@dataclass
class Evaluation:
    accuracy: float  # % of samples classified correctly
    mean_class_accuracy: float  # % averaged over classes (VisDA's "mean")
    per_class_accuracy: list[float]
    samples: int
    features: torch.Tensor | None = None  # (K, D) bottleneck features of K kept samples, on the CPU, when asked for
    labels: torch.Tensor | None = None  # (K,) their labels, when asked for
    logits: torch.Tensor | None = None  # (K, C) their logits, when asked for


def accuracy_from_confusion(confusion: torch.Tensor) -> Evaluation:
    """``confusion[true, predicted]`` counts -> overall, per-class and class-averaged accuracy in %."""
    confusion = confusion.double()
    per_class = 100.0 * confusion.diag() / confusion.sum(dim=1).clamp(min=1)
    present = confusion.sum(dim=1) > 0
    return Evaluation(
        accuracy=float(100.0 * confusion.diag().sum() / confusion.sum().clamp(min=1)),
        mean_class_accuracy=float(per_class[present].mean()) if present.any() else 0.0,
        per_class_accuracy=per_class.tolist(),
        samples=int(confusion.sum()),
    )


def predict(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Class predictions; a (B, crops, C, H, W) batch is predicted from the sum of its crops' softmaxes."""
    if images.dim() == 5:
        batch, crops = images.shape[:2]
        logits, _ = model(images.flatten(0, 1))
        return logits.softmax(dim=1).view(batch, crops, -1).sum(dim=1).argmax(dim=1)
    logits, _ = model(images)
    return logits.argmax(dim=1)


def _features_and_logits(model: nn.Module, images: torch.Tensor):
    logits, features = model(images)
    return logits.argmax(dim=1), features, logits


def evaluate(model: nn.Module, loader: DataLoader, num_classes: int, device: torch.device,
             domain: str | None = None, keep_features: int = 0, acceleration: Acceleration | None = None
             ) -> Evaluation:
    """Evaluate ``model`` (returning ``(logits, features)``) in eval mode on single images or crops, streaming the
    set into a confusion matrix; domain-aware layers use ``domain``'s statistics, or their own setting when it is
    None. ``keep_features`` (single images only) also returns the features, logits and label of at most that many
    samples, every k-th of the set in loader order (so a class-sorted list keeps every class); memory stays
    bounded however large the set. ``acceleration`` applies the run's autocast and memory format. The model's train/eval
    mode is restored afterwards."""
    acceleration = acceleration or Acceleration(device)
    was_training = model.training
    model.eval()
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.long, device=device)
    stride = max(1, math.ceil(len(loader.dataset) / keep_features)) if keep_features else 0
    features, kept_labels, kept_logits = [], [], []
    seen = 0
    try:
        with torch.inference_mode(), using_test_stats(model, domain) if domain else nullcontext():
            for images, labels in loader:
                images = acceleration.inputs(images)
                labels = labels.to(device, non_blocking=True)
                with acceleration.autocast():
                    if keep_features:
                        predictions, batch_features, logits = _features_and_logits(model, images)
                        kept = torch.arange(-seen % stride, len(labels), stride, device=device)
                        features.append(batch_features[kept].float().cpu())
                        kept_logits.append(logits[kept].float().cpu())
                        kept_labels.append(labels[kept].cpu())
                    else:
                        predictions = predict(model, images)
                seen += len(labels)
                confusion += torch.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes)
    finally:
        model.train(was_training)
    result = accuracy_from_confusion(confusion.view(num_classes, num_classes).cpu())
    if keep_features:
        result.features, result.logits = torch.cat(features), torch.cat(kept_logits)
        result.labels = torch.cat(kept_labels)
    return result
