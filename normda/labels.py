"""A run's table labels, decided once, when it trains, and kept in its folder's ``labels.json``."""
from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from normda.dann_cdan import METHODS
from normda.normalization import NORMALIZATIONS
from normda.registry import changed_settings, node_settings


def table_labels(cfg: DictConfig) -> dict[str, Any]:
    """Every label a table groups a run by, decided once, at training time, and kept in the run folder's
    ``labels.json``: the preset, the protocol, the dataset, the backbone, the method (as its class names it in tables:
    ``cdan_e`` for CDAN with entropy conditioning), the normalization with the settings that differ from its own
    defaults (``transnorm[alpha=one]``; a setting another axis chose by interpolation, such as BGN's per-task G, is not
    part of the label), the variant (the values of the keys a preset sweeps besides those, ``experiment.vary``, and the
    part of the source held out of training), the task (``A->W``) and the seed; and how its preset's table reports it
    (``report.metric`` at the evaluation ``report.selection`` picks)."""
    chosen = node_settings(cfg.norm, "exclude", resolve=False)
    changed = changed_settings(NORMALIZATIONS.get(cfg.norm.name), chosen)
    written = {key: str(value).lower() if isinstance(value, bool) else value for key, value in changed.items()}
    norm_label = cfg.norm.name + (f"[{','.join(f'{k}={v}' for k, v in written.items())}]" if written else "")
    return {
        "experiment": str(OmegaConf.select(cfg, "experiment.name", default="") or ""),
        "protocol": str(cfg.protocol),
        "dataset": cfg.data.name,
        "backbone": cfg.backbone.get("model") or cfg.backbone.name,
        "method_label": METHODS.get(cfg.method.name).table_label(cfg.method.name, node_settings(cfg.method)),
        "norm_label": norm_label,
        "variant": variant_label(cfg),
        "task_label": f"{cfg.data.source}->{cfg.data.target}",
        "seed": int(cfg.seed),
        "metric": str(cfg.report.metric),
        "selection": str(cfg.report.selection),
    }


def variant_label(cfg: DictConfig) -> str:
    """``lr=0.001, head_lr=1.0, source held out 0.1``: the keys the preset names in ``experiment.vary`` (by their last
    part) and a held-out part of the source or of the target; "" for a run trained as its paper row."""
    parts = [f"{key.rsplit('.', 1)[-1]}={OmegaConf.select(cfg, key)}"
             for key in OmegaConf.select(cfg, "experiment.vary", default=None) or []]
    if cfg.data.source_val_fraction:
        parts.append(f"source held out {cfg.data.source_val_fraction:g}")
    if cfg.data.target_val_fraction:
        parts.append(f"target held out {cfg.data.target_val_fraction:g}")
    return ", ".join(parts)
