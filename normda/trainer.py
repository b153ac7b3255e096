"""The one training loop every method shares (TLlib's loop, without its per-method copies).

Each iteration draws a source and a target batch, runs **one** forward pass over ``[x_s; x_t]`` inside
``normalization.domain_split`` (so BatchNorm mixes the domains and TransNorm separates them), adds the method's term to
the source cross-entropy, and steps the optimizer and the per-iteration learning-rate schedule. Every
``eval_every`` iterations and at the end it evaluates on the target test set, appends a line to ``metrics.jsonl`` and
saves a checkpoint; a run restarted with the same command resumes from that checkpoint.

The hot path never waits for the device: losses are summed on the device and read once per evaluation, which is
also when the progress bar shows them. ``trainer.amp``, ``trainer.channels_last`` and ``trainer.compile`` switch on
autocast, channels-last memory and ``torch.compile`` (``normda/acceleration.py``).
"""
from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from normda.acceleration import Acceleration
from normda.distributed import Distributed
from normda.evaluate import Evaluation, evaluate
from normda.interrupts import Interrupted, Interrupts
from normda.dann_cdan.base import AdaptationMethod, StepOutputs
from normda.run_folder import RunFolder
from normda.validators import VALIDATORS, Outputs
from normda.datasets import DomainAdaptationTask
from normda.normalization import Normalization, domain_split
from normda.errors import BatchTooSmallError, TrainingDivergedError
from normda.registry import AtLeast

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainerConfig:
    """The ``trainer`` node of ``conf/config.yaml``: one field per key, with its type (``experiment`` checks the node
    against it before anything is built)."""

    iterations: Annotated[int, AtLeast(1)]
    eval_every: Annotated[int, AtLeast(1)]
    epochs: Annotated[int, AtLeast(1)] | None  # set: the run's length in epochs (see training_length)
    epoch_of: Literal["source", "larger"]  # an epoch passes over the source, or over the larger training set
    validators: list[str]  # the label-free validators each evaluation computes (normda/validators/)
    output_dir: str
    device: str  # auto | cpu | cuda | cuda:1 ...
    deterministic: bool
    progress: bool
    ten_crop: bool
    amp: bool
    amp_dtype: Literal["auto", "bfloat16", "float16"]
    channels_last: bool
    compile: bool


