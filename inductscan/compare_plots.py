"""Figures that compare runs: phase-change timing across suites, and per-token losses across seeds
and training (from :mod:`inductscan.compare`). Each returns a :class:`matplotlib.figure.Figure`
built without pyplot; save it with ``figure.savefig(path)``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from inductscan.compare import curve_shapes, loss_pca, seed_scatter
from inductscan.errors import ConfigError, parameter
from inductscan.labels import run_labels
from inductscan.phases import LEVELS
from inductscan.plots import FIGURE_SIZE, draw_timing_row, readable_ticks
from inductscan.timing_compare import without_tokens
from inductscan.vocabulary import RUN_KEYS

SHAPE_COLOURS = {"S-shaped": "C3", "smooth": "C0"}


def plot_compare(timing: pd.DataFrame, *, x: str = "tokens") -> Figure:
    """Every run's phase change on one axis: a marker at the midpoint, whiskers from onset to end,
    runs grouped by suite (one colour each). ``timing`` from
    :func:`inductscan.timing_compare.compare_timing` (with ``x="fraction"`` for a fraction axis);
    tokens on a log axis, a fraction of training on a linear one. A run still changing at an edge
    of its scan shows the bound it gives (a triangle pointing to where its midpoint lies); a run
    without a timed phase change is listed with its note."""
    if timing.empty:
        raise ConfigError("no runs to compare")
    if x == "tokens" and without_tokens(timing):
        raise ConfigError(
            f"{', '.join(without_tokens(timing))} counts no tokens "
            f"(scan a local folder with {parameter('tokens_per_step')})"
        )
    if x == "fraction" and "midpoint_fraction" not in timing.columns:
        raise ConfigError("the timing table has no fractions: make it with x='fraction'")
    names = run_labels(timing[RUN_KEYS].itertuples(index=False))
    suites = list(dict.fromkeys(timing["suite"]))
    figure = Figure(figsize=(FIGURE_SIZE[0], max(2.5, 0.4 * len(timing) + 1.5)), layout="constrained")
    axes = figure.subplots()
    shown = _fraction_brackets(timing) if x == "fraction" else timing
    for position, (_, row) in enumerate(shown.iterrows()):
        draw_timing_row(axes, row, position, x, f"C{suites.index(row['suite']) % 10}")
    axes.set_yticks(range(len(timing)), [names[tuple(row)] for row in timing[RUN_KEYS].itertuples(index=False)])
    for tick, suite in zip(axes.get_yticklabels(), timing["suite"]):
        tick.set_color(f"C{suites.index(suite) % 10}")
    axes.set_ylim(-0.5, len(timing) - 0.5)
    axes.invert_yaxis()
    if x == "tokens":
        axes.set_xscale("log")
        readable_ticks(axes, "tokens")
        axes.set_xlabel("tokens seen (log scale): midpoint, whiskers from onset to end (10-90% of the change)")
    else:
        axes.set_xlabel("fraction of the run's training: midpoint, whiskers from onset to end (10-90% of the change)")
    metric = timing["metric"].iloc[0]
    axes.set_title(f"When the {metric.replace('_', '-')} phase change happens: {', '.join(suites)}")
    axes.grid(True, axis="x", which="major", alpha=0.3)
    return figure


def _fraction_brackets(timing: pd.DataFrame) -> pd.DataFrame:
    """``timing`` with each level's bracketing tokens as fractions of the run's training too, so
    that a bound (a run still changing at an edge) has its place on a fraction axis."""
    shown = timing.copy()
    for level in LEVELS:
        for side in ("before", "after"):
            shown[f"{level}_fraction_{side}"] = shown[f"{level}_tokens_{side}"].astype(float) / shown["total_tokens"]
    return shown


def plot_seed_scatter(
    losses: pd.DataFrame, *, seeds: tuple[int, int] | None = None, step: int | None = None, top: int = 10
) -> Figure:
    """Two seeds' per-token log-probabilities at one step (defaults: the first two, the last step),
    Pearson's r in the title, the diagonal dashed, and the ``top`` tokens they disagree on most
    circled and listed (example:position). ``losses`` from :func:`inductscan.load_token_losses`."""
    scatter = seed_scatter(losses, seeds=seeds, step=step)
    points, outliers = scatter.points, scatter.outliers(top)
    figure = Figure(figsize=(FIGURE_SIZE[0], FIGURE_SIZE[0] * 0.75), layout="constrained")
    axes = figure.subplots()
    axes.scatter(points["logprob_a"], points["logprob_b"], s=6, alpha=0.5, color="C0", label="token")
    axes.scatter(
        outliers["logprob_a"], outliers["logprob_b"], s=40, facecolors="none", edgecolors="C3", label=f"top {top} apart"
    )
    low = min(points["logprob_a"].min(), points["logprob_b"].min())
    high = max(points["logprob_a"].max(), points["logprob_b"].max())
    axes.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1)
    listed = "\n".join(
        f"{row.example}:{row.position}  {row.logprob_a:.2f} vs {row.logprob_b:.2f}" for row in outliers.itertuples()
    )
    axes.text(1.02, 1.0, f"example:position\n{listed}", transform=axes.transAxes, va="top", fontsize="x-small")
    first, second = scatter.labels
    axes.set_xlabel(f"log-probability of the token, {first} (nats)")
    axes.set_ylabel(f"log-probability of the token, {second} (nats)")
    axes.set_title(f"Per-token log-probabilities at step {scatter.step:,}: r = {scatter.correlation:.3f}")
    axes.legend(loc="lower right", fontsize="small")
    return figure


def plot_token_curves(losses: pd.DataFrame, *, seeds: list[int] | None = None, top: int = 20) -> Figure:
    """Per-token loss against tokens seen (log x) for each seed's ``top`` tokens whose loss changes
    most, one panel per seed, each curve coloured by its shape (S-shaped or smooth, by BIC: see
    :func:`inductscan.compare.classify_curves`) and the share of each shape in the panel's title."""
    shapes = curve_shapes(losses, seeds=seeds, count=top)
    shares = shapes.shares()
    figure = Figure(figsize=(FIGURE_SIZE[0], 3.0 * len(shapes.curves) + 0.5), layout="constrained")
    panels = np.atleast_1d(figure.subplots(len(shapes.curves), 1, sharex=True, squeeze=False)[:, 0])
    for axes, (label, matrix) in zip(panels, shapes.curves.items()):
        kinds = shapes.shapes[shapes.shapes["run"] == label]["shape"].to_numpy()
        tokens = matrix.index.get_level_values("tokens")
        for column, shape in zip(matrix.columns, kinds):
            axes.plot(tokens, matrix[column], color=SHAPE_COLOURS[shape], linewidth=1, alpha=0.7)
        share = ", ".join(f"{shares.loc[label, name]:.0%} {name}" for name in SHAPE_COLOURS)
        axes.set_title(f"{label}: the {len(kinds)} tokens whose loss changes most: {share}", fontsize="medium")
        axes.set_xscale("log")
        axes.set_ylabel("loss (nats)")
    panels[-1].set_xlabel("tokens seen (log scale); shape: logistic vs line in log tokens, by BIC")
    handles = [panels[0].plot([], [], color=colour, label=name)[0] for name, colour in SHAPE_COLOURS.items()]
    panels[0].legend(handles=handles, fontsize="small")
    return figure


