"""Phase-change timing: ``inductscan phases`` prints onset, midpoint and end per run (or head)."""

from __future__ import annotations

from pathlib import Path

import click

from inductscan.cli.options import format_option, selection_options, timing_axis_options
from inductscan.cli.output import NO_ROWS, emit
from inductscan.metrics import DEFAULT_METRIC, FALLING_METRICS, METRICS


@click.command("phases")
@click.argument("results", type=click.Path(path_type=Path), nargs=-1, required=True)
@selection_options
@click.option(
    "--metric",
    default=DEFAULT_METRIC,
    show_default=True,
    help=f"What to time: {', '.join(METRICS)}, or a score of your own the folder has (docs/custom_scores.md). "
    f"A score that falls as induction forms ({', '.join(FALLING_METRICS)}) "
    "is timed as it falls.",
)
@click.option(
    "--threshold",
    type=float,
    help="first_above_threshold is the first checkpoint whose value reaches this, at or above it (at or below it "
    "for a falling score; default: the metric's, 0.4 for the attention scores, 1 nat for in_context_gain, "
    "-0.25 nat for icl_score; see inductscan/metrics.py).",
)
@click.option("--per-head", is_flag=True, help="Time every head's own curve instead of each run's best head.")
@click.option("--changed-only", is_flag=True, help="Only rows with a phase change.")
@timing_axis_options
@format_option
def phases_command(
    results: tuple[Path, ...],
    chosen: dict,
    metric,
    threshold,
    per_head,
    changed_only,
    x_axis,
    total_tokens,
    fmt,
) -> None:
    """When the phase change happens: onset, midpoint and end per run (or per head).

    On a log-token axis, the onset, midpoint and end are where the curve (the best head's score,
    made monotone robustly) first reaches 10%, 50% and 90% of its rise from the early to the
    late plateau, interpolated between the checkpoints that bracket them. A run without a rise
    says "no phase change in the scanned range"; one still rising at its last checkpoint (or
    already rising at its first) gives bounds ("after 1.2B") and says to scan further. A score
    that falls (icl_score) is timed as it falls. csv and json hold every column. Several results
    folders are timed together (a checkpoint held by two is refused); --x fraction adds each
    level's share of the run's training.

    \b
    Example:
        inductscan phases results/
        inductscan phases results/ --metric in_context_gain
        inductscan phases results/ --metric icl_score
        inductscan phases results/ --seed 21 --per-head --changed-only --format csv
        inductscan phases stanford-small/ stanford-medium/ pythia-160m/ --x fraction --format csv
    """
    from inductscan.phase_table import phase_changes

    table = phase_changes(
        results,
        metric=metric,
        threshold=threshold,
        per_head=per_head,
        changed_only=changed_only,
        x=x_axis,
        total_tokens=total_tokens,
        **chosen,
    )
    if fmt != "table":  # csv and json stay machine-readable with no rows: a header, or []
        emit(table.timing, fmt)
    elif table.empty:
        click.echo(NO_ROWS)
    else:
        click.echo(table.header())
        emit(table.readable(), fmt)
