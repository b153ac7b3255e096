"""Loading pretrained weights: from a local file, or downloaded by torchvision / timm, with a one-line error offline."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from normda.errors import WeightsUnavailableError


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.pth``/``.pt``/``.safetensors`` file, unwrapping ``{"state_dict": ...}`` or
    ``{"model": ...}`` checkpoints. Pickles are read with ``weights_only=True``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsUnavailableError(f"backbone.weights={path} does not exist: give the path of a weights file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # an unreadable file is the user's to fix, whatever the unpickler raised
        reason = " ".join(str(error).split())[:160]
        raise WeightsUnavailableError(f"cannot read backbone.weights={path}: it is not a PyTorch (.pth, .pt) or "
                                      f".safetensors weights file ({type(error).__name__}: {reason}): give the file "
                                      f"the weights were saved to") from error
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise WeightsUnavailableError(f"backbone.weights={path} holds a {type(state).__name__}, not a state dict")
    return state


def load_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str,
                 ignore_prefix: str = "") -> None:
    """Load ``state`` into ``model``, skipping keys under ``ignore_prefix`` (a checkpoint's classifier). Any other
    missing, unexpected or differently shaped tensor is a :class:`WeightsUnavailableError`; only BatchNorm's
    ``num_batches_tracked`` counters may be absent (old checkpoints, such as torchvision's first ResNets, lack them)."""
    if ignore_prefix:
        state = {key: value for key, value in state.items() if not key.startswith(f"{ignore_prefix}.")}
    own = model.state_dict()
    missing = [key for key in own if key not in state and not key.endswith("num_batches_tracked")]
    unexpected = [key for key in state if key not in own]
    misshapen = [key for key in own if key in state and state[key].shape != own[key].shape]
    if missing or unexpected or misshapen:
        raise WeightsUnavailableError(
            f"{source} does not fit {type(model).__name__}: {len(missing)} missing tensors, {len(unexpected)} "
            f"unexpected, {len(misshapen)} of another shape (first: {(missing + unexpected + misshapen)[0]})"
        )
    model.load_state_dict(state, strict=False)


@contextmanager
def download_errors(what: str, fix: str) -> Iterator[None]:
    """Turn a failed download (no network, host down) into a one-line :class:`WeightsUnavailableError` that names the
    two ways out: the weights as a local file (``fix``), or a backbone whose ImageNet weights install offline."""
    try:
        yield
    except OSError as error:  # URLError, socket errors and huggingface_hub's LocalEntryNotFoundError are OSErrors
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise WeightsUnavailableError(f"cannot download {what} ({reason[:160]}): {fix}, or train a backbone whose "
                                      f"ImageNet weights install with normda: backbone=efficientnet_lite0") from error
