"""``inductscan report``: one self-contained, interactive HTML page of a results folder.

The page holds everything it shows: Plotly's JavaScript bundle (inlined once), the data, and a
small script (``report_page.js``) that swaps data into the charts; it fetches nothing, so it opens
from disk or as an e-mail attachment. What it shows: the scan (suites, runs, steps, probe and ICL
settings, versions, failures), the phase table per metric (sortable), the best head's curve per
run with its onset-end band and midpoint, a layer x head heatmap of one run with a step slider
(a click on a head draws its curve), the per-head timing of the heads that change, the ICL loss
curves of a scan with ``--icl-dataset`` and, of a scan with ``--token-losses``, the per-token losses
(:mod:`inductscan.report_token_losses`).

The browser gets only what it draws, aggregated here: the best head per checkpoint (every step),
the heatmap at no more than ``MAX_HEATMAP_STEPS`` checkpoints per run, the ICL curves at no more
than ``MAX_ICL_STEPS`` checkpoints and ``MAX_ICL_POSITIONS`` positions, numbers rounded to
``report_numbers.DIGITS`` significant digits of each score's range. A Stanford suite (10 runs x
609 steps x 144 heads) stays well under 20 MB (see BENCHMARKS.md).

This module chooses and aggregates the data; :mod:`inductscan.report_figures` makes the Plotly
figures and :mod:`inductscan.report_html` the page. None of them needs torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from inductscan import report_figures, report_token_losses
from inductscan.errors import ConfigError, DiskFullError, OutputError, parameter
from inductscan.labels import run_labels
from inductscan.metrics import METRICS, get_metric, is_added
from inductscan.phases import find_phase_changes, verdict
from inductscan.report_html import failures_html, header_html, phase_table, render_page
from inductscan.report_numbers import rounded, subsample
from inductscan.results.declarations import learn_scores
from inductscan.results.layout import atomic, refuse_a_missing_folder, require_results_folder, unwritable_reason
from inductscan.results.queries import load_selection
from inductscan.results.read import load_icl_curves, require_results
from inductscan.results.records import load_failures
from inductscan.results.selection import selection
from inductscan.vocabulary import RUN_KEYS

CURVE_METRICS = (
    "induction",
    "prefix_matching",
    "previous_token",
    "copying",
    "in_context_gain",
    "icl_score",
    "gain_effect",  # scans with --head-effects only (empty columns are left out)
    "icl_effect",
)
READ = ["tokens", *CURVE_METRICS, "probe", "icl", "dtype", "custom_scores", "inductscan_version"]  # all the page needs
HEATMAP_METRICS = tuple(name for name in CURVE_METRICS if METRICS[name].level == "head")
# and users' scores (docs/custom_scores.md): each a curve, a head score a heatmap too, after these
PER_HEAD_METRIC = "induction"
MAX_HEATMAP_STEPS = 120
MAX_ICL_STEPS = 24
MAX_ICL_POSITIONS = 80
MAX_PER_HEAD = 40  # heads shown in the per-head timing, those that change in the most runs first
SUFFIXES = (".html", ".htm")


@dataclass(frozen=True)
class ReportSummary:
    """What :func:`write_report` wrote: the page, its size in bytes, and what it says instead of
    charts when there is nothing to chart (no scored checkpoint, no row in the selection), else None."""

    path: Path
    size: int
    notice: str | None
    empty_folder: bool = False  # the folder holds no scored checkpoint (the command exits 2, as for any reader)


def write_report(
    results: str | os.PathLike,
    out: str | os.PathLike,
    *,
    suite: str | None = None,
    run: str | None = None,
    seed: int | list[int] | None = None,
    step_range: tuple[int, int] | None = None,
    patterns: int = 0,
) -> ReportSummary:
    """Write the interactive report of a results folder (or a selection of it) to ``out`` (.html).

    ``patterns`` > 0 adds the attention patterns of that many top induction heads at each run's
    phase-change checkpoint (:mod:`inductscan.report_patterns`), which runs those checkpoints again.

    Example::

        inductscan.write_report("results/", "report.html", seed=[21, 42])
    """
    out = Path(out)
    if out.suffix.lower() not in SUFFIXES:
        raise ConfigError(f"the report is an HTML page: name it .html, not {out.name}")
    if patterns < 0:
        raise ConfigError(f"{parameter('patterns')} must be >= 0, got {patterns}")
    refuse_a_missing_folder(out, "the report")
    page, notice = build_report(results, suite=suite, run=run, seed=seed, step_range=step_range, patterns=patterns)
    try:
        with atomic(out) as temporary:
            temporary.write_bytes(page.encode())
    except OSError as error:  # a full disk too: what to do is the same, choose another place
        reason = unwritable_reason(out, error.__cause__ if isinstance(error, DiskFullError) else error)
        raise OutputError(f"cannot write the report to {out}: {reason}; choose another -o") from error
    return ReportSummary(out, out.stat().st_size, notice, empty_folder=notice == empty_folder_notice(results))


def build_report(results: str | os.PathLike, *, patterns: int = 0, **chosen) -> tuple[str, str | None]:
    """The page (HTML text) and its notice (see :class:`ReportSummary`); ``chosen``: the selection
    of :func:`inductscan.results.selection.selection` (suite, run, seed, step_range); ``patterns``: see
    :func:`write_report`."""
    require_results_folder(results)
    failures = _selected_failures(load_failures(Path(results)), **chosen)
    notice, frame = None, None
    try:
        require_results(results)
    except OutputError:
        notice = empty_folder_notice(results)
    else:
        custom = learn_scores(results)
        frame = load_selection(results, columns=READ + custom, **chosen)
        if frame.empty:
            notice = "no scored checkpoint matches the selection"
    if notice is not None:
        return render_page(str(results), empty_sections(notice, failures)), notice
    curves = _icl_curves(results, frame, chosen)
    sections = report_sections(frame, failures, curves)
    _add_token_losses(sections, results, frame, chosen)
    if patterns:
        sections["patterns"] = _patterns(results, frame, patterns)
    return render_page(str(results), sections), None


def _patterns(results, frame: pd.DataFrame, top: int) -> str:
    """The attention patterns' section (imported only when asked for: it needs torch)."""
    from inductscan.report_patterns import patterns_html

    return patterns_html(results, frame, run_labels(frame.reset_index()[RUN_KEYS].itertuples(index=False)), top)