def training_length(trainer: Any, source_size: int, target_size: int, batch_size: int,
                    world_size: int = 1) -> tuple[int, int]:
    """(iterations, eval_every) of a run: ``trainer.iterations`` and ``trainer.eval_every``, or, with
    ``trainer.epochs`` set, that many epochs of ``size // (batch_size x world_size)`` iterations (full batches, as the
    loaders drop the last one), evaluated after each epoch. ``size`` is the source's (``trainer.epoch_of=source``:
    DAFT's epochs) or the larger training set's (``larger``: the CDAN code's digits epochs, ``max(len(source),
    len(target))`` batches)."""
    if trainer.epochs is None:
        return trainer.iterations, trainer.eval_every
    size = source_size if trainer.epoch_of == "source" else max(source_size, target_size)
    epoch = max(size // (batch_size * world_size), 1)
    return trainer.epochs * epoch, epoch


@dataclass
class TrainingPlan:
    """What the trainer is given for one run, resolved from the checked config (``TrainerConfig`` is the node's
    schema): its length, batches, seed, device, acceleration and processes."""

    iterations: int
    eval_every: int
    batch_size: int
    eval_batch_size: int
    num_workers: int
    seed: int
    device: torch.device
    progress: bool = True
    ten_crop: bool = False
    acceleration: Acceleration | None = None  # None: full precision, contiguous memory, eager
    distributed: Distributed = Distributed()  # the processes of a torchrun job (one by default)
    validators: tuple[str, ...] = ()  # the label-free validators each evaluation computes (normda/validators/)

    #: at most this many target samples keep their features for DEV's domain classifier (memory stays bounded).
    dev_target_samples: int = 2000
    #: the loss terms are checked for NaN/Inf every this many iterations (one host sync) and before every checkpoint.
    finite_check_every: int = 100


def rng_state() -> dict[str, Any]:
    """RNG states of python, numpy and torch as plain types and tensors (loadable with ``weights_only=True``)."""
    numpy_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(numpy_state[1].copy()), "pos": numpy_state[2],
                  "has_gauss": numpy_state[3], "cached_gaussian": numpy_state[4]},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy = state["numpy"]
    np.random.set_state(("MT19937", numpy["keys"].numpy(), numpy["pos"], numpy["has_gauss"],
                         numpy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def check_finite(history: list[tuple[int, dict[str, torch.Tensor | float]]],
                 distributed: Distributed = Distributed()) -> None:
    """Raise :class:`TrainingDivergedError` naming the first iteration and loss term of ``history`` that is NaN or
    infinite. One host synchronisation for the whole history (the trainer checks every ``finite_check_every``
    iterations and before every checkpoint, so a checkpoint never holds a diverged model). Under torchrun every
    process stops when any one's loss went bad."""
    if not history:
        return
    names = [name for name in history[0][1] if name != "loss"] + ["loss"]  # name the term, not their sum
    device = next((value.device for value in history[0][1].values() if torch.is_tensor(value)), None)
    values = torch.stack([torch.stack([torch.as_tensor(terms[name], dtype=torch.float32, device=device)
                                       for name in names]) for _, terms in history]).cpu()
    bad = ~torch.isfinite(values)
    if distributed.any(bool(bad.any())) and not bad.any():
        raise TrainingDivergedError("the loss of another process went non-finite (see its message)")
    if bad.any():
        row, column = (int(index) for index in bad.nonzero()[0])
        step, name = history[row][0], names[column]
        raise TrainingDivergedError(f"the loss went non-finite at iteration {step} ({name} = "
                                    f"{float(values[row, column])})")


class Trainer:
    def __init__(self, model: nn.Module, normalization: Normalization, method: AdaptationMethod,
                 task: DomainAdaptationTask, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, run: RunFolder, logger, plan: TrainingPlan,
                 interrupts: Interrupts | None = None):
        self.model = model
        self.normalization = normalization
        self.method = method
        self.task = task
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.run = run
        self.logger = logger
        self.plan = plan
        self.acceleration = plan.acceleration or Acceleration(plan.device)
        self.forward_model = self.acceleration.prepare(model)  # the compiled model, or ``model``
        self.distributed = plan.distributed
        self.train_model = self.distributed.wrap(self.forward_model)  # in DistributedDataParallel under torchrun
        self.train_method = self.distributed.wrap(method)
        self.scaler = self.acceleration.grad_scaler()
        self.step = 0
        self.elapsed = 0.0
        self.best: dict[str, dict[str, float]] = {}  # per metric: the highest accuracy over evaluations, its step
        self.last: dict[str, Evaluation] = {}
        self.dev_risk: float | None = None  # of the last evaluation, with a source validation set
        self.validations: dict[str, float] = {}  # validator -> score, of the last evaluation
        self.saved_step: int | None = None  # the iteration of the checkpoint in the run folder, if there is one
        self.interrupts = interrupts  # a SIGINT/SIGTERM to stop at (normda/interrupts.py)
        # the training losses summed since the last evaluation, and their count (a checkpoint between evaluations,
        # an interrupted run's, keeps them, so that the next evaluation's means are the uninterrupted run's)
        self.sums: dict[str, torch.Tensor | float] = {}
        self.count = 0

    # -- state -----------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "elapsed": self.elapsed,
            "best": self.best,
            "model": self.model.state_dict(),
            "method": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "grad_scaler": self.scaler.state_dict(),
            "rng": self.distributed.gather(rng_state()),  # one per process
            "train_sums": {key: float(value) for key, value in self.sums.items()},
            "train_count": self.count,
        }

    def resume(self) -> None:
        """Continue from the run folder's checkpoint, if there is one."""
        state = self.run.load_checkpoint()
        if state is None:  # a new run, or one whose checkpoint was deleted: no evaluation of it stands
            if self.distributed.main:
                self.run.keep_metrics_until(0)
            return
        self.model.load_state_dict(state["model"])
        self.method.load_state_dict(state["method"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("grad_scaler"):
            self.scaler.load_state_dict(state["grad_scaler"])
        rng = state["rng"]
        set_rng_state(rng if isinstance(rng, dict) else rng[self.distributed.rank])  # a dict: a pre-DDP checkpoint
        self.step, self.elapsed, self.best = state["step"], state["elapsed"], state["best"]
        self.sums, self.count = dict(state.get("train_sums", {})), state.get("train_count", 0)
        self.saved_step = self.step
        if self.distributed.main:
            self.run.keep_metrics_until(self.step)
        log.info("resuming %s from iteration %d", self.run.path, self.step)

    # -- loop ------------------------------------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        s = self.plan
        test_loaders = {"target_accuracy": self.task.test_loader(s.eval_batch_size, s.num_workers)}
        if s.ten_crop:
            test_loaders["target_accuracy_10crop"] = self.task.test_loader(s.eval_batch_size, s.num_workers, True)
        if self.step == 0:  # a resumed run restarts from a checkpoint that already holds what these did
            loaders = dict(zip(("source", "target"), self.task.train_loaders(s.batch_size, s.num_workers, s.seed)))
            self.normalization.before_training(self.model, loaders, s.device)
            self.method.before_training(self.model, loaders, s.device)
        source_stream, target_stream = self.task.train_streams(s.batch_size, s.num_workers, s.seed, self.step,
                                                                     s.iterations, self.distributed.rank,
                                                                     self.distributed.world_size)
        source_batches = iter(source_stream)
        target_batches = iter(target_stream) if self.method.uses_target else None
        self.model.train()
        self.method.train()

        recent: list[tuple[int, dict[str, torch.Tensor | float]]] = []  # the loss terms since the last finite check
        started = time.perf_counter() - self.elapsed
        with tqdm(total=s.iterations, initial=self.step, desc="train", dynamic_ncols=True,
                  disable=not (s.progress and self.distributed.main)) as bar:  # closed on any exit, so that an error starts its own line
            while self.step < s.iterations:
                terms = self.train_step(next(source_batches), next(target_batches) if target_batches else None)
                for key, value in terms.items():
                    self.sums[key] = self.sums.get(key, 0.0) + value
                self.count += 1
                self.step += 1
                bar.update(1)
                recent.append((self.step, terms))
                evaluating = self.step % s.eval_every == 0 or self.step == s.iterations
                if evaluating or self.step % s.finite_check_every == 0:
                    self.check_finite(recent)
                    recent = []
                if evaluating:
                    self.elapsed = time.perf_counter() - started
                    means = {key: float(value) / self.count for key, value in self.sums.items()}
                    if self.distributed.main:
                        self.evaluate_and_record(means, test_loaders)
                        bar.set_postfix(loss=f"{means['loss']:.3f}",
                                        target_acc=f"{self.last['target_accuracy'].accuracy:.1f}")
                    self.sums, self.count = {}, 0
                    self.save_checkpoint()
                if self.interrupts is not None and self.interrupts.requested and self.step < s.iterations:
                    if not evaluating:  # an evaluation has just saved the run
                        self.check_finite(recent)
                        self.elapsed = time.perf_counter() - started
                        self.save_checkpoint()
                    raise Interrupted(self.step, self.interrupts.requested)
        if not self.last and self.distributed.main:  # resumed after the final evaluation, before the done marker
            self.last = self.evaluate(test_loaders)
        return self.summary() if self.distributed.main else {}

    def save_checkpoint(self) -> None:
        state = self.state_dict()  # every process: it gathers their RNG states
        if self.distributed.main:
            self.run.save_checkpoint(state)
        self.saved_step = self.step
        self.distributed.barrier()

    def check_finite(self, recent: list[tuple[int, dict[str, torch.Tensor | float]]]) -> None:
        """:func:`check_finite`, whose error then says what the run folder kept and what to do."""
        try:
            check_finite(recent, self.distributed)
        except TrainingDivergedError as error:
            if self.saved_step is None:
                kept = (f"the run stopped before its first checkpoint (iteration {self.plan.eval_every}), so no "
                        f"state was kept: lower optim.optimizer.lr (or set trainer.amp=false) and start again (a "
                        f"new run, in a folder of its own)")
            else:
                kept = (f"the run stopped and kept its checkpoint of iteration {self.saved_step}, which the same "
                        f"command resumes from; a lower optim.optimizer.lr (or trainer.amp=false) is a new run, in "
                        f"a folder of its own")
            raise TrainingDivergedError(f"{error}: {kept}") from None

    def train_step(self, source_batch, target_batch) -> dict[str, torch.Tensor | float]:
        accelerate = self.acceleration
        x_source, labels = accelerate.inputs(source_batch[0]), source_batch[1].to(self.plan.device,
                                                                                  non_blocking=True)
        n_source = x_source.shape[0]
        if target_batch is not None:
            x_target = accelerate.inputs(target_batch[0])
            x, n_target = torch.cat([x_source, x_target]), x_target.shape[0]
        else:
            x, n_target = x_source, 0
        with accelerate.autocast():
            with domain_split(self.model, n_source, n_target):
                try:
                    logits, features = self.train_model(x)
                except ValueError as error:  # torch's BatchNorm on a single value per channel
                    if "Expected more than 1 value per channel" not in str(error):
                        raise
                    raise BatchTooSmallError(f"a BatchNorm layer got a single value per channel (batch of "
                                             f"{n_source} source + {n_target} target): raise data.batch_size"
                                             ) from error
            outputs = StepOutputs(
                logits_source=logits[:n_source], features_source=features[:n_source], labels_source=labels,
                logits_target=logits[n_source:] if n_target else None,
                features_target=features[n_source:] if n_target else None,
            )
            classification = F.cross_entropy(outputs.logits_source, labels)
            method_terms = self.train_method(outputs, self.step)
            loss = classification + method_terms["loss"]
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        diagnostics = {key: value.detach() if torch.is_tensor(value) else value
                       for key, value in method_terms.items() if key != "loss"}
        return {"loss": loss.detach(), "classification_loss": classification.detach(),
                "transfer_loss": method_terms["loss"].detach(), **diagnostics}

    def evaluate(self, test_loaders: dict[str, DataLoader]) -> dict[str, Evaluation]:
        """The target test metrics; with a source validation set, also its accuracy (source statistics) and the DEV
        risk (``dev_logistic``) from the features of source training samples, source validation samples and the
        target; and the validators the run computes (``self.validations``), all from these same passes. The
        validators' target is the held-out target part (``data.target_val_fraction``) where there is one, else at
        most ``dev_target_samples`` of the target test set, kept from its pass."""
        s, task = self.plan, self.task
        self.normalization.before_evaluation(self.model, test_loaders["target_accuracy"], s.device)
        dev = task.source_val is not None
        computed = [*s.validators, *(["dev_logistic"] if dev and "dev_logistic" not in s.validators else [])]
        keep_target = any("target" in VALIDATORS.get(name).needs for name in computed)
        on_test = keep_target and task.target_val is None  # else the validators read the held-out target part
        model, accelerate = self.forward_model, self.acceleration
        results = {metric: evaluate(model, loader, task.num_classes, s.device, None,
                                    keep_features=s.dev_target_samples if on_test and metric == "target_accuracy"
                                    else 0, acceleration=accelerate)
                   for metric, loader in test_loaders.items()}
        sets = {"target": results["target_accuracy"]}
        if keep_target and not on_test:
            sets["target"] = evaluate(model, task.target_val_loader(s.eval_batch_size, s.num_workers),
                                      task.num_classes, s.device, None, keep_features=s.dev_target_samples,
                                      acceleration=accelerate)
        if dev:
            validation_loader = task.source_val_loader(s.eval_batch_size, s.num_workers)
            validation = evaluate(model, validation_loader, task.num_classes, s.device, "source",
                                  keep_features=len(validation_loader.dataset), acceleration=accelerate)
            sample_loader = task.source_sample_loader(s.eval_batch_size, s.num_workers)
            training = evaluate(model, sample_loader, task.num_classes, s.device, "source",
                                keep_features=len(sample_loader.dataset), acceleration=accelerate)
            results["source_val_accuracy"] = validation
            sets.update(source_val=validation, source_train=training)
        outputs = {name: Outputs(result.features, result.logits, result.labels if name != "target" else None)
                   for name, result in sets.items()}
        scores = {name: VALIDATORS.get(name)(outputs) for name in computed}
        self.dev_risk = scores.get("dev_logistic") if dev else None
        self.validations = {name: scores[name] for name in s.validators}
        return results

    def evaluate_and_record(self, train_means: dict[str, float], test_loaders: dict[str, DataLoader]) -> None:
        self.last = self.evaluate(test_loaders)
        record: dict[str, Any] = {"step": self.step}
        for metric, result in self.last.items():
            if result.accuracy > self.best.get(metric, {"accuracy": -1.0})["accuracy"]:
                self.best[metric] = {"accuracy": result.accuracy, "step": self.step}
            record[metric] = result.accuracy
            record[metric.replace("accuracy", "mean_class_accuracy")] = result.mean_class_accuracy
        if self.dev_risk is not None:
            record["dev_risk"] = self.dev_risk
        record.update({f"validator/{name}": value for name, value in self.validations.items()})
        record.update({f"train/{key}": value for key, value in train_means.items()})
        record.update({f"lr/{group['name']}": group["lr"] for group in self.optimizer.param_groups
                       if not group["name"].endswith("/no_decay")})
        record["wall_time_s"] = self.elapsed
        self.run.append_metrics(record)
        self.logger.log({key: value for key, value in record.items() if key != "step"}, step=self.step)
        for metric, result in self.last.items():
            log.info("iteration %d: %s %.2f%% (best %.2f%% at %d)", self.step, metric, result.accuracy,
                     self.best[metric]["accuracy"], self.best[metric]["step"])

    def summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = {}
        for metric, result in self.last.items():
            if metric == "source_val_accuracy":
                continue  # a selection signal, in metrics.jsonl; the summary reports the target
            summary[f"{metric}_last"] = result.accuracy
            summary[f"{metric}_best"] = self.best[metric]["accuracy"]
            summary[f"{metric}_best_step"] = self.best[metric]["step"]
            summary[f"{metric.replace('accuracy', 'mean_class_accuracy')}_last"] = result.mean_class_accuracy
        single = self.last["target_accuracy"]
        summary.update({
            "per_class_accuracy_last": dict(zip(self.task.classes, single.per_class_accuracy)),
            "selection": "*_last: the final iteration; *_best: the highest of all evaluations, the papers' protocol, "
                         "which selects with the target test labels",
            "iterations": self.step,
            "wall_time_s": self.elapsed,
            "target_test_samples": single.samples,
        })
        return summary
