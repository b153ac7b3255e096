"""Train-step time of every ``norm=`` against BatchNorm, in a ResNet-50 and a DTN classifier.

    python scripts/bench_norms.py                       # every norm, both backbones, on this machine's device
    python scripts/bench_norms.py --norms bn transnorm dsbn autodial --backbones resnet50 --repeats 20

One step is the trainer's computation: the classifier (backbone + bottleneck + head, built from the same configs as
``train.py``) on a ``[source; target]`` batch inside ``domain_split``, the source cross-entropy, and its backward
pass. All models live side by side and the repetitions are interleaved (rep 1 of every norm, then rep 2, ...), so
drifts of the machine hit every norm alike; each norm's ratio is the median over repetitions of its step time divided
by BN's in the same repetition, reported with a distribution-free 95% confidence interval of that median (to read a
ratio against a target) and the interquartile range of the ratios. ``transnorm[plain ops]``, ``dsbn[plain ops]`` and
``autodial[plain ops]`` are the same layers in their plain formulation (``torch.var_mean`` and the normalisation
written out, autograd for the backward: what ``torch.compile`` traces and ``norm.sync`` runs), to show what their
hand-written kernels save. Results go to ``results/bench/norms-<device>.json`` (machine, versions, settings, times
and ratios) and a Markdown table beside it.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"  # the configs train.py composes, beside this script

from normda.normalization.split_batchnorm import fused_kernels
from normda.reporting.benchmark import (
    compose_config,
    machine,
    markdown_table,
    median_interval,
    resolve_device,
    synchronize,
    write_results,
)

PLAIN = "[plain ops]"
#: the norms with a hand-written kernel, whose plain formulation is measured beside it
FUSED = ("transnorm", "dsbn", "autodial")
BACKBONE_SETTINGS = {  # per-domain batch and image size: (CPU, GPU); the 2x32 at 224 px on a GPU
    "resnet50": {"cpu": (8, 112), "cuda": (32, 224)},
    "dtn": {"cpu": (32, 32), "cuda": (32, 32)},
}


def all_norms() -> list[str]:
    return sorted(path.stem for path in (ROOT / "conf" / "norm").glob("*.yaml"))


def build(backbone: str, norm: str, image_size: int, device: torch.device, channels_last: bool):
    from normda.experiment import build_model

    cfg = compose_config(CONF, [f"backbone={backbone}", "backbone.pretrained=false",
                                f"backbone.input_size={image_size}", f"norm={norm.split('[')[0]}", "data=synthetic"])
    model, _ = build_model(cfg, num_classes=31)
    model.to(device).train()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def make_step(model, norm: str, x: torch.Tensor, labels: torch.Tensor, amp: torch.dtype | None):
    from normda.normalization import domain_split

    n = labels.shape[0]
    fused = not norm.endswith(PLAIN)

    def step() -> None:
        with fused_kernels(fused), domain_split(model, n, x.shape[0] - n), \
                torch.autocast(x.device.type, dtype=amp, enabled=amp is not None):
            logits, _ = model(x)
            loss = F.cross_entropy(logits[:n], labels)
        model.zero_grad(set_to_none=True)
        loss.backward()

    return step


def bench_backbone(backbone: str, norms: list[str], args, device: torch.device) -> dict:
    per_domain, image_size = BACKBONE_SETTINGS[backbone][device.type]
    per_domain = args.batch or per_domain
    image_size = args.image_size if args.image_size and backbone != "dtn" else image_size
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2 * per_domain, 3, image_size, image_size, generator=generator).to(device)
    if args.channels_last:
        x = x.to(memory_format=torch.channels_last)
    labels = torch.randint(0, 31, (per_domain,), generator=generator).to(device)
    amp = torch.bfloat16 if args.amp and (device.type == "cpu" or torch.cuda.is_bf16_supported()) else (
        torch.float16 if args.amp else None)
    steps = {}
    for norm in norms:
        model = build(backbone, norm, image_size, device, args.channels_last)
        steps[norm] = make_step(model, norm, x, labels, amp)
        for _ in range(args.warmup):
            steps[norm]()
    synchronize(device)
    times = {norm: [] for norm in norms}
    for _ in range(args.repeats):
        for norm in norms:
            start = time.perf_counter()
            steps[norm]()
            synchronize(device)
            times[norm].append(time.perf_counter() - start)
    results = {}
    for norm in norms:
        ratios = [t / b for t, b in zip(times[norm], times["bn"])]
        quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
        results[norm] = {
            "median_step_s": statistics.median(times[norm]),
            "min_step_s": min(times[norm]),
            "max_step_s": max(times[norm]),
            "ratio_to_bn": statistics.median(ratios),
            "ratio_median_ci95": list(median_interval(ratios)),
            "ratio_q1": quartiles[0],
            "ratio_q3": quartiles[2],
            "step_s": times[norm],
        }
    return {"batch": f"2x{per_domain}", "image_size": image_size, "norms": results}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", nargs="+", default=["resnet50", "dtn"], choices=sorted(BACKBONE_SETTINGS))
    parser.add_argument("--norms", nargs="+", default=None, help=f"norm= names, or <norm>{PLAIN} for "
                                                                   f"{', '.join(FUSED)} (default: all of both)")
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=None, help="images per domain (default: 8 on CPU, 32 on GPU)")
    parser.add_argument("--image-size", type=int, default=None, help="ResNet input size (default: 112 CPU, 224 GPU)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--amp", action="store_true", help="autocast (bfloat16, or float16 where bf16 is missing)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="default: results/bench/norms-<device>.json")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}: give at least 1 repetition")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    plain = [f"{norm}{PLAIN}" for norm in FUSED]
    norms = args.norms or [*all_norms(), *plain]
    unknown = sorted(set(norms) - set(all_norms()) - set(plain))
    if unknown:
        parser.error(f"unknown norm {', '.join(unknown)}: choose from {', '.join(all_norms())}")
    norms = ["bn", *[n for n in norms if n != "bn"]]
    report = {
        "benchmark": "train step (forward + backward) of each norm against BatchNorm",
        "command": " ".join(["python scripts/bench_norms.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine(device),
        "settings": {"repeats": args.repeats, "warmup": args.warmup, "amp": args.amp,
                     "channels_last": args.channels_last},
        "backbones": {},
    }
    for backbone in args.backbones:
        report["backbones"][backbone] = bench_backbone(backbone, norms, args, device)
        print(f"\n{backbone} ({report['backbones'][backbone]['batch']} images, "
              f"{report['backbones'][backbone]['image_size']} px) on {report['machine']['device_name']}")
        print(table(report["backbones"][backbone]))
    out = args.out or ROOT / "results" / "bench" / f"norms-{device.type}.json"
    markdown = "\n\n".join(f"### {name} ({result['batch']} images, {result['image_size']} px)\n\n{table(result)}"
                           for name, result in report["backbones"].items())
    write_results(out, report, markdown)
    print(f"\nwrote {out}")
    return report


def table(result: dict) -> str:
    rows = [[norm, f"{r['median_step_s'] * 1000:.1f}", f"{r['ratio_to_bn']:.3f}",
             "{:.3f}-{:.3f}".format(*r["ratio_median_ci95"]), f"{r['ratio_q1']:.3f}-{r['ratio_q3']:.3f}"]
            for norm, r in result["norms"].items()]
    return markdown_table(["norm", "median step (ms)", "step / BN step", "95% interval of the median",
                           "interquartile range"], rows)


if __name__ == "__main__":
    main()
