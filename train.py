"""Train and evaluate one domain adaptation run (or, with -m, a sweep of them).

    python train.py                                  # embedded MNIST->USPS: DTN + TransNorm + CDAN+E, no download
    python train.py norm=transnorm method=cdan data=office31 data.source=A data.target=W
    python train.py -m norm=bn,transnorm method=dann,cdan seed=0,1,2
    python train.py --help                           # the config groups and their options
"""
from __future__ import annotations

import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from hydra.types import RunMode

from normda.cli import Started, fail, run_with_one_line_errors
from normda.errors import UserError, one_line
from normda.interrupts import Interrupted
from normda.resolvers import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Train one run; return its score by ``search.objective`` (a label-free validator) to a sweeper, else nothing:
    a sweeper never tunes on the target accuracy."""
    from normda.experiment import train
    from normda.search import objective_value

    Started.value = True
    hydra_config = HydraConfig.get()
    try:
        summary = train(cfg, hydra_config.runtime.output_dir)
    except UserError as error:
        if hydra_config.mode == RunMode.MULTIRUN:
            raise  # Hydra records the failed job, goes on with the others, and raises the first failure at the end
        fail(one_line(error))
    except Interrupted as interrupted:  # the run is saved; a sweep stops here too
        print(f"error: {interrupted.message()}", file=sys.stderr, flush=True)
        sys.exit(interrupted.exit_status)
    objective = cfg.search.objective
    score = objective_value(objective, hydra_config.runtime.output_dir) if objective else None
    if os.environ.get("RANK", "0") != "0":
        return score  # torchrun: process 0 reports
    ten_crop = (f", 10-crop {summary['target_accuracy_10crop_last']:.2f}%"
                if "target_accuracy_10crop_last" in summary else "")
    class_averaged = f", class-averaged {summary['target_mean_class_accuracy_last']:.2f}%"
    finished = "already finished, nothing to do (delete the run folder to train it again): " if summary.get(
        "already_finished") else ""
    print(
        f"{finished}target accuracy on {summary['target']} ({summary['target_test_samples']} test images): "
        f"{summary['target_accuracy_last']:.2f}%{ten_crop}{class_averaged} after {summary['iterations']} iterations "
        f"(best {summary['target_accuracy_best']:.2f}% at {summary['target_accuracy_best_step']}); run folder "
        f"{hydra_config.runtime.output_dir}" + (f"; search objective {objective}: {score:.6g}" if objective else "")
    )
    return score


if __name__ == "__main__":
    run_with_one_line_errors(main, sys.argv[1:])
