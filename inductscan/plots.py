"""Figures of a scan table : phase-change timing, every head's score, seeds side by side.

Each ``plot_*`` function returns a :class:`matplotlib.figure.Figure` built without pyplot (no
global state, no display needed); save it with ``figure.savefig(path)``.
"""

from __future__ import annotations

import json
import os

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from inductscan.errors import ConfigError
from inductscan.metrics import HEAD_METRICS, METRICS
from inductscan.phases import curves, find_phase_changes
from inductscan.queries import RUN_KEYS
from inductscan.store import load_results

# from the one declaration of each score (inductscan/metrics.py)
ATTENTION_METRICS = tuple(name for name, metric in METRICS.items() if metric.unit == "attention probability")
METRIC_LABELS = {name: f"{metric.label} ({metric.unit})" for name, metric in METRICS.items()}
FIGURE_SIZE = (8.0, 5.0)


def _axis(frame: pd.DataFrame) -> tuple[str, str]:
    """Plot against tokens seen when the table knows them, else against the step."""
    if (frame["tokens"] > 0).any():
        return "tokens", "tokens seen"
    return "step", "training step"


def _table(results: pd.DataFrame | str | os.PathLike) -> pd.DataFrame:
    """A scan table, or the path of a results folder to load it from."""
    return results if isinstance(results, pd.DataFrame) else load_results(results)


def run_labels(identities) -> dict[tuple, str]:
    """A short label for each run (suite, run, seed) that tells it from the others shown: its seed
    where seeds differ, else with its suite, else with its run's name (two local runs of one seed)."""
    identities = list(dict.fromkeys(tuple(identity) for identity in identities))
    seeds = [seed for _, _, seed in identities]
    suite_seeds = [(suite, seed) for suite, _, seed in identities]
    several_suites = len({suite for suite, _, _ in identities}) > 1
    labels = {}
    for suite, run, seed in identities:
        if len(set(suite_seeds)) < len(suite_seeds):
            labels[(suite, run, seed)] = f"{suite} {run} seed {seed}" if several_suites else f"{run} seed {seed}"
        elif len(set(seeds)) < len(seeds) or several_suites:
            labels[(suite, run, seed)] = f"{suite} seed {seed}"
        else:
            labels[(suite, run, seed)] = f"seed {seed}"
    return labels


def _phase_row(phases: pd.DataFrame, identity: tuple) -> pd.Series | None:
    match = phases[(phases[RUN_KEYS] == pd.Series(identity, index=RUN_KEYS)).all(axis=1)]
    return match.iloc[0] if len(match) else None


