"""What each label-free validator costs per evaluation, against the evaluation pass a run makes anyway.

    python scripts/bench_validators.py                     # every validator, DTN-sized sets (512-d features)
    python scripts/bench_validators.py --validators im snd dev --repeats 5

The baseline is the pass every evaluation makes: a DTN classifier (built from the same configs as ``train.py``, as
``experiment=cpu_digits_dtn`` trains it) over a target test set of ``--target`` 32 px images. A validator reads the
features and logits that pass keeps (``trainer.validators``); here they are drawn from a Gaussian mixture of
``--classes`` classes in ``--dim`` dimensions, the target shifted from the source, in the sizes a digits run keeps
(1000 source training samples for DEV's domain classifier, ``--source-val`` held-out source samples, ``--target``
target samples). Each validator's time is the median over ``--repeats`` fresh sets (what two validators of one
evaluation share, DEV's fit or the k-means, is computed again for each), reported as a ratio to the baseline pass's
median in the same run.

DEV's domain classifier trains as pytorch-adapt does (``FAST_FIT``); the official recipe (scikit-learn's defaults,
``REFERENCE_FIT``) is measured once beside it on ``--reference-scale`` of every set (at full size it runs for many
minutes), with both risks, so that the table says what the faster fit saves and how far its risk moves. Results go to
``results/bench/validators-<device>.json`` and a Markdown table beside it.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

from normda.reporting.benchmark import compose_config, machine, markdown_table, write_results
from normda.validation import dev_risk
from normda.validators import VALIDATORS, Outputs
from normda.validators.dev import FAST_FIT, REFERENCE_FIT, mlp_density_ratios


def mixture(count: int, classes: int, dim: int, shift: float, generator: torch.Generator,
            labelled: bool) -> Outputs:
    """``count`` features around ``classes`` fixed class means (moved by ``shift`` for the target), and logits that
    mostly, not always, point at the class."""
    means = torch.randn(classes, dim, generator=torch.Generator().manual_seed(0)) * 2.0
    labels = torch.randint(0, classes, (count,), generator=generator)
    features = means[labels] + shift + torch.randn(count, dim, generator=generator)
    logits = features @ means.T / dim + 0.5 * torch.randn(count, classes, generator=generator)
    return Outputs(features, logits, labels if labelled else None)


def evaluation_sets(args, generator: torch.Generator, scale: float = 1.0) -> dict[str, Outputs]:
    sizes = {"source_train": 1000, "source_val": args.source_val, "target": args.target}
    return {name: mixture(max(int(size * scale), args.classes), args.classes, args.dim,
                          0.5 if name == "target" else 0.0, generator, labelled=name != "target")
            for name, size in sizes.items()}


def baseline_pass(args) -> list[float]:
    """Seconds of the evaluation pass of a DTN over ``args.target`` images, ``args.repeats`` times."""
    from normda.evaluate import evaluate
    from normda.experiment import build_model

    cfg = compose_config(CONF, ["backbone=dtn", "norm=bn", "data=synthetic"])
    model, _ = build_model(cfg, num_classes=args.classes)
    images = torch.randn(args.target, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    labels = torch.randint(0, args.classes, (args.target,), generator=torch.Generator().manual_seed(2))
    loader = DataLoader(TensorDataset(images, labels), batch_size=256)
    device = torch.device("cpu")
    evaluate(model, loader, args.classes, device)  # warm-up
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        evaluate(model, loader, args.classes, device, keep_features=args.target)
        times.append(time.perf_counter() - start)
    return times


def time_validators(names: list[str], args) -> dict[str, dict]:
    generator = torch.Generator().manual_seed(3)
    results = {name: {"seconds": []} for name in names}
    for _ in range(args.repeats):
        for name in names:  # fresh sets for each validator: nothing shared between them is cached
            sets = evaluation_sets(args, generator)
            start = time.perf_counter()
            VALIDATORS.get(name)(sets)
            results[name]["seconds"].append(time.perf_counter() - start)
    return results


def reference_fit(args) -> dict:
    """The official fit against the fast one on ``args.reference_scale`` of every set: seconds and DEV risks."""
    sets = evaluation_sets(args, torch.Generator().manual_seed(4), scale=args.reference_scale)
    losses = torch.nn.functional.cross_entropy(sets["source_val"].logits, sets["source_val"].labels,
                                               reduction="none").double().numpy()
    result = {"scale": args.reference_scale, "sizes": {name: len(s.features) for name, s in sets.items()}}
    for label, recipe in (("fast", FAST_FIT), ("reference", REFERENCE_FIT)):
        start = time.perf_counter()
        weights = mlp_density_ratios(sets["source_train"].features, sets["target"].features,
                                     sets["source_val"].features, recipe=recipe)
        result[label] = {"seconds": time.perf_counter() - start, "dev_risk": dev_risk(weights, losses),
                         "recipe": vars(recipe)}
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--validators", nargs="+", choices=VALIDATORS.names(), default=VALIDATORS.names())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dim", type=int, default=512, help="feature width (DTN's 512)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--source-val", type=int, default=1000, help="held-out source samples")
    parser.add_argument("--target", type=int, default=2000, help="target samples (trainer.dev_target_samples)")
    parser.add_argument("--reference-scale", type=float, default=0.25,
                        help="fraction of every set the official DEV fit is measured on (0: skip it)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench" / "validators-cpu.json")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}: give at least 1 repetition")
    if args.threads:
        torch.set_num_threads(args.threads)
    baseline = statistics.median(baseline_pass(args))
    results = time_validators(args.validators, args)
    for result in results.values():
        result["median_s"] = statistics.median(result["seconds"])
        result["ratio_to_pass"] = result["median_s"] / baseline
    report = {
        "benchmark": "seconds per evaluation of each label-free validator against the evaluation pass",
        "command": " ".join(["python scripts/bench_validators.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine(torch.device("cpu")),
        "settings": {key: value for key, value in vars(args).items() if key not in ("validators", "out")},
        "baseline_pass_s": baseline,
        "validators": results,
        "dev_fit": reference_fit(args) if args.reference_scale > 0 else None,
    }
    markdown = tables(report)
    print(markdown)
    write_results(args.out, report, markdown)
    print(f"\nwrote {args.out}")
    return report


def tables(report: dict) -> str:
    settings = report["settings"]
    rows = [[name, VALIDATORS.get(name).direction, f"{r['median_s']:.3f}", f"{r['ratio_to_pass']:.2f}"]
            for name, r in report["validators"].items()]
    text = (f"Baseline: the evaluation pass of a DTN over {settings['target']} target images, "
            f"{report['baseline_pass_s']:.3f} s. Sets: 1000 source training, {settings['source_val']} source "
            f"validation and {settings['target']} target samples of {settings['dim']}-d features, "
            f"{settings['classes']} classes.\n\n"
            + markdown_table(["validator", "better", "seconds per evaluation", "/ evaluation pass"], rows))
    fit = report["dev_fit"]
    if fit:
        sizes = ", ".join(f"{name} {size}" for name, size in fit["sizes"].items())
        fit_rows = [[label, f"{fit[label]['seconds']:.2f}", f"{fit[label]['dev_risk']:.4f}"]
                    for label in ("fast", "reference")]
        text += (f"\n\nDEV's domain classifier, fast (2 epochs of 32, pytorch-adapt) against the official "
                 f"scikit-learn defaults, on {sizes}: the fast fit takes "
                 f"{fit['fast']['seconds'] / fit['reference']['seconds']:.3f} of the reference's time.\n\n"
                 + markdown_table(["fit", "seconds", "DEV risk"], fit_rows))
    return text


if __name__ == "__main__":
    main()
