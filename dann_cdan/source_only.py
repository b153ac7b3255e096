"""Source only (ERM): the source cross-entropy alone, the baseline every adaptation method is compared with."""
from __future__ import annotations

from typing import Any, Mapping

import torch

from normda.dann_cdan.base import AdaptationMethod, StepOutputs, register


@register("source_only")
class SourceOnly(AdaptationMethod):
    """No transfer term. With ``forward_target=false`` (default) the target domain is never seen in training, so
    domain-aware normalizations update only their source statistics (and, with ``norm.test_stats=auto``, are evaluated
    with them); ``forward_target=true`` still passes target batches through the network (their statistics are
    estimated and used at evaluation) without any loss on them."""

    def __init__(self, features_dim: int, num_classes: int, forward_target: bool = False):
        super().__init__()
        self.uses_target = forward_target

    @classmethod
    def table_label(cls, name: str, settings: Mapping[str, Any]) -> str:
        """``source_only[forward_target=true]`` when the target batches pass through: a domain-aware norm then trains
        and tests with the target's statistics, a different baseline that a table must not average with the plain one."""
        return f"{name}[forward_target=true]" if settings.get("forward_target") else name

    def forward(self, outputs: StepOutputs, step: int) -> dict[str, torch.Tensor]:
        return {"loss": outputs.logits_source.new_zeros(())}
