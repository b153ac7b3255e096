"""One training run from one resolved config: each step of the pipeline is one call.

    datasets.build -> backbones.build + ImageClassifier -> normalization.convert -> dann_cdan.build -> Trainer.fit
    -> run folder (config.yaml and labels.json first, metrics.jsonl per evaluation, summary.json and done last)
"""
from __future__ import annotations

import importlib.metadata
import logging
import platform
import random
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from normda import backbones, dann_cdan, datasets, normalization
from normda.acceleration import Acceleration
from normda.distributed import Distributed
from normda.errors import (ConfigError, OutOfMemory, RunFolderBusy, RunFolderGone, RunInputsChanged, UserError,
                           one_line)
from normda.interrupts import Interrupts
from normda.loggers import build_logger
from normda.model import ImageClassifier, build_classifier, init_bottleneck_gamma
from normda.optim import build_optimizer
from normda.config_identity import config_id, recorded_config, run_name
from normda.labels import table_labels
from normda.run_folder import RunFolder
from normda.registry import node_settings
from normda.schema import check_config
from normda.trainer import Trainer, TrainingPlan, training_length

log = logging.getLogger(__name__)


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ConfigError(f"trainer.device={name} is not a device: give auto, cpu, cuda or cuda:<index>") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={name} but no CUDA device is available: use trainer.device=auto or cpu")
    return device


def build_model(cfg: DictConfig, num_classes: int) -> tuple[ImageClassifier, normalization.Normalization]:
    """Backbone + bottleneck + head, with every BatchNorm swapped for ``cfg.norm``; and that normalization option
    (the trainer calls its hooks)."""
    backbone = backbones.build(cfg.backbone)
    fixed_size = getattr(backbone, "input_size", None)
    if fixed_size is not None and fixed_size != cfg.data.image_size:
        raise ConfigError(f"backbone={cfg.backbone.name} is built for {fixed_size}px images but data.image_size="
                          f"{cfg.data.image_size}: set data.image_size={fixed_size} (or backbone.input_size)")
    model = build_classifier(backbone, num_classes, cfg.model)
    option = normalization.build(cfg.norm.name, **node_settings(cfg.norm, "exclude"))
    normalization.convert(model, option, exclude=cfg.norm.exclude)
    init_bottleneck_gamma(model, cfg.model.bottleneck_gamma_init)
    return model, option


def versions() -> dict[str, str]:
    """The versions a run records; torchvision's and timm's from their installed metadata, so that a run that does not
    use them never imports them."""
    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": importlib.metadata.version("torchvision"),
            "timm": importlib.metadata.version("timm"), "cuda": torch.version.cuda or "none"}


