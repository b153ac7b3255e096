"""Accuracy on a labelled set, streamed batch by batch into a confusion matrix."""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader

from normalization import evaluation_domain


@dataclass
class Evaluation:
    accuracy: float  # % of samples classified correctly
    mean_class_accuracy: float  # % averaged over classes (VisDA's "mean")
    per_class_accuracy: list[float]
    samples: int


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


def evaluate(model: nn.Module, loader: DataLoader, num_classes: int, device: torch.device,
             domain: str | None = None) -> Evaluation:
    """Evaluate ``model`` (returning ``(logits, features)``) in eval mode on single images or crops; domain-aware
    layers use ``domain``'s statistics, or their own setting when it is None. The model's train/eval mode is restored
    afterwards."""
    was_training = model.training
    model.eval()
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.long, device=device)
    try:
        with torch.inference_mode(), evaluation_domain(model, domain) if domain else nullcontext():
            for images, labels in loader:
                predictions = predict(model, images.to(device, non_blocking=True))
                labels = labels.to(device, non_blocking=True)
                confusion += torch.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes)
    finally:
        model.train(was_training)
    return accuracy_from_confusion(confusion.view(num_classes, num_classes).cpu())
