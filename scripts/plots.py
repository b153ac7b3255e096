"""The TransNorm paper's analysis figures, as PNG, from run folders.

    python scripts/plots.py convergence RUN [RUN ...] --out results/figures/convergence.png   # Figure 5a
    python scripts/plots.py tsne RUN --out results/figures/tsne.png                          # Figure 4
    python scripts/plots.py adistance RUN [RUN ...] --out results/figures/adistance.png      # Figure 5c
    python scripts/plots.py alpha RUN --out results/figures/alpha.png                        # Figure 3

``convergence`` draws target accuracy against iterations (e.g. a BN run and a TransNorm run of one task);
``tsne`` embeds the bottleneck features of source and target samples, coloured by domain; ``adistance`` compares the
A-distance and the ideal joint hypothesis' error lambda of runs; ``alpha`` shows the per-channel alpha of every
TransNorm layer, sorted. Runs are folders train.py wrote (with a checkpoint, except for ``convergence``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

from normda.reporting.analysis import (
    a_distance,
    domain_features,
    ideal_joint_error,
    load_trained,
    transnorm_alphas,
)
from normda.reporting.tables import load_run


def label(run_dir: Path) -> str:
    labels = load_run(run_dir).labels
    return f"{labels['method_label']} / {labels['norm_label']} ({labels['task_label']}, seed {labels['seed']})"


def convergence(runs: list[Path], out: Path) -> None:
    figure, axis = plt.subplots(figsize=(6, 4))
    for run in runs:
        metrics = load_run(run).metrics
        axis.plot([m["step"] for m in metrics], [m["target_accuracy"] for m in metrics], marker="o", label=label(run))
    axis.set(xlabel="iteration", ylabel="target accuracy (%)", title="Convergence")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    save(figure, out)


def tsne(run: Path, out: Path, limit: int) -> None:
    _, model, task = load_trained(run)
    source, _, target, _ = domain_features(model, task, limit)
    embedded = TSNE(n_components=2, init="pca", random_state=0,
                    perplexity=min(30.0, (len(source) + len(target) - 1) / 3)).fit_transform(
        np.concatenate([source, target]))
    figure, axis = plt.subplots(figsize=(5, 5))
    axis.scatter(*embedded[: len(source)].T, s=4, c="tab:red", label=f"source ({task.source})")
    axis.scatter(*embedded[len(source):].T, s=4, c="tab:blue", label=f"target ({task.target})")
    axis.set(title=f"t-SNE of bottleneck features\n{label(run)}", xticks=[], yticks=[])
    axis.legend(markerscale=3)
    save(figure, out)


def adistance(runs: list[Path], out: Path, limit: int) -> None:
    names, distances, lambdas = [], [], []
    for run in runs:
        _, model, task = load_trained(run)
        source, source_labels, target, target_labels = domain_features(model, task, limit)
        names.append(label(run))
        distances.append(a_distance(source, target))
        lambdas.append(ideal_joint_error(source, source_labels, target, target_labels))
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for axis, values, title in ((axes[0], distances, "A-distance"), (axes[1], lambdas, "lambda (ideal joint error)")):
        axis.barh(range(len(names)), values, color="tab:gray")
        axis.set(yticks=range(len(names)), yticklabels=names if axis is axes[0] else [], title=title)
    save(figure, out)


def alpha(run: Path, out: Path) -> None:
    _, model, _ = load_trained(run)
    alphas = transnorm_alphas(model)
    if not alphas:
        raise SystemExit(f"error: {run} has no TransNorm layer (norm={load_run(run).config['norm']['name']})")
    columns = min(6, len(alphas))
    rows = -(-len(alphas) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 1.6 * rows), squeeze=False)
    for axis, (name, values) in zip(axes.flat, alphas.items()):
        axis.plot(np.sort(values)[::-1], lw=1)
        axis.axhline(1.0, color="gray", lw=0.5)
        axis.set_title(name, fontsize=6)
        axis.tick_params(labelsize=5)
    for axis in list(axes.flat)[len(alphas):]:
        axis.axis("off")
    figure.suptitle(f"TransNorm alpha per channel, sorted (mean 1)\n{label(run)}", fontsize=8)
    save(figure, out)


def save(figure, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(out, dpi=150)
    plt.close(figure)
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("figure", choices=["convergence", "tsne", "adistance", "alpha"])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=500, help="samples per domain for tsne and adistance")
    args = parser.parse_args(argv)
    if args.figure == "convergence":
        convergence(args.runs, args.out)
    elif args.figure == "adistance":
        adistance(args.runs, args.out, args.limit)
    elif len(args.runs) != 1:
        parser.error(f"{args.figure} draws one run")
    elif args.figure == "tsne":
        tsne(args.runs[0], args.out, args.limit)
    else:
        alpha(args.runs[0], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
