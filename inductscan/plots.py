"""Figures of a scan table : phase-change timing, every head's score, seeds side by side, the heads
in-context learning depends on (head effects, docs/scores.md).

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
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

from inductscan.errors import ConfigError, parameter
from inductscan.labels import run_label, run_labels
from inductscan.metrics import DEFAULT_METRIC, get_metric, head_metrics
from inductscan.phase_view import amount, bound, bound_position
from inductscan.phases import curves, find_phase_changes
from inductscan.results.read import load_results
from inductscan.vocabulary import RUN_KEYS

# from the one declaration of each score (inductscan/metrics.py; a user's: docs/custom_scores.md)
FIGURE_SIZE = (8.0, 5.0)


def metric_label(metric: str) -> str:
    """A score's label and unit, for an axis."""
    declared = get_metric(metric)
    return f"{declared.label} ({declared.unit})"


def _axis(frame: pd.DataFrame) -> tuple[str, str]:
    """Plot against tokens seen when the table knows them, else against the step."""
    if (frame["tokens"] > 0).any():
        return "tokens", "tokens seen"
    return "step", "training step"


def _table(results: pd.DataFrame | str | os.PathLike) -> pd.DataFrame:
    """A scan table, or the path of a results folder to load it from."""
    return results if isinstance(results, pd.DataFrame) else load_results(results)


def _phase_row(phases: pd.DataFrame, identity: tuple) -> pd.Series | None:
    match = phases[(phases[RUN_KEYS] == pd.Series(identity, index=RUN_KEYS)).all(axis=1)]
    return match.iloc[0] if len(match) else None


