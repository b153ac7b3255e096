"""Source validation accuracy: the accuracy on labelled source samples held out of training (the baseline both
benchmarks compare every validator with)."""
from __future__ import annotations

from normda.validators.base import Outputs, register


@register("source_val", "max", ("source_val",))
def source_validation_accuracy(source_val: Outputs) -> float:
    """Top-1 accuracy (%) on the held-out source samples."""
    return 100.0 * (source_val.logits.argmax(dim=1) == source_val.labels).float().mean().item()
