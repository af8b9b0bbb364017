"""Seed against seed: ``inductscan compare`` sets two seeds' per-token log-probabilities side by side."""

from __future__ import annotations

from pathlib import Path

import click

from inductscan.cli.options import format_option, integers
from inductscan.cli.output import NO_ROWS, emit, warn


@click.command("compare")
@click.argument("results", type=click.Path(path_type=Path))
@click.option("--seed", "--seeds", "seed", help="The two seeds to compare, as A,B (default: the first two).")
@click.option("--suite", help="Only this suite's runs.")
@click.option("--step", type=int, help="The step (default: the last both seeds have).")
@click.option("--top", type=int, default=10, show_default=True, help="Outlier tokens listed.")
@format_option
def compare_command(results: Path, seed, suite, step, top, fmt) -> None:
    """Two seeds' per-token log-probabilities at one step: their correlation and the tokens they
    disagree on most (largest |log p(seed A) - log p(seed B)|), from a scan with --token-losses.

    Tokens are named by example (the ICL example's row) and position (the predicted token's number
    in the context, from 2), with the token id. The table lists the --top outliers.

    \b
    Example:
        inductscan compare results/
        inductscan compare results/ --seed 21,49 --step 400000 --top 20 --format csv
    """
    from inductscan.seed_comparison import compare_seeds

    seeds = integers(seed, "--seed")
    if seeds is not None and len(seeds) != 2:
        raise click.BadParameter(f"expected two seeds, A,B, got {seed!r}", param_hint="--seed")
    comparison = compare_seeds(results, seeds=seeds, suite=suite, step=step, top=top)
    warn(comparison.warnings)
    if comparison.scatter is None:
        click.echo(NO_ROWS)
        return
    if fmt == "table":
        click.echo(comparison.header())
    emit(comparison.outliers, fmt)
