"""The speed options of a run: mixed precision (``trainer.amp``), channels-last memory (``trainer.channels_last``) and
``torch.compile`` (``trainer.compile``). Each is PyTorch's own mechanism, switched on by one config key."""
from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn


AMP_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class Acceleration:
    device: torch.device
    amp_dtype: torch.dtype | None = None  # autocast's dtype, None: full precision
    channels_last: bool = False
    compile: bool = False

    @classmethod
    def from_config(cls, trainer_cfg, device: torch.device) -> "Acceleration":
        """``trainer.amp``, ``trainer.amp_dtype`` (auto | bfloat16 | float16), ``trainer.channels_last``,
        ``trainer.compile`` (checked against ``normda.trainer.TrainerConfig``). ``auto`` is bfloat16 on the CPU and on
        GPUs that support it, float16 elsewhere."""
        amp_dtype = None
        if trainer_cfg.amp:
            name = trainer_cfg.amp_dtype
            if name == "auto":
                bf16 = device.type != "cuda" or torch.cuda.is_bf16_supported()
                name = "bfloat16" if bf16 else "float16"
            amp_dtype = AMP_DTYPES[name]
        return cls(device, amp_dtype, bool(trainer_cfg.channels_last), bool(trainer_cfg.compile))

    def autocast(self) -> AbstractContextManager:
        """The forward pass and the losses run under this context."""
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A loss scaler for float16 (whose small gradients underflow); disabled, a no-op, otherwise."""
        return torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        """A batch moved to the device, in channels-last memory for 4-D images when asked."""
        if self.channels_last and images.dim() == 4:
            return images.to(self.device, non_blocking=True, memory_format=torch.channels_last)
        return images.to(self.device, non_blocking=True)

    def prepare(self, model: nn.Module) -> nn.Module:
        """Convert ``model`` in place to channels-last memory; return the module to call: ``torch.compile(model)``
        (which shares its parameters, so ``model`` stays the one to save) or ``model`` itself."""
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return torch.compile(model) if self.compile else model
