"""Figures and pages of a results table: ``inductscan plot`` (every kind in
:data:`inductscan.plot_kinds.PLOT_KINDS`), ``inductscan pattern`` (one head's attention) and
``inductscan report`` (one interactive HTML page)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from inductscan.cli.errors import EXIT_BAD_INPUT
from inductscan.cli.options import selection_options, timing_axis_options
from inductscan.cli.output import NO_ROWS, warn
from inductscan.metrics import DEFAULT_METRIC
from inductscan.plot_kinds import PLOT_KINDS


@click.command("plot")
@click.argument("results", type=click.Path(path_type=Path), nargs=-1, required=True)
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Image file: .png, .svg or .pdf.")
@click.option(
    "--kind",
    type=click.Choice(list(PLOT_KINDS)),
    default="timing",
    show_default=True,
    help="; ".join(f"{name}: {kind.description}" for name, kind in PLOT_KINDS.items()) + ".",
)
@selection_options
@click.option(
    "--metric",
    default=DEFAULT_METRIC,
    help=f"The score to draw: timing, heatmap, seeds, compare (default: {DEFAULT_METRIC}); effects: gain_effect "
    "(the default there) or icl_effect.",
)
@click.option("--threshold", type=float, help="Dashed line of the timing and gain plots (default: the metric's).")
@timing_axis_options
@click.option("--step", type=int, help="seed-scatter: the step (default: the last both seeds have).")
@click.option(
    "--top", type=int, help="seed-scatter: outliers listed (10); token-curves: tokens drawn (20); loss-pca: tokens (5)."
)
def plot_command(
    results: tuple[Path, ...],
    output: Path,
    kind,
    chosen: dict,
    metric,
    threshold,
    x_axis,
    total_tokens,
    step,
    top,
) -> None:
    """Draw a figure of a results table.

    \b
    Example:
        inductscan plot results/ -o timing.png
        inductscan plot results/ -o heads.svg --kind heatmap --seed 21
        inductscan plot results/ -o effects.png --kind effects --metric icl_effect   # scan --head-effects
        inductscan plot results/ -o seeds.pdf --kind seeds
        inductscan plot results/ -o gain.png --kind gain
        inductscan plot results/ -o icl.png --kind icl
        inductscan plot results/ -o loss-by-position.png --kind icl-curves --seed 21
        inductscan plot small/ medium/ pythia/ -o compare.png --kind compare --x fraction
        inductscan plot results/ -o scatter.png --kind seed-scatter --seed 21,49 --step 400000 --top 15
        inductscan plot results/ -o curves.png --kind token-curves --top 30
        inductscan plot results/ -o pca.png --kind loss-pca

    Several RESULTS folders are read as one table (a checkpoint held by two is refused), except by
    icl-curves and the per-token kinds (seed-scatter, token-curves, loss-pca), which read one.
    """
    from inductscan.plot_kinds import plot

    given = given_options(click.get_current_context(), metric=metric, x=x_axis)
    written = plot(
        kind, results, output, threshold=threshold, total_tokens=total_tokens, step=step, top=top, **given, **chosen
    )
    warn(written.warnings)
    if not written.drawn:
        click.echo(f"{NO_ROWS}; no plot written")
        return
    click.echo(f"{kind} plot written to {output}")


def given_options(context: click.Context, **values) -> dict:
    """Those of ``values`` (each an option's parameter name, or ``x`` for ``--x``) given on the
    command line, not left at their default: the library tells a default from a choice by None."""
    names = {"x": "x_axis"}
    return {
        name: value
        for name, value in values.items()
        if context.get_parameter_source(names.get(name, name)) is not click.core.ParameterSource.DEFAULT
    }


@click.command("pattern")
@click.argument("results", type=click.Path(path_type=Path))
@click.option("--step", type=int, required=True, help="The checkpoint: a step the folder has scored.")
@click.option("--layer", type=int, required=True, help="The head's layer (from 0).")
@click.option("--head", type=int, required=True, help="The head (from 0).")
@click.option("--suite", help="The suite, where the folder holds several with this step.")
@click.option("--run", help="The run (a Hub repo's name, or a local run's, e.g. output-3fa2b1c9).")
@click.option("--seed", type=int, help="The run's seed, where several runs have the step.")
@click.option(
    "--sequence",
    type=int,
    help="Draw this probe sequence (0 .. batch - 1) instead of the mean over the probe's sequences.",
)
@click.option("--device", default="cpu", show_default=True, help="torch device for the forward pass.")
@click.option(
    "--layer-by-layer",
    is_flag=True,
    help="Read each layer's weights from disk as the pass reaches it (a model too large for memory).",
)
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), default=Path("pattern.png"), show_default=True,
    help="Image file: .png, .svg or .pdf.",
)  # fmt: skip
def pattern_command(
    results: Path, step, layer, head, suite, run, seed, sequence, device, layer_by_layer, output: Path
) -> None:
    """Draw one head's attention pattern at one scored checkpoint: query x key, the cells the
    induction score weighs (key = query - probe length + 1) outlined.

    The checkpoint is run again, found as the scan found it (its local folder, or its Hub revision
    through the Hugging Face cache; its weights must hash as they did), on the folder's own probe
    (the stored token ids) in the recorded dtype. By default the pattern is the mean over the
    probe's sequences, whose marked cells average to the head's recorded induction score;
    --sequence draws one sequence.

    \b
    Example:
        inductscan pattern results/ --step 2000 --layer 1 --head 3 --seed 0 -o pattern.png
        inductscan pattern results/ --step 2000 --layer 1 --head 3 --seed 0 --sequence 4 -o one.png
    """
    from inductscan.pattern import save_head_pattern

    found = save_head_pattern(
        results,
        step,
        layer,
        head,
        output,
        suite=suite,
        run=run,
        seed=seed,
        sequence=sequence,
        device=device,
        layer_by_layer=layer_by_layer,
    )
    shown = f"probe sequence {sequence}" if sequence is not None else "mean of the probe's sequences"
    click.echo(
        f"pattern of layer {layer} head {head} at {found.checkpoint.describe()} ({shown}; induction "
        f"{found.induction:.4f}, scored {found.recorded_induction:.4f}) written to {output}"
    )


@click.command("report")
@click.argument("results", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="The HTML file to write.")
@selection_options
@click.option(
    "--patterns",
    type=int,
    default=0,
    show_default=True,
    help="Embed the attention patterns of the K top induction heads at each run's phase-change checkpoint "
    "(runs those checkpoints again: a fetch and a forward pass per run).",
)
def report_command(results: Path, output: Path, chosen: dict, patterns: int) -> None:
    """Write an interactive report of a results table: one self-contained HTML file.

    The page holds its scripts and data (it fetches nothing: open it from disk or send it as an
    attachment): what was scanned and what failed, the phase table (sortable), the best head's
    curve per run for each metric, a layer x head heatmap with a step slider (click a head for its
    curve), the per-head timing, with --icl-dataset the loss by token position and, with
    --token-losses, the seed-against-seed scatter, the tokens whose loss changes most and the loss PCA.
    With --patterns K, the attention patterns of the K top induction heads at each run's phase-change
    checkpoint (its last where there is none), those checkpoints run again (`inductscan pattern`).

    \b
    Example:
        inductscan report results/ -o report.html
        inductscan report results/ -o seeds-1-2.html --seed 1,2 --step-range 0:20000
        inductscan report results/ -o report.html --patterns 3   # with the top 3 heads' attention
    """
    from inductscan.report import write_report  # plotly: only a report needs it

    written = write_report(results, output, **chosen, patterns=patterns)
    if written.empty_folder:  # a folder with no results is bad input, as for every reader; the page says so too
        click.echo(f"error: {written.notice} (the page written to {written.path} says so)", err=True)
        sys.exit(EXIT_BAD_INPUT)
    note = f"; {written.notice}" if written.notice else ""
    click.echo(f"report written to {written.path} ({written.size / 1e6:.1f} MB){note}")
