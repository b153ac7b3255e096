"""Step time of ``train.py`` against a minimal hand-written PyTorch loop doing the same computation, and the speed
options (``trainer.amp``, ``trainer.channels_last``, ``trainer.compile``) against the default.

    python scripts/bench_train.py                                   # the embedded default: DTN + TransNorm + CDAN+E
    python scripts/bench_train.py --overrides backbone=resnet50 backbone.pretrained=false data=synthetic \\
        backbone.input_size=112 data.samples_per_domain=64 --iterations 20

Both loops train the same classifier and method module from the same config on the same data, with the same batch
size and loaders' settings. The hand-written loop is what a researcher would type: two ``DataLoader`` iterators (or,
where the dataset keeps its images transformed once, as the digits do, random indices into those tensors: the leanest
loop there is), the concatenated batch inside ``domain_split``, cross-entropy plus the method's loss, SGD and the lr
schedule, nothing else. The framework runs its whole path (``normda.experiment.train``: run folder, progress bar, loss sums, one
evaluation and checkpoint at the end). Each is run for K and for 2K iterations; the step time is
``(T(2K) - T(K)) / K``, so setup, the final evaluation and (for ``trainer.compile``) compilation cancel. ``--whole N``
also times a whole run of N iterations, its own evaluations and checkpoints and its setup included, against N bare
steps with theirs. Repetitions
are interleaved and the ratio is the median over repetitions. Results go to ``results/bench/train-<device>.json``
and a Markdown table beside it.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"  # the configs train.py composes, beside this script

from normda import datasets
from normda.reporting.benchmark import compose_config, machine, markdown_table, synchronize, write_results
from normda.experiment import build_model, resolve_device, seed_everything, train
from normda import dann_cdan
from normda.dann_cdan import StepOutputs
from normda.normalization import domain_split

OPTIONS = {"amp": "trainer.amp=true", "channels_last": "trainer.channels_last=true", "compile": "trainer.compile=true"}


def run_framework(overrides: list[str], iterations: int, evaluations: str = "once") -> float:
    """Seconds for ``train.py <overrides>`` of ``iterations`` steps: one evaluation, at the end, or (``evaluations=
    "its own"``) the run's own schedule, every ``trainer.eval_every``, each with its checkpoint."""
    with tempfile.TemporaryDirectory() as output:
        every = [f"trainer.eval_every={iterations}"] if evaluations == "once" else []
        cfg = compose_config(CONF, [*overrides, f"trainer.iterations={iterations}", *every,
                                    f"trainer.output_dir={output}", "logger=none"])
        start = time.perf_counter()
        train(cfg, Path(output) / "run")
        synchronize(resolve_device(cfg.trainer.device))
        return time.perf_counter() - start


def run_bare(overrides: list[str], iterations: int) -> float:
    """Seconds for the same computation written as a bare PyTorch loop."""
    start = time.perf_counter()
    cfg = compose_config(CONF, [*overrides, "logger=none"])
    seed_everything(cfg.seed, deterministic=False)
    device = resolve_device(cfg.trainer.device)
    task = datasets.build(cfg.data)
    model, _ = build_model(cfg, task.num_classes)
    model.to(device).train()
    method = dann_cdan.build(cfg.method, model.features_dim, task.num_classes).to(device).train()
    optim = cfg.optim.optimizer
    optimizer = torch.optim.SGD([*model.parameters(), *method.parameters()], lr=optim.lr, momentum=optim.momentum,
                                weight_decay=optim.weight_decay, nesterov=optim.nesterov)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: (1 + 0.001 * i) ** -0.75)
    domains = (task.source_train, task.target_train)
    if all(hasattr(dataset, "inputs") for dataset in domains):  # images transformed once: index the tensors
        def next_batch(index: int):
            chosen = torch.randint(len(domains[index]), (cfg.data.batch_size,))
            return domains[index].inputs[chosen], domains[index].labels[chosen]
    else:
        loaders = [DataLoader(dataset, batch_size=cfg.data.batch_size, shuffle=True, drop_last=True,
                              num_workers=cfg.data.num_workers, pin_memory=device.type == "cuda",
                              persistent_workers=cfg.data.num_workers > 0) for dataset in domains]
        iterators = [iter(loader) for loader in loaders]

        def next_batch(index: int):
            try:
                return next(iterators[index])
            except StopIteration:
                iterators[index] = iter(loaders[index])
                return next(iterators[index])

    for step in range(iterations):
        x_source, labels = (t.to(device, non_blocking=True) for t in next_batch(0)[:2])
        x, n = x_source, x_source.shape[0]
        if method.uses_target:
            x = torch.cat([x_source, next_batch(1)[0].to(device, non_blocking=True)])
        with domain_split(model, n, x.shape[0] - n):
            logits, features = model(x)
        outputs = StepOutputs(logits_source=logits[:n], features_source=features[:n], labels_source=labels,
                              logits_target=logits[n:] if method.uses_target else None,
                              features_target=features[n:] if method.uses_target else None)
        loss = F.cross_entropy(logits[:n], labels) + method(outputs, step)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    synchronize(device)
    return time.perf_counter() - start