def plot_loss_pca(losses: pd.DataFrame, *, seeds: list[int] | None = None, top: int = 5) -> Figure:
    """Training's trajectory through the first two principal components of the (checkpoint x token)
    loss matrix, one line per seed (a circle at its first checkpoint, a square at its last), and, in
    a panel beside it, the ``top`` tokens that weigh most on each component: each named by its
    example and position in the ``--token-losses`` data, with its loading (the sign says which way
    the token's loss moves the run along the component)."""
    if top < 1:
        raise ConfigError(f"{parameter('top')} must be >= 1, got {top}")
    analysis = loss_pca(losses, seeds=seeds, count=2)
    if analysis.components.shape[0] < 2:
        raise ConfigError("a loss PCA plot needs at least 2 components: scan more checkpoints")
    figure = Figure(figsize=(FIGURE_SIZE[0] + 3, FIGURE_SIZE[1]), layout="constrained")
    axes, panel = figure.subplots(1, 2, width_ratios=[3, 1])
    for index, (label, rows) in enumerate(analysis.trajectory.groupby("run", sort=False)):
        rows = rows.sort_values("step")
        (line,) = axes.plot(rows["pc1"], rows["pc2"], marker=".", color=f"C{index % 10}", label=label)
        axes.plot(rows["pc1"].iloc[:1], rows["pc2"].iloc[:1], marker="o", color=line.get_color())
        axes.plot(rows["pc1"].iloc[-1:], rows["pc2"].iloc[-1:], marker="s", color=line.get_color())
    listed = []
    for name, group in analysis.top_tokens(top).groupby("component", sort=False):
        lines = [f"example {row.example}, position {row.position}: {row.loading:+.2f}" for row in group.itertuples()]
        listed.append("\n".join([f"{name.upper()}: the {len(lines)} tokens weighing most", *lines]))
    panel.axis("off")
    panel.set_title("Tokens behind each component\n(their loading)", fontsize="small")
    panel.text(0.0, 1.0, "\n\n".join(listed), transform=panel.transAxes, va="top", fontsize="x-small")
    first, second = analysis.explained[:2]
    axes.set_xlabel(f"PC1 ({first:.0%} of the variance)")
    axes.set_ylabel(f"PC2 ({second:.0%} of the variance)")
    axes.set_title("Per-token losses through training (circle: first checkpoint, square: last)")
    axes.legend(fontsize="small")
    return figure