def train(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """Train and evaluate the run that ``cfg`` describes in ``run_dir``; return its summary.

    A run whose folder holds the done marker is not trained again; one with a checkpoint resumes from it. A run that
    stops on an error leaves the one-line reason in its ``failed`` file (for ``scripts/collect.py``).
    """
    try:
        try:
            return _train(cfg, run_dir)
        except torch.OutOfMemoryError as error:
            raise OutOfMemory(f"out of memory ({str(error).splitlines()[0][:120]}): lower "
                              f"data.batch_size (now {cfg.data.batch_size}) or data.image_size, or set "
                              f"trainer.amp=true") from error
        except RuntimeError as error:  # the CPU's allocator raises a plain RuntimeError
            if "DefaultCPUAllocator: not enough memory" not in str(error):
                raise
            raise OutOfMemory(f"the batch of data.batch_size={cfg.data.batch_size} images a domain at "
                              f"{cfg.data.image_size} px needs more memory than this machine has: lower "
                              f"data.batch_size or data.image_size") from error
    except (RunFolderBusy, RunInputsChanged):
        raise  # the folder is another process's, or another run's: nothing of this one is written there
    except Exception as error:
        if not Path(run_dir).is_dir() and isinstance(error, OSError):
            raise RunFolderGone(f"the run folder {run_dir} was deleted while the run was writing to it "
                                f"({type(error).__name__}): run the same command to train it again from the start"
                                ) from error
        folder = RunFolder.existing(run_dir)
        if folder.path.is_dir() and not folder.done:  # a finished run stays finished
            message = one_line(error) if isinstance(error, UserError) else f"{type(error).__name__}: {error}"
            folder.mark_failed(" ".join(message.split()))
        raise


def _train(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    check_config(cfg)
    run = RunFolder(run_dir)
    seed_everything(cfg.seed, cfg.trainer.deterministic)
    distributed, device = Distributed.from_environment(resolve_device(cfg.trainer.device))
    try:
        with run.writer_lock() if distributed.main else nullcontext():  # one writer per run folder
            if run.done:
                if run.inputs.exists():  # finished on these files, or on others under the same name?
                    run.check_inputs(datasets.build(cfg.data).inputs)
                log.info("already finished: %s; delete the folder to train it again", run.path)
                return {**run.read_summary(), "already_finished": True}
            # SIGINT/SIGTERM save the run and stop it; under torchrun the processes stop as torchrun stops them
            with Interrupts(enabled=not distributed.active) as interrupts:
                return _train_process(cfg, run, distributed, device, interrupts)
    finally:
        distributed.shutdown()


def _train_process(cfg: DictConfig, run: RunFolder, distributed: Distributed, device: torch.device,
                   interrupts: Interrupts) -> dict[str, Any]:
    """This process's part of the run (the whole run without torchrun)."""
    labels = table_labels(cfg)
    if distributed.main:  # first, so that a run that fails to start is still listed, with its reason
        run.write_config(cfg)
        run.write_labels(labels)
    task = datasets.build(cfg.data)
    if distributed.main:
        run.check_inputs(task.inputs)
    model, norm = build_model(cfg, task.num_classes)
    model.to(device)
    method = dann_cdan.build(cfg.method, model.features_dim, task.num_classes).to(device)
    norm.choose_test_stats(model, trains_on_target=method.uses_target)
    iterations, eval_every = training_length(cfg.trainer, len(task.source_train), len(task.target_train),
                                             cfg.data.batch_size, distributed.world_size)
    lr_mult = cfg.optim.lr_mult
    optimizer, scheduler = build_optimizer(
        model.parameter_groups(lr_mult)
        + [{"name": "method", "params": list(method.parameters()), "lr_mult": lr_mult.method}],
        cfg.optim, iterations,
    )
    if distributed.rank:  # the same initial weights (DDP also broadcasts them), other dropout masks
        torch.manual_seed(cfg.seed + 100_003 * distributed.rank)
    plan = TrainingPlan(
        iterations=iterations, eval_every=eval_every, batch_size=cfg.data.batch_size,
        eval_batch_size=cfg.data.eval_batch_size, num_workers=cfg.data.num_workers, seed=cfg.seed, device=device,
        progress=cfg.trainer.progress, ten_crop=cfg.trainer.ten_crop,
        acceleration=Acceleration.from_config(cfg.trainer, device), distributed=distributed,
        validators=tuple(cfg.trainer.validators),
    )
    identity = config_id(cfg)
    config = {**recorded_config(cfg), "labels": labels}  # W&B's copy: collect.py --wandb reads the labels there
    logger_cfg = cfg.logger if distributed.main else OmegaConf.create({"name": "none"})
    logger = build_logger(logger_cfg, run.path, identity, run_name(cfg), config)
    try:
        trainer = Trainer(model, norm, method, task, optimizer, scheduler, run, logger, plan, interrupts)
        trainer.resume()
        sizes = ", ".join(f"{part.replace('_', ' ')} {count}" for part, count in task.sizes().items())
        log.info("%s -> %s: %s (%s images) on %s%s", task.source, task.target, run.path.name, sizes, device,
                 f" (process {distributed.rank} of {distributed.world_size})" if distributed.active else "")
        results = trainer.fit()
        if not distributed.main:
            distributed.barrier()  # process 0 writes the summary
            return run.read_summary()
        summary = {
            **results,
            "run": run.path.name, "config_id": identity, "source": task.source, "target": task.target,
            "dataset_sizes": task.sizes(), **task.notes, "versions": versions(),
        }
        run.write_summary(summary)
        logger.update_summary({key: value for key, value in summary.items() if not isinstance(value, dict)})
        run.mark_done()
        distributed.barrier()
    finally:
        logger.finish()
    return summary