def step_time(run, overrides: list[str], iterations: int) -> float:
    return (run(overrides, 2 * iterations) - run(overrides, iterations)) / iterations


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--overrides", nargs="*", default=[], help="train.py overrides (default: the embedded task)")
    parser.add_argument("--iterations", type=int, default=100, help="K: each loop runs K and 2K steps")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--options", nargs="*", default=list(OPTIONS), choices=list(OPTIONS),
                        help="speed options to time against the default framework run")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--whole", type=int, default=0, metavar="N",
                        help="also time a whole run of N iterations with its own evaluations and checkpoints against "
                             "N bare steps (setup included in both)")
    parser.add_argument("--out", type=Path, default=None, help="default: results/bench/train-<device>.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(compose_config(CONF, args.overrides).trainer.device)
    variants = {"bare loop": (run_bare, args.overrides), "train.py": (run_framework, args.overrides)}
    variants.update({f"train.py {OPTIONS[o]}": (run_framework, [*args.overrides, OPTIONS[o]]) for o in args.options})
    times: dict[str, list[float]] = {name: [] for name in variants}
    for name, (run, overrides) in variants.items():  # warm-up: imports, caches, first compilation
        run(overrides, 2)
    for repeat in range(args.repeats):
        for name, (run, overrides) in variants.items():
            times[name].append(step_time(run, overrides, args.iterations))
        print(f"repeat {repeat + 1}/{args.repeats}: " + ", ".join(f"{n} {t[-1] * 1000:.1f} ms" for n, t in
                                                                  times.items()), flush=True)
    if args.whole:
        whole = f"train.py, whole run of {args.whole} (its evaluations)"
        bare = f"bare loop, {args.whole} steps"
        times[bare], times[whole] = [], []
        for repeat in range(args.repeats):
            times[bare].append(run_bare(args.overrides, args.whole) / args.whole)
            times[whole].append(run_framework(args.overrides, args.whole, "its own") / args.whole)
            print(f"whole run {repeat + 1}/{args.repeats}: {times[whole][-1] / times[bare][-1]:.3f}", flush=True)
    framework = times["train.py"]
    baselines = {"train.py": "bare loop"}
    if args.whole:
        baselines[whole] = bare
    results = {}
    for name, values in times.items():
        baseline = times[baselines[name]] if name in baselines else framework if name.startswith("train.py") else values
        ratios = [v / b for v, b in zip(values, baseline)]
        results[name] = {"median_step_s": statistics.median(values), "step_s": values,
                         "baseline": baselines.get(name, "train.py" if name.startswith("train.py") else None),
                         "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios)}
    for name in results:
        if not name.startswith("train.py"):
            results[name].update(baseline=None, ratio=1.0, ratio_min=1.0, ratio_max=1.0)
    report = {
        "benchmark": "train.py step time against a hand-written loop, and the speed options against train.py",
        "command": " ".join(["python scripts/bench_train.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine(device),
        "settings": {"overrides": args.overrides, "iterations": args.iterations, "repeats": args.repeats,
                     "whole": args.whole},
        "results": results,
    }
    rows = [[name, f"{r['median_step_s'] * 1000:.1f}", r["baseline"] or "-", f"{r['ratio']:.3f}",
             f"{r['ratio_min']:.3f}-{r['ratio_max']:.3f}"] for name, r in results.items()]
    table = markdown_table(["loop", "median step (ms)", "against", "ratio", "range"], rows)
    print(f"\n{table}")
    out = args.out or ROOT / "results" / "bench" / f"train-{device.type}.json"
    write_results(out, report, f"### train.py against a bare loop ({' '.join(args.overrides) or 'python train.py'})"
                               f"\n\n{table}")
    print(f"\nwrote {out}")
    return report


if __name__ == "__main__":
    main()