def empty_folder_notice(results: str | os.PathLike) -> str:
    return f"{results} holds no scored checkpoints: scan into it first"


def _selected_failures(failures: pd.DataFrame, **chosen) -> pd.DataFrame:
    """The failure records within the selection (suite, run, seed, step_range)."""
    return failures[selection(**chosen).mask(failures)]


def _icl_curves(results, frame: pd.DataFrame, chosen: dict) -> pd.DataFrame | None:
    """The ICL loss curves of the selection when its rows were scored with --icl-dataset, else None."""
    if not frame["icl"].notna().any():
        return None
    return load_icl_curves(results, **selection(**chosen))


def _add_token_losses(sections: dict, results, frame: pd.DataFrame, chosen: dict) -> None:
    """With --token-losses: the token-loss section and its data (none at all without token losses)."""
    found = report_token_losses.token_loss_section(results, frame, chosen)
    if found is not None:
        sections["token_losses"], sections["data"]["token_losses"] = found


def best_per_checkpoint(flat: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per (run, step): ``value`` (the best head's ``metric``, or the checkpoint score),
    with ``tokens`` and, for a head score, the best head's ``layer`` and ``head``: of tied heads the
    lowest (layer, head), as ``inductscan query --best`` chooses."""
    rows = flat[[*RUN_KEYS, "step", "tokens", "layer", "head", metric]].dropna(subset=[metric])
    if get_metric(metric).level == "head":
        rows = rows.sort_values([*RUN_KEYS, "step", "layer", "head"])  # idxmax: the first of ties
        rows = rows.loc[rows.groupby([*RUN_KEYS, "step"], sort=True)[metric].idxmax()]
    else:
        rows = rows.groupby([*RUN_KEYS, "step"], sort=True, as_index=False).first()
    return rows.rename(columns={metric: "value"})


def report_sections(frame: pd.DataFrame, failures: pd.DataFrame, icl_curves: pd.DataFrame | None) -> dict:
    """Everything the page shows of a non-empty scan table: HTML fragments and the page's data."""
    custom = [name for name in frame.columns if is_added(name)]
    curve_metrics = [*CURVE_METRICS, *custom]
    grid_metrics = [*HEATMAP_METRICS, *(name for name in custom if get_metric(name).level == "head")]
    wanted = [
        "step",
        "tokens",
        "layer",
        "head",
        *curve_metrics,
        "probe",
        "icl",
        "dtype",
        "custom_scores",
        "inductscan_version",
    ]
    flat = frame.reset_index()[[*RUN_KEYS, *wanted]]  # fewer columns: every selection below copies them
    runs = list(flat[RUN_KEYS].drop_duplicates().sort_values(RUN_KEYS).itertuples(index=False, name=None))
    names = run_labels(runs)
    labels = [names[identity] for identity in runs]
    axis = "tokens" if (flat["tokens"] > 0).any() else "step"
    metrics = [name for name in curve_metrics if name in flat and flat[name].notna().any()]
    heatmap_metrics = [name for name in grid_metrics if name in metrics]
    timing, tables, notices = {}, {}, []
    for metric in metrics:
        best = best_per_checkpoint(flat, metric)
        best["value"] = rounded(best["value"].to_numpy())
        phases = find_phase_changes(frame, metric)
        timing[metric] = report_figures.timing_figure(best, phases, metric, axis, runs, labels)
        tables[metric] = phase_table(phases, metric, axis, runs, labels)
        if metric == "induction":
            notices += _induction_notices(phases, dict(zip(runs, labels)), len(runs))
    per_head = find_phase_changes(frame, PER_HEAD_METRIC, per_head=True)
    changed = _most_changed(per_head[per_head["phase_change"]])
    data = {
        "metrics": [{"name": name, "label": report_figures.metric_title(name)} for name in metrics],
        "timing": timing,
        "heatmap": report_figures.heatmap_figure(),
        "heatmap_metrics": heatmap_metrics,
        "ranges": {name: _colour_range(flat[name]) for name in heatmap_metrics},
        "head_curve_layout": report_figures.head_curve_layout(axis),
        "axis": axis,
        "runs": [
            heatmap_data(rows, label, grid_metrics)
            for (_, rows), label in zip(flat.groupby(RUN_KEYS, sort=True), labels)
        ],
        "per_head": report_figures.per_head_figure(changed, axis, runs, labels) if len(changed) else None,
        "per_head_note": _per_head_note(per_head, changed),
        "icl": None if icl_curves is None else icl_figures(icl_curves, runs, labels),
    }
    return {
        "header": header_html(flat, runs, labels, failures),
        "notices": notices,
        "tables": tables,
        "failures": failures_html(failures),
        "data": data,
    }


def empty_sections(notice: str, failures: pd.DataFrame) -> dict:
    """The page of a folder or selection without scored checkpoints: the notice and any failures."""
    return {"header": "", "notices": [notice], "tables": {}, "failures": failures_html(failures), "data": None}


def _colour_range(values: pd.Series) -> list[float]:
    if get_metric(values.name).unit == "attention probability":
        return [0.0, 1.0]
    return [float(values.min()), float(values.max())]


def _most_changed(changed: pd.DataFrame) -> pd.DataFrame:
    """The per-head rows of the ``MAX_PER_HEAD`` heads that change in the most runs (then earliest)."""
    if changed.empty:
        return changed
    counts = changed.groupby(["layer", "head"])["midpoint_step"].agg(["size", "median"])
    kept = counts.sort_values(["size", "median"], ascending=[False, True]).head(MAX_PER_HEAD).index
    return changed[pd.MultiIndex.from_frame(changed[["layer", "head"]]).isin(kept)]


def _induction_notices(phases: pd.DataFrame, label_of: dict[tuple, str], runs: int) -> list[str]:
    """What the page says first about the induction timing: no phase change anywhere, or the runs
    whose change goes on past an edge of the scan (bounds only)."""
    if not phases["phase_change"].any():
        untimed = sum(verdict(row) == "too few checkpoints" for _, row in phases.iterrows())
        if untimed:
            too_few = "a rise with too few checkpoints to time it (induction); no other change"
            return [f"{untimed} of {runs} run(s): {too_few}"]
        return [f"no phase change in the scanned range, in any run (induction; {runs} run(s))"]
    edged = phases[phases["rising_at_start"] | phases["rising_at_end"]]
    return [f"{label_of[tuple(row[RUN_KEYS])]}: {row['note']} (induction)" for _, row in edged.iterrows()]


def _per_head_note(per_head: pd.DataFrame, shown: pd.DataFrame) -> str:
    """How many heads change, counted so that several runs read right: each run's heads are
    curves of their own (2 runs x 8 heads are 16 curves), and a head changes in some runs."""
    runs = len(per_head[RUN_KEYS].drop_duplicates())
    heads = len(per_head[["layer", "head"]].drop_duplicates())
    changed = per_head[per_head["phase_change"]]
    changing = len(changed[["layer", "head"]].drop_duplicates())
    if changed.empty:
        return f"no head's {PER_HEAD_METRIC} score has a phase change in the scanned range" + (
            f", in any of the {runs} runs" if runs > 1 else ""
        )
    if runs == 1:
        note = f"{changing} of {heads} heads have a phase change of their own {PER_HEAD_METRIC} score"
    else:
        note = (
            f"{len(changed)} of the {len(per_head)} head curves ({runs} runs x {heads} heads) have a phase change "
            f"of their own {PER_HEAD_METRIC} score; {changing} of the {heads} heads change in at least one run"
        )
    shown_heads = shown[["layer", "head"]].drop_duplicates()
    if len(shown_heads) < changing:
        note += f"; the {len(shown_heads)} that change in the most runs are shown"
    return note


def heatmap_data(rows: pd.DataFrame, label: str, metrics: list[str] | tuple[str, ...] = HEATMAP_METRICS) -> dict:
    """One run's heatmap: each head score of ``metrics``, its (layer, head) grid at each of the
    run's subsampled steps."""
    steps = np.sort(rows["step"].unique())
    chosen = steps[subsample(len(steps), MAX_HEATMAP_STEPS)]
    rows = rows[rows["step"].isin(chosen)]
    layers, heads = int(rows["layer"].max()) + 1, int(rows["head"].max()) + 1
    where = (np.searchsorted(chosen, rows["step"].to_numpy()), rows["layer"].to_numpy(), rows["head"].to_numpy())
    tokens = rows.groupby("step")["tokens"].first().loc[chosen]
    grids = {}
    for metric in metrics:
        grid = np.full((len(chosen), layers, heads), np.nan)  # (steps, layer, head)
        grid[where] = rows[metric].to_numpy()
        grids[metric] = rounded(grid)
    return {
        "label": label,
        "steps": chosen.tolist(),
        "tokens": tokens.tolist(),
        "checkpoints": len(steps),
        "grids": grids,
    }


def icl_figures(curves: pd.DataFrame, runs: list[tuple], labels: list[str]) -> list[dict | None]:
    """One ICL figure per run (None for a run without curves), subsampled in steps and positions."""
    figures = []
    by_run = dict(list(curves.groupby(RUN_KEYS, sort=False)))
    for identity, label in zip(runs, labels):
        rows = by_run.get(identity)
        if rows is None:
            figures.append(None)
            continue
        steps = np.sort(rows["step"].unique())
        positions = np.sort(rows["position"].unique())
        wanted = np.unique(np.geomspace(positions[0], positions[-1], MAX_ICL_POSITIONS).round().astype(int))
        rows = rows[rows["step"].isin(steps[subsample(len(steps), MAX_ICL_STEPS)]) & rows["position"].isin(wanted)]
        rows = rows.assign(loss=rounded(rows["loss"].to_numpy()))
        figures.append(report_figures.icl_figure(rows, label))
    return figures