def plot_timing(
    results: pd.DataFrame,
    phases: pd.DataFrame | None = None,
    *,
    metric: str = "induction",
    threshold: float | None = None,
) -> Figure:
    """The best head's ``metric`` against tokens seen (log x), one line per run.

    Each run's midpoint is a dotted vertical line and its onset-end span is shaded, in the run's
    colour; ``threshold`` (default: the metric's, from ``inductscan/metrics.py``) is a dashed
    horizontal line. Step 0 has no place on a log axis and is left out. ``phases`` defaults to
    ``find_phase_changes(results, metric, threshold)``.
    """
    results = _table(results)
    if threshold is None and metric in METRICS:
        threshold = METRICS[metric].threshold
    _, table = curves(results, metric, per_head=False)
    if table.empty:
        raise ConfigError("the results table is empty: nothing to plot")
    if phases is None:
        phases = find_phase_changes(results, metric, threshold)  # None: the metric's own threshold
    column, name = _axis(table)
    labels = run_labels(table[RUN_KEYS].itertuples(index=False))
    figure = Figure(figsize=FIGURE_SIZE, layout="constrained")
    axes = figure.subplots()
    for identity, curve in table.groupby(RUN_KEYS, sort=True):
        shown = curve[curve[column] > 0]
        (line,) = axes.plot(shown[column], shown["value"], marker=".", label=labels[tuple(identity)])
        row = _phase_row(phases, identity)
        if row is None or not row["phase_change"]:
            continue
        if pd.notna(row[f"midpoint_{column}"]):
            axes.axvline(row[f"midpoint_{column}"], color=line.get_color(), linestyle=":", label="_midpoint")
        if pd.notna(row[f"onset_{column}"]) and pd.notna(row[f"end_{column}"]):
            axes.axvspan(row[f"onset_{column}"], row[f"end_{column}"], color=line.get_color(), alpha=0.12)
    if threshold is not None:
        axes.axhline(threshold, color="grey", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    handles, _ = axes.get_legend_handles_labels()
    handles += [
        Line2D([], [], color="grey", linestyle=":", label="midpoint (50% of the rise)"),
        Patch(color="grey", alpha=0.25, label="onset-end (10-90%)"),
    ]
    axes.legend(handles=handles, fontsize="small")
    axes.set_xscale("log")
    axes.set_xlabel(f"{name} (log scale; step 0 not shown)")
    best = "" if metric == "in_context_gain" else "best head's "
    axes.set_ylabel(f"{best}{METRIC_LABELS[metric]}")
    suites = ", ".join(sorted(table["suite"].unique()))
    title = "In-context gain" if metric == "in_context_gain" else f"Best head's {metric.replace('_', '-')} score"
    axes.set_title(f"{title} during training: {suites}")
    axes.grid(True, which="major", alpha=0.3)
    return figure


def plot_in_context_gain(results: pd.DataFrame, phases: pd.DataFrame | None = None) -> Figure:
    """``in_context_gain`` (nats) against tokens seen, one line per run, with its phase timing."""
    return plot_timing(results, phases, metric="in_context_gain")


def plot_icl_score(results: pd.DataFrame) -> Figure:
    """``icl_score`` (nats; loss at a late token minus an early one) against tokens seen, one line per
    run; dotted lines at Olsson et al.'s landmarks, -0.15 (above: before the change) and -0.4 (after)."""
    flat = results.reset_index()
    if "icl_score" not in flat or flat["icl_score"].isna().all():
        raise ConfigError("the table has no icl_score: scan with --icl-dataset to score in-context learning")
    x, x_label = _axis(flat)
    per_checkpoint = flat.dropna(subset=["icl_score"]).groupby([*RUN_KEYS, "step"], as_index=False).first()
    figure = Figure(figsize=FIGURE_SIZE, layout="constrained")
    axes = figure.subplots()
    labels = run_labels(per_checkpoint[RUN_KEYS].itertuples(index=False))
    for identity, run in per_checkpoint.groupby(RUN_KEYS):
        run = run[run[x] > 0].sort_values("step")
        axes.plot(run[x], run["icl_score"], marker="o", markersize=3, label=labels[tuple(identity)])
    for level in (-0.15, -0.4):
        axes.axhline(level, color="grey", linestyle=":", linewidth=1)
    axes.set_xscale("log")
    axes.set_xlabel(x_label)
    axes.set_ylabel(_icl_label(flat))
    axes.legend(loc="best")
    return figure


def _icl_label(flat: pd.DataFrame) -> str:
    record = next((value for value in flat["icl"] if isinstance(value, str)), None)
    if record is None:
        return "ICL score (nats)"
    settings = json.loads(record)
    return f"ICL score: loss at token {settings['late']} - loss at token {settings['early']} (nats)"


def plot_icl_curves(
    curves: pd.DataFrame, *, seed: int | None = None, suite: str | None = None, run: str | None = None
) -> Figure:
    """Mean loss against token position (Olsson et al.'s loss-vs-context plot) for one run, one line
    per checkpoint coloured by step; ``curves`` from :func:`inductscan.load_icl_curves`."""
    rows, label = _one_run(curves, suite, seed, run)
    steps = sorted(rows["step"].unique())
    colours = matplotlib.colormaps["viridis"]
    norm = LogNorm(vmin=max(min(steps), 1), vmax=max(max(steps), 2))
    figure = Figure(figsize=FIGURE_SIZE, layout="constrained")
    axes = figure.subplots()
    for step in steps:
        curve = rows[rows["step"] == step].sort_values("position")
        axes.plot(curve["position"], curve["loss"], color=colours(norm(max(step, 1))), linewidth=1)
    axes.set_xscale("log")
    axes.set_xlabel("token position in the context")
    axes.set_ylabel("mean loss (nats)")
    axes.set_title(label)
    figure.colorbar(ScalarMappable(norm=norm, cmap=colours), ax=axes, label="training step")
    return figure


def _one_run(
    results: pd.DataFrame, suite: str | None, seed: int | None, run: str | None = None
) -> tuple[pd.DataFrame, str]:
    """The rows of one run (the first that ``suite``, ``seed`` and ``run`` allow) and its label."""
    flat = results.reset_index()
    runs = flat[RUN_KEYS].drop_duplicates().sort_values(RUN_KEYS)
    for name, wanted in (("suite", suite), ("seed", seed), ("run", run)):
        if wanted is not None:
            runs = runs[runs[name] == wanted]
    if runs.empty:
        known = ", ".join(
            f"{row.suite} {row.run} seed {row.seed}" for row in flat[RUN_KEYS].drop_duplicates().itertuples()
        )
        raise ConfigError(f"no run matches suite={suite} run={run} seed={seed}; the table has {known or 'no runs'}")
    chosen = tuple(runs.iloc[0])
    rows = flat[(flat[RUN_KEYS] == pd.Series(chosen, index=RUN_KEYS)).all(axis=1)]
    several = len(runs) > 1 or flat[RUN_KEYS].drop_duplicates()[["suite", "seed"]].duplicated().any()
    label = f"{chosen[0]} {chosen[1]} seed {chosen[2]}" if several else f"{chosen[0]} seed {chosen[2]}"
    return rows, label


def plot_heatmap(
    results: pd.DataFrame,
    *,
    seed: int | None = None,
    suite: str | None = None,
    run: str | None = None,
    metric: str = "induction",
) -> Figure:
    """Every head's ``metric`` (rows: layer.head) at every checkpoint (columns, in step order) of
    one run: the first run of the table unless ``suite``/``seed``/``run`` choose one."""
    rows, label = _one_run(_table(results), suite, seed, run)
    if metric not in HEAD_METRICS:
        choices = ", ".join(HEAD_METRICS)
        raise ConfigError(f"a heatmap needs a head score; {metric!r} is not one of {choices}")
    grid = rows.pivot_table(index=["layer", "head"], columns="step", values=metric)  # (heads, steps)
    figure = Figure(figsize=(max(FIGURE_SIZE[0], grid.shape[1] * 0.12), FIGURE_SIZE[1]), layout="constrained")
    axes = figure.subplots()
    limits = {"vmin": 0.0, "vmax": 1.0} if metric in ATTENTION_METRICS else {}
    image = axes.imshow(grid.to_numpy(), aspect="auto", interpolation="nearest", cmap="viridis", **limits)
    figure.colorbar(image, ax=axes, label=METRIC_LABELS[metric])
    steps = grid.columns.to_numpy()
    ticks = np.unique(np.linspace(0, len(steps) - 1, min(len(steps), 12)).round().astype(int))
    axes.set_xticks(ticks, [f"{steps[tick]:,}" for tick in ticks], rotation=45, ha="right")
    heads = list(grid.index)
    if len(heads) <= 48:
        axes.set_yticks(range(len(heads)), [f"{layer}.{head}" for layer, head in heads])
    else:  # one label per layer: its first head
        firsts = [index for index, (layer, head) in enumerate(heads) if index == 0 or heads[index - 1][0] != layer]
        axes.set_yticks(firsts, [f"layer {heads[index][0]}" for index in firsts])
    axes.set_xlabel("training step (one column per checkpoint, not to scale)")
    axes.set_ylabel("head (layer.head)")
    axes.set_title(f"{metric.replace('_', '-')} score of every head: {label}")
    return figure


def plot_seed_comparison(phases: pd.DataFrame) -> Figure:
    """Midpoint tokens per run (a dot) with onset-end whiskers, from :func:`find_phase_changes`;
    a run without a phase change is named as such."""
    if phases.empty:
        raise ConfigError("no runs to compare")
    if "layer" in phases.columns:
        raise ConfigError("plot_seed_comparison needs the per-run table, not the per-head one")
    column = "tokens" if (phases["midpoint_tokens_after"].fillna(0) > 0).any() else "step"
    names = run_labels(phases[RUN_KEYS].itertuples(index=False))
    figure = Figure(figsize=(FIGURE_SIZE[0], max(2.5, 0.5 * len(phases) + 1.5)), layout="constrained")
    axes = figure.subplots()
    labels = []
    timed = phases[phases["phase_change"] & phases[f"midpoint_{column}"].notna()]
    for position, (_, row) in enumerate(phases.iterrows()):
        labels.append(names[tuple(row[RUN_KEYS])])
        if row.name in timed.index:
            middle = row[f"midpoint_{column}"]
            low = middle - row[f"onset_{column}"] if pd.notna(row[f"onset_{column}"]) else 0.0
            high = row[f"end_{column}"] - middle if pd.notna(row[f"end_{column}"]) else 0.0
            axes.errorbar([middle], [position], xerr=[[low], [high]], fmt="o", capsize=4, color=f"C{position % 10}")
        else:
            axes.text(
                0.02,
                position,
                row["note"] or "no phase change in the scanned range",
                va="center",
                transform=axes.get_yaxis_transform(),
                color="grey",
            )
    axes.set_yticks(range(len(labels)), labels)
    axes.set_ylim(-0.5, len(labels) - 0.5)
    axes.invert_yaxis()
    axes.set_xscale("log")
    name = "tokens seen" if column == "tokens" else "training step"
    axes.set_xlabel(f"{name} at the midpoint (log scale); whiskers: onset to end (10-90% of the rise)")
    metric = phases["metric"].iloc[0]
    axes.set_title(f"When the {metric.replace('_', '-')} phase change happens, per seed")
    axes.grid(True, axis="x", which="major", alpha=0.3)
    return figure
