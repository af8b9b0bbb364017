"""Reading a results table: ``inductscan query`` selects rows (or answers SQL), ``inductscan
compact`` folds a folder's per-checkpoint files into one file per run."""

from __future__ import annotations

import time
from pathlib import Path

import click

from inductscan.cli.options import format_option, selection_options
from inductscan.cli.output import emit


@click.command("query")
@click.argument("results", type=click.Path(path_type=Path))
@selection_options
@click.option("--layer", type=int, help="Only this layer.")
@click.option("--head", type=int, help="Only this head.")
@click.option("--min-induction", type=float, help="Only heads whose induction score is at least this.")
@click.option("--top", type=int, help="Only the K heads with the highest induction score.")
@click.option("--best", is_flag=True, help="One row per checkpoint: its best induction head.")
@click.option(
    "--columns",
    help="Comma-separated columns to show, any of the table's (default: identity and every "
    "score; also repo, revision, weights_sha256, dtype, hazard, ...).",
)
@click.option(
    "--sql",
    "statement",
    help="Any SQL (DuckDB) over the tables `scores`, and `icl_curves` and `token_losses` where the scan "
    "made them, instead of the options above.",
)
@format_option
def query_command(results: Path, chosen: dict, layer, head, min_induction, top, best, columns, statement, fmt) -> None:
    """Select rows of a results table.

    \b
    Example:
        inductscan query results/ --seed 21 --layer 5 --min-induction 0.4
        inductscan query results/ --best --format csv
        inductscan query results/ --top 10 --columns seed,step,layer,head,induction
        inductscan query results/ --sql "SELECT seed, max(induction) AS best FROM scores GROUP BY seed"
    """
    from inductscan.results.answers import answer

    wanted = None if columns is None else [name.strip() for name in columns.split(",") if name.strip()]
    options = {"min_induction": min_induction, "top": top, "best": best, "columns": wanted}
    emit(answer(results, statement=statement, **options, **chosen, layer=layer, head=head), fmt)


@click.command("compact")
@click.argument("results", type=click.Path(path_type=Path))
def compact_command(results: Path) -> None:
    """Fold a results folder's per-checkpoint files into one sorted file per run.

    A scan writes one file per checkpoint (kill-safe, shards and Ray workers side by side) and
    compacts the runs it scanned when it ends; run this after an interrupted scan, or on a folder
    written by shards. Safe at any moment, a scan writing into the folder too: a reader always
    sees each row once, and a file written meanwhile waits for the next compaction.

    \b
    Example:
        inductscan compact results/
    """
    from inductscan.results.compact import compact
    from inductscan.results.read import require_results

    require_results(results)
    started = time.perf_counter()
    folded = compact(results)
    click.echo(f"compacted {results}: {folded} per-checkpoint file(s) folded in {time.perf_counter() - started:.1f} s")
