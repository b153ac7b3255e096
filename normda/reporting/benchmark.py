"""What the benchmark scripts (``scripts/bench_*.py``) share: the composed config of a command line, a description of
the machine, device synchronisation around timers, and results written atomically as JSON plus a Markdown table."""
from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig
from scipy.stats import quantile_test

from normda.experiment import resolve_device, versions
from normda.resolvers import register_resolvers
from normda.run_folder import atomic_write_text

__all__ = ["compose_config", "machine", "markdown_table", "resolve_device", "synchronize", "write_results"]


def compose_config(config_dir: Path, overrides: list[str]) -> DictConfig:
    """The config ``python train.py <overrides>`` would run with, composed from ``config_dir`` (the checkout's
    ``conf/``, which the bench scripts beside it name)."""
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir)):
        return compose("config", overrides=overrides)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine(device: torch.device) -> dict[str, Any]:
    """The device, the CPU, its cores and torch's threads, and the library versions."""
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
        "cpu": _cpu_name(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        **versions(),
    }


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a timer measures it (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """A distribution-free confidence interval of the median of ``values``: the binomial order-statistics interval of
    ``scipy.stats.quantile_test``; the whole range where ``values`` are too few for ``confidence``."""
    low, high = quantile_test(values, q=float(np.median(values)), p=0.5).confidence_interval(confidence)
    return (min(values), max(values)) if math.isnan(low) or math.isnan(high) else (float(low), float(high))


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    return pd.DataFrame(rows, columns=header).to_markdown(index=False)


def write_results(path: Path, report: dict[str, Any], markdown: str) -> None:
    """``report`` as JSON at ``path`` and ``markdown`` beside it (``.md``), each written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(report, indent=2) + "\n")
    atomic_write_text(path.with_suffix(".md"), f"{markdown}\n")
