"""The TransNorm paper's analysis figures, as PNG, from run folders.

    python scripts/plots.py convergence RUNS [RUNS ...] --out results/figures/convergence.png  # Figure 5a
    python scripts/plots.py tsne RUN [RUN ...] --out results/figures/tsne.png                 # Figure 4
    python scripts/plots.py adistance RUN [RUN ...] --out results/figures/adistance.png       # Figure 5c
    python scripts/plots.py alpha RUN --out results/figures/alpha.png                         # Figure 3

``convergence`` draws the reported accuracy against iterations for every run at or below RUNS (a preset's output
folder draws all its runs): one panel per task and method, one colour per normalization, one line per seed;
``tsne`` embeds the bottleneck features of source and target samples, coloured by domain, one panel per run (a BN run
beside a TransNorm run); ``adistance`` compares the A-distance and the ideal joint hypothesis' error lambda of runs;
``alpha`` shows the distribution over channels of alpha in every TransNorm layer, in network order. Runs are folders
train.py wrote (with a checkpoint, except for ``convergence``).
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
from normda.reporting.tables import find_runs, load_run, recorded_choice


def label(run_dir: Path) -> str:
    labels = load_run(run_dir).labels
    return f"{labels['method_label']} / {labels['norm_label']} ({labels['task_label']}, seed {labels['seed']})"


def convergence(paths: list[Path], out: Path) -> None:
    runs = [run for run in find_runs(paths) if run.metrics]
    if not runs:
        raise SystemExit(f"error: no run with evaluations at or below {', '.join(map(str, paths))}")
    try:
        metric = recorded_choice(runs, "metric")  # the accuracy the runs' table reports
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    panels = sorted({(run.labels["task_label"], run.labels["method_label"]) for run in runs})
    norms = sorted({run.labels["norm_label"] for run in runs})
    colours = {norm: plt.get_cmap("tab10")(index % 10) for index, norm in enumerate(norms)}
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 2.8 * rows), squeeze=False, sharey=True)
    for axis, (task, method) in zip(axes.flat, panels):
        for run in runs:
            if (run.labels["task_label"], run.labels["method_label"]) != (task, method):
                continue
            points = [(m["step"], m[metric]) for m in run.metrics if metric in m]
            axis.plot(*zip(*points), color=colours[run.labels["norm_label"]], lw=1, alpha=0.8)
        axis.set_title(f"{task}, {method}", fontsize=9)
        axis.grid(alpha=0.3)
        axis.tick_params(labelsize=7)
    for axis in list(axes.flat)[len(panels):]:
        axis.axis("off")
    for axis in axes[:, 0]:
        axis.set_ylabel(f"{metric} (%)", fontsize=8)
    for axis in axes[-1]:
        axis.set_xlabel("iteration", fontsize=8)
    handles = [matplotlib.lines.Line2D([], [], color=colours[norm], label=norm) for norm in norms]
    figure.legend(handles=handles, loc="upper center", ncol=min(len(norms), 2), fontsize=7, frameon=False,
                  title="one line per seed", title_fontsize=8, bbox_to_anchor=(0.5, 1.0))
    save(figure, out, top=(0.88 if rows == 1 else 0.94) - (0.05 * ((len(norms) - 1) // 2)))


def tsne(runs: list[Path], out: Path, limit: int) -> None:
    figure, axes = plt.subplots(1, len(runs), figsize=(4.5 * len(runs), 4.8), squeeze=False)
    for axis, run in zip(axes.flat, runs):
        _, model, task = load_trained(run)
        source, _, target, _ = domain_features(model, task, limit)
        embedded = TSNE(n_components=2, init="pca", random_state=0,
                        perplexity=min(30.0, (len(source) + len(target) - 1) / 3)).fit_transform(
            np.concatenate([source, target]))
        axis.scatter(*embedded[: len(source)].T, s=3, c="tab:red", label=f"source ({task.source})")
        axis.scatter(*embedded[len(source):].T, s=3, c="tab:blue", label=f"target ({task.target})")
        axis.set(xticks=[], yticks=[])
        axis.set_title(label(run), fontsize=9)
        axis.legend(markerscale=3, fontsize=7)
    figure.suptitle("t-SNE of bottleneck features", fontsize=10)
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
        raise SystemExit(f"error: {run} has no TransNorm layer (norm {load_run(run).labels['norm_label']}): "
                         f"give a run trained with norm=transnorm")
    figure, axis = plt.subplots(figsize=(max(5.0, 0.22 * len(alphas) + 2.0), 3.6))
    axis.boxplot(list(alphas.values()), whis=(0, 100), widths=0.6)
    axis.axhline(1.0, color="gray", lw=0.5)
    names = [name.removeprefix("backbone.") for name in alphas]
    axis.set_xticks(range(1, len(alphas) + 1), names, rotation=90, fontsize=5 if len(alphas) > 12 else 8)
    axis.set_ylabel("alpha over the layer's channels\n(box: quartiles; whiskers: min, max)", fontsize=8)
    axis.set_title(f"TransNorm alpha per layer at the end of training\n{label(run)}", fontsize=9)
    save(figure, out)


def save(figure, out: Path, top: float = 1.0) -> None:
    """Write ``figure`` as PNG, laid out below ``top`` (the room a figure-wide legend needs)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout(rect=(0, 0, 1, top))
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
    elif args.figure == "tsne":
        tsne(args.runs, args.out, args.limit)
    elif len(args.runs) != 1:
        parser.error(f"{args.figure} draws one run")
    else:
        alpha(args.runs[0], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