def plot_timing(
    results: pd.DataFrame,
    phases: pd.DataFrame | None = None,
    *,
    metric: str = DEFAULT_METRIC,
    threshold: float | None = None,
) -> Figure:
    """The best head's ``metric`` against tokens seen (log x), one line per run.

    Each run's midpoint is a dotted vertical line and its onset-end span is shaded, in the run's
    colour; a run still rising at its last checkpoint (or already rising at its first) has no
    midpoint to draw, only a bound: a dash-dot line with an arrow towards where the midpoint lies.
    ``threshold`` (default: the metric's, from ``inductscan/metrics.py``) is a dashed horizontal
    line. Step 0 has no place on a log axis and is left out. ``phases`` defaults to
    ``find_phase_changes(results, metric, threshold)``.
    """
    results = _table(results)
    if threshold is None:
        threshold = get_metric(metric).threshold
    _, table = curves(results, metric, per_head=False)
    if table.empty:
        raise ConfigError("the results table is empty: nothing to plot")
    if phases is None:
        phases = find_phase_changes(results, metric, threshold)  # None: the metric's own threshold
    column, name = _axis(table)
    labels = run_labels(table[RUN_KEYS].itertuples(index=False))
    figure = Figure(figsize=FIGURE_SIZE, layout="constrained")
    axes = figure.subplots()
    bounded = False
    for identity, curve in table.groupby(RUN_KEYS, sort=True):
        shown = curve[curve[column] > 0]
        (line,) = axes.plot(shown[column], shown["value"], marker=".", label=labels[tuple(identity)])
        row = _phase_row(phases, identity)
        if row is None or not row["phase_change"]:
            continue
        bounded |= _mark_phase(axes, row, column, line.get_color())
    if threshold is not None:
        axes.axhline(threshold, color="grey", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    axes.set_xscale("log")
    drawn = table.loc[table[column] > 0, column]
    if len(drawn):
        log_ticks(axes.xaxis, drawn.min(), drawn.max(), plain=column == "step")
    axes.set_xlabel(f"{name} (log scale; step 0 not shown)")
    declared = get_metric(metric)
    best = "" if declared.level == "checkpoint" else "best head's "
    axes.set_ylabel(f"{best}{metric_label(metric)}")
    suites = ", ".join(sorted(table["suite"].unique()))
    title = declared.label if declared.level == "checkpoint" else f"best head's {declared.label}"
    axes.set_title(f"{title[0].upper()}{title[1:]} during training: {suites}")
    axes.grid(True, which="major", alpha=0.3)
    _timing_legend(axes, bounded)
    return figure


def _mark_phase(axes, row: pd.Series, column: str, colour: str) -> bool:
    """Draw a timed run's midpoint and onset-end span, or the bound that is all a run with a
    plateau outside the scanned range gives; True when it drew a bound."""
    limit = bound(row)
    if limit is None:
        if pd.notna(row[f"midpoint_{column}"]):
            axes.axvline(row[f"midpoint_{column}"], color=colour, linestyle=":", label="_midpoint")
        if pd.notna(row[f"onset_{column}"]) and pd.notna(row[f"end_{column}"]):
            axes.axvspan(row[f"onset_{column}"], row[f"end_{column}"], color=colour, alpha=0.12)
        return False
    where = bound_position(row, "midpoint", column)
    if where is None:
        return False
    axes.axvline(where, color=colour, linestyle="-.", linewidth=1, label="_bound")
    towards = where * (1.6 if limit == "after" else 1 / 1.6)
    axes.annotate(
        "",
        xy=(towards, 0.97),
        xytext=(where, 0.97),
        xycoords=("data", "axes fraction"),
        arrowprops={"arrowstyle": "->", "color": colour},
    )
    return True


def _timing_legend(axes, bounded: bool) -> None:
    handles, _ = axes.get_legend_handles_labels()
    handles += [
        Line2D([], [], color="grey", linestyle=":", label="midpoint (50% of the change)"),
        Patch(color="grey", alpha=0.25, label="onset-end (10-90%)"),
    ]
    if bounded:
        handles.append(
            Line2D(
                [], [], color="grey", linestyle="-.", label="midpoint lies past the arrow (still changing at an edge)"
            )
        )
    axes.legend(handles=handles, fontsize="small")


def plot_in_context_gain(
    results: pd.DataFrame, phases: pd.DataFrame | None = None, *, threshold: float | None = None
) -> Figure:
    """``in_context_gain`` (nats) against tokens seen, one line per run, with its phase timing;
    ``threshold`` (default: the metric's, 1 nat) dashed."""
    return plot_timing(results, phases, metric="in_context_gain", threshold=threshold)


ICL_LANDMARKS = {  # Olsson et al.'s ICL score, before and after the phase change
    -0.15: "-0.15: above it before the phase change (Olsson et al.)",
    -0.4: "-0.4: below it after the phase change",
}


def plot_icl_score(results: pd.DataFrame, phases: pd.DataFrame | None = None) -> Figure:
    """``icl_score`` (nats; loss at a late token minus an early one) against tokens seen, one line
    per run, its fall timed as :func:`plot_timing` marks it; dotted lines at Olsson et al.'s
    landmarks, -0.15 (above: before the change) and -0.4 (below: after it)."""
    flat = results.reset_index()
    if "icl_score" not in flat or flat["icl_score"].isna().all():
        raise ConfigError(f"the table has no icl_score: scan with {parameter('icl')} to score in-context learning")
    scored = results[results["icl_score"].notna()]
    figure = plot_timing(scored, phases, metric="icl_score")
    axes = figure.axes[0]
    for level, text in ICL_LANDMARKS.items():
        axes.axhline(level, color="black", linestyle="-", linewidth=0.8, alpha=0.35, label=text)
    axes.set_ylabel(_icl_label(flat))
    bounded = any(line.get_label() == "_bound" for line in axes.get_lines())
    _timing_legend(axes, bounded)
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
    per checkpoint coloured by step; ``curves`` from :func:`inductscan.load_icl_curves`.

    The colour follows log step; step 0, which has no logarithm, gets the colour bar's first
    place, labelled 0, half a decade before the first trained step. Both axes are labelled with
    plain numbers (1, 2, 5, 10, ...), a few of them, so that no two labels overlap."""
    rows, label = _one_run(curves, suite, seed, run)
    steps = np.array(sorted(rows["step"].unique()))
    places = step_places(steps)
    colours = matplotlib.colormaps["viridis"]
    norm = Normalize(vmin=places.min(), vmax=max(places.max(), places.min() + 1e-9))
    figure = Figure(figsize=FIGURE_SIZE, layout="constrained")
    axes = figure.subplots()
    for step, place in zip(steps, places):
        curve = rows[rows["step"] == step].sort_values("position")
        axes.plot(curve["position"], curve["loss"], color=colours(norm(place)), linewidth=1)
    axes.set_xscale("log")
    log_ticks(axes.xaxis, rows["position"].min(), rows["position"].max(), plain=True)
    axes.set_xlabel("token position in the context (log scale)")
    axes.set_ylabel("mean loss (nats)")
    axes.set_title(f"Loss by token position: {label}")
    bar = figure.colorbar(ScalarMappable(norm=norm, cmap=colours), ax=axes, label="training step (log scale)")
    shown = np.unique(np.abs(places[None, :] - np.linspace(places.min(), places.max(), 6)[:, None]).argmin(axis=1))
    bar.set_ticks(places[shown], labels=[f"{steps[index]:,}" for index in shown])
    bar.ax.yaxis.set_minor_locator(NullLocator())
    return figure


def step_places(steps: np.ndarray) -> np.ndarray:
    """Each step's place on a log colour scale: log10(step), and step 0 half a decade before the
    first positive step (or at 0 when it is the only step)."""
    steps = np.asarray(steps, dtype=float)
    positive = steps[steps > 0]
    first = np.log10(positive.min()) if len(positive) else 0.5
    with np.errstate(divide="ignore"):
        return np.where(steps > 0, np.log10(np.maximum(steps, 1e-300)), first - 0.5)


def log_ticks(axis, low: float, high: float, *, plain: bool = False) -> None:
    """Major ticks on a log ``axis`` at 1-2-3-5 x 10^k (or 1-2-5, 1-3 or 1 x 10^k: the first with at
    most 8 between ``low`` and ``high``), labelled as amounts (200k, 3M) or, with ``plain``, as
    numbers; no labels on the minor ticks. Matplotlib's own log ticks label only powers of ten
    (two ticks on a decade of data) or, on a short axis, crowd their minor labels together."""
    low, high = max(float(low), 1e-300), max(float(high), float(low))
    decades = range(int(np.floor(np.log10(low))), int(np.ceil(np.log10(high))) + 1)
    for mantissas in ((1, 2, 3, 5), (1, 2, 5), (1, 3), (1,)):
        ticks = [mantissa * 10.0**decade for decade in decades for mantissa in mantissas]
        ticks = [tick for tick in ticks if low <= tick * (1 + 1e-9) and tick <= high * (1 + 1e-9)]
        if len(ticks) <= 8:
            break
    if len(ticks) < 2:  # a short axis: its ends
        ticks = sorted({low, high})
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_ticklabels([f"{tick:g}" if plain else amount(tick) for tick in ticks])
    axis.set_minor_formatter(NullFormatter())


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
            run_label(*identity, with_suite=True, with_run=True)
            for identity in flat[RUN_KEYS].drop_duplicates().itertuples(index=False)
        )
        raise ConfigError(f"no run matches suite={suite} run={run} seed={seed}; the table has {known or 'no runs'}")
    chosen = tuple(runs.iloc[0])
    rows = flat[(flat[RUN_KEYS] == pd.Series(chosen, index=RUN_KEYS)).all(axis=1)]
    several = len(runs) > 1 or flat[RUN_KEYS].drop_duplicates()[["suite", "seed"]].duplicated().any()
    label = run_label(*chosen, with_suite=True, with_run=several)
    return rows, label


def plot_heatmap(
    results: pd.DataFrame,
    *,
    seed: int | None = None,
    suite: str | None = None,
    run: str | None = None,
    metric: str = DEFAULT_METRIC,
) -> Figure:
    """Every head's ``metric`` (rows: layer.head) at every checkpoint (columns, in step order) of
    one run: the first run of the table unless ``suite``/``seed``/``run`` choose one."""
    rows, label = _one_run(_table(results), suite, seed, run)
    if metric not in head_metrics():
        choices = ", ".join(head_metrics())
        raise ConfigError(f"a heatmap needs a head score; {metric!r} is not one of {choices}")
    grid = rows.pivot_table(index=["layer", "head"], columns="step", values=metric)  # (heads, steps)
    figure = Figure(figsize=(max(FIGURE_SIZE[0], grid.shape[1] * 0.12), FIGURE_SIZE[1]), layout="constrained")
    axes = figure.subplots()
    limits = {"vmin": 0.0, "vmax": 1.0} if get_metric(metric).unit == "attention probability" else {}
    image = axes.imshow(grid.to_numpy(), aspect="auto", interpolation="nearest", cmap="viridis", **limits)
    figure.colorbar(image, ax=axes, label=metric_label(metric))
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


EFFECT_METRICS = ("gain_effect", "icl_effect")  # the exact effects; the estimates are for ranking
SHOWN_HEADS = 6  # lines of the effects plot


def top_heads(rows: pd.DataFrame, metric: str, count: int = SHOWN_HEADS) -> list[tuple[int, int]]:
    """The ``count`` heads (layer, head) of one run with the largest exact ``metric`` at any checkpoint."""
    largest = rows.dropna(subset=[metric]).groupby(["layer", "head"])[metric].max()
    return [tuple(map(int, head)) for head in largest.sort_values(ascending=False).index[:count]]


def plot_effects(
    results: pd.DataFrame | str | os.PathLike,
    *,
    metric: str = "gain_effect",
    seed: int | None = None,
    suite: str | None = None,
    run: str | None = None,
    heads: int = SHOWN_HEADS,
) -> Figure:
    """The exact ``metric`` (gain_effect or icl_effect) of one run's top heads against tokens seen
    (log x), one line a head: when each becomes necessary, and whether the mechanism moves from
    head to head. A head has a value only at the checkpoints where it was among the scan's
    ``--head-effects-top``; elsewhere its line has a gap. Step 0 has no place on a log axis."""
    if metric not in EFFECT_METRICS:
        raise ConfigError(
            f"{parameter('kind')} effects draws {' or '.join(EFFECT_METRICS)}, got {parameter('metric')} {metric}"
        )
    rows, label = _one_run(_table(results), suite, seed, run)
    if rows[metric].isna().all():
        raise ConfigError(
            f"no {metric} in these rows: scan with {parameter('head_effects')} (and {parameter('icl')} for icl_effect)"
        )
    column, name = _axis(rows)
    shown = rows[rows[column] > 0]
    figure = Figure(figsize=FIGURE_SIZE, layout="constrained")
    axes = figure.subplots()
    for layer, head in top_heads(rows, metric, heads):
        curve = shown[(shown["layer"] == layer) & (shown["head"] == head)].sort_values(column)
        axes.plot(curve[column], curve[metric], marker=".", label=f"head {layer}.{head}")
    axes.axhline(0.0, color="grey", linewidth=1)
    axes.set_xscale("log")
    if len(shown):
        log_ticks(axes.xaxis, shown[column].min(), shown[column].max(), plain=column == "step")
    axes.set_xlabel(f"{name} (log scale; step 0 not shown)")
    axes.set_ylabel(metric_label(metric))
    axes.set_title(f"Heads in-context learning depends on: {label}")
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(fontsize="small", title="gaps: not among the top heads there", title_fontsize="small")
    return figure


def plot_seed_comparison(phases: pd.DataFrame) -> Figure:
    """Midpoint tokens per run (a dot) with onset-end whiskers, from :func:`find_phase_changes`;
    a run still changing at an edge of the scan shows the bound it gives (a triangle pointing to
    where its midpoint lies), and a run without a phase change is named as such."""
    if phases.empty:
        raise ConfigError("no runs to compare")
    if "layer" in phases.columns:
        raise ConfigError("plot_seed_comparison needs the per-run table, not the per-head one")
    column = "tokens" if (phases["midpoint_tokens_after"].fillna(0) > 0).any() else "step"
    names = run_labels(phases[RUN_KEYS].itertuples(index=False))
    figure = Figure(figsize=(FIGURE_SIZE[0], max(2.5, 0.5 * len(phases) + 1.5)), layout="constrained")
    axes = figure.subplots()
    for position, (_, row) in enumerate(phases.iterrows()):
        draw_timing_row(axes, row, position, column, f"C{position % 10}")
    axes.set_yticks(range(len(phases)), [names[tuple(row)] for row in phases[RUN_KEYS].itertuples(index=False)])
    axes.set_ylim(-0.5, len(phases) - 0.5)
    axes.invert_yaxis()
    axes.set_xscale("log")
    readable_ticks(axes, column)
    name = "tokens seen" if column == "tokens" else "training step"
    axes.set_xlabel(f"{name} at the midpoint (log scale); whiskers: onset to end (10-90% of the change)")
    metric = phases["metric"].iloc[0]
    axes.set_title(f"When the {metric.replace('_', '-')} phase change happens, per seed")
    axes.grid(True, axis="x", which="major", alpha=0.3)
    return figure


def draw_timing_row(axes, row: pd.Series, position: int, column: str, colour: str) -> None:
    """One run of a timing comparison at height ``position``: its midpoint with onset-end whiskers;
    or, still changing at an edge of the scan, a triangle at the bound pointing to where the
    midpoint lies, with the note; or, untimed, its note."""
    middle, limit = row[f"midpoint_{column}"], bound(row)
    if row["phase_change"] and limit is None and pd.notna(middle):
        low = middle - row[f"onset_{column}"] if pd.notna(row[f"onset_{column}"]) else 0.0
        high = row[f"end_{column}"] - middle if pd.notna(row[f"end_{column}"]) else 0.0
        axes.errorbar([middle], [position], xerr=[[low], [high]], fmt="o", capsize=4, color=colour)
        return
    where = bound_position(row, "midpoint", column) if row["phase_change"] else None
    if where is not None:
        axes.plot([where], [position], marker=">" if limit == "after" else "<", markersize=9, color=colour)
        shown = {"tokens": amount(where), "step": f"step {where:,.0f}"}.get(column, f"{where:.3g} of training")
        reason = row["note"].split(" (")[0]  # "still rising at the last checkpoint"
        text = f"midpoint {limit} {shown}: {reason}"
        axes.text(0.02, position + 0.3, text, va="center", transform=axes.get_yaxis_transform(), fontsize="x-small")
        return
    note = row["note"] or "no phase change in the scanned range"
    axes.text(0.02, position, note, va="center", transform=axes.get_yaxis_transform(), color="grey", fontsize="small")


def readable_ticks(axes, column: str) -> None:
    """:func:`log_ticks` over what the log x axis shows; a plain axis where nothing is drawn on it."""
    low, high = axes.get_xlim()
    if low > 0 and high > low and (len(axes.lines) or len(axes.collections)):
        log_ticks(axes.xaxis, low, high, plain=column != "tokens")
