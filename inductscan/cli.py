"""The ``inductscan`` command: a thin layer over the library. Every command's help has an example."""

from __future__ import annotations

import functools
import os
import re
import sys
import time
from pathlib import Path

import click

from inductscan.errors import (
    ConfigError,
    DiskFullError,
    HubUnreachableError,
    InductscanError,
    OutOfMemory,
    OutputError,
)
from inductscan.icl import IclConfig
from inductscan.metrics import METRICS, get_metric
from inductscan.plan import DTYPES, SCAN_DEFAULTS, RayOptions, ScanConfig
from inductscan.probe import read_token_ids
from inductscan.suites import toy_home

# The commands that read a table import pandas, pyarrow or DuckDB when they run: `inductscan
# query` answers in a fraction of a second, and pandas alone takes about half a second to import.

# Exit statuses: 0 done; 1 some checkpoints failed, or the scan stopped (Hub unreachable, out of
# memory, no space left); 2 bad input (a usage error, a bad value, an unreadable folder); 130
# interrupted (Ctrl-C).
EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130
STOPPED_SCAN = (HubUnreachableError, OutOfMemory, DiskFullError)


IMAGE_SUFFIXES = (".png", ".svg", ".pdf")
PLOTS = {  # kind: what it shows (the plot command imports matplotlib only when it runs)
    "timing": "best head's score against tokens, one line per seed, midpoint and onset-end marked",
    "heatmap": "every head (layer.head) against step, for one run",
    "effects": "scans with --head-effects: the top heads' exact gain_effect (or --metric icl_effect) against "
    "tokens, a line a head, for one run",
    "seeds": "midpoint tokens per seed with onset-end whiskers",
    "gain": "in-context gain (nats) against tokens, one line per seed",
    "icl": "ICL score (scans with --icl-dataset) against tokens, one line per seed, its fall timed",
    "icl-curves": "loss against token position for one run, a line per checkpoint coloured by step",
    "compare": "every run of the folders on one axis (--x tokens|fraction), onset-end whiskers, grouped by suite",
    "seed-scatter": "per-token log-probabilities of two seeds at one step (--step), correlation, --top outliers",
    "token-curves": "per-token loss against tokens for the --top tokens changing most, smooth or S-shaped",
    "loss-pca": "training's path through the first principal components of the per-token losses, per seed",
}
TOKEN_PLOTS = ("seed-scatter", "token-curves", "loss-pca")  # from the --token-losses side table


class Group(click.Group):
    """Turns any InductscanError into one line on stderr and its exit status, and Ctrl-C into 130."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except InductscanError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(EXIT_FAILED if isinstance(error, STOPPED_SCAN) else EXIT_BAD_INPUT)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)


@click.group(cls=Group)
@click.version_option(package_name="inductscan", prog_name="inductscan")
def main() -> None:
    """Find when induction heads form, across public checkpoint suites and their seeds.

    \b
    Example:
        inductscan toy-suite && inductscan scan toy --out results/
        inductscan query results/ --best
    """


def _integers(text: str | None, what: str) -> list[int] | None:
    if text is None or text.strip().lower() == "all":
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers or 'all', got {text!r}", param_hint=what) from None


def _range(text: str | None, what: str) -> tuple[int, int] | None:
    if text is None:
        return None
    low, sep, high = text.partition(":")
    try:
        bounds = (int(low) if low else 0, int(high) if high else 2**62)
    except ValueError:
        bounds = None
    if not sep or bounds is None or bounds[0] > bounds[1]:
        raise click.BadParameter(f"expected A:B with A <= B (either may be empty), got {text!r}", param_hint=what)
    return bounds


SIZE_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
}


def _token_range(text: str | None) -> tuple[int, int] | None:
    """'32:127' -> (32, 127): the ids 32 <= id < 127 (a one-line error otherwise)."""
    if text is None:
        return None
    low, sep, high = text.partition(":")
    try:
        bounds = (int(low), int(high))
    except ValueError:
        bounds = None
    if not sep or bounds is None or not 0 <= bounds[0] < bounds[1]:
        raise ConfigError(f"--probe-tokens must be LOW:HIGH, integers with 0 <= LOW < HIGH (e.g. 32:127), got {text!r}")
    return bounds


def _size(text: str, what: str) -> int:
    """'20GB' -> 20_000_000_000; '800MiB' -> 838_860_800; '1234' -> 1234."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).upper() if match else None
    if match is None or unit not in SIZE_UNITS:
        raise click.BadParameter(f"expected a size like 20GB, 800MiB or 1234 (bytes), got {text!r}", param_hint=what)
    return int(float(match.group(1)) * SIZE_UNITS[unit])


@main.command("suites")
@click.argument("name", required=False)
@click.option(
    "--results",
    type=click.Path(path_type=Path),
    help="A results folder whose kept branch listing shows a listed suite's runs and steps (the Hub is not asked).",
)
def suites_command(name: str | None, results: Path | None) -> None:
    """List the catalogued suites, or show one suite: its runs, how its branches are named, its
    token schedule, known gaps and where its numbers come from.

    A suite whose branch names carry more than the step (OLMo, SmolLM, the FineWeb ablations)
    has its branches listed from the Hub when a scan or status first plans it; the listing is
    kept in the results folder, and --results shows its runs and steps from there.

    \b
    Example:
        inductscan suites
        inductscan suites stanford-gpt2-small
        inductscan suites olmo-2-1b --results results/
    """
    from inductscan.suite_info import catalog_lines, suite_lines

    for line in catalog_lines() if name is None else suite_lines(name, results):
        click.echo(line)


def probe_options(command):
    """The probe overrides every scoring command shares."""
    options = [
        click.option("--probe-length", type=int, help="Random tokens per repeat (default: the suite's, 25)."),
        click.option("--probe-repeats", type=int, help="Repeats of the random tokens (default: the suite's, 4)."),
        click.option("--probe-batch", type=int, help="Sequences in the probe (default: the suite's, 10)."),
        click.option("--probe-seed", type=int, help="Seed of the probe's torch.Generator (default 0)."),
        click.option(
            "--probe-tokens",
            metavar="LOW:HIGH",
            help="Draw the probe's tokens from ids LOW <= id < HIGH only, special ids still left out (default: "
            "the suite's range, or every id of a folder's vocabulary): for byte-level or small-vocabulary "
            "models whose rare ids were never trained.",
        ),
        click.option(
            "--probe-tokens-file",
            type=click.Path(path_type=Path),
            help="Draw the probe's tokens from the ids listed in this file only (whitespace or one a line; "
            "special ids left out), e.g. the ids your own tokenizer's training text uses.",
        ),
    ]
    return functools.reduce(lambda wrapped, option: option(wrapped), reversed(options), command)


def plan_options(command):
    """Which checkpoints of a suite: the plan that scan and status share."""
    options = [
        click.option("--seeds", "--seed", "seeds", help="Comma-separated seeds, or 'all' (default)."),
        click.option("--steps", help="Comma-separated steps (default: every step of the suite)."),
        click.option("--step-range", help="Only steps A..B inclusive, as A:B."),
        click.option(
            "--every",
            type=int,
            help="Only every Nth of the chosen steps, and always the last (the late plateau needs it).",
        ),
        click.option(
            "--tokens-per-step", type=int, help="Tokens per step of a local folder (default 0, or its manifest's)."
        ),
        click.option(
            "--shard",
            metavar="I/N",
            help="Only the I-th of N interleaved parts of the plan (I from 0): N processes, e.g. a "
            "SLURM array with --shard $SLURM_ARRAY_TASK_ID/N, cover it exactly once.",
        ),
    ]
    return functools.reduce(lambda wrapped, option: option(wrapped), reversed(options), command)


def _plan_arguments(seeds, steps, step_range, every, tokens_per_step, shard) -> dict:
    """The plan options, parsed from their text, as :func:`inductscan.plan.plan_scan` takes them."""
    return {
        "seeds": _integers(seeds, "--seeds"),
        "steps": _integers(steps, "--steps"),
        "step_range": _range(step_range, "--step-range"),
        "every": every,
        "tokens_per_step": tokens_per_step,
        "shard": shard,
    }


ICL_DEFAULTS = IclConfig("")  # click shows the dataclasses' own defaults: written once, there
RAY_DEFAULTS = RayOptions()


@main.command("scan")
@click.argument("suite_or_folder")
@plan_options
@click.option(
    "--suite",
    "suite_name",
    metavar="NAME",
    help="For a folder: the suite its rows are recorded under (default: local). Name each of your "
    "models' folders (sizes, vocabularies) its own suite, and they share a results folder and compare "
    "as catalogued suites do.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("results"),
    show_default=True,
    help="Results folder (a re-run resumes).",
)
@probe_options
@click.option(
    "--prefetch",
    type=int,
    default=SCAN_DEFAULTS.prefetch,
    show_default=True,
    help="Checkpoints downloaded ahead while one is scored (0: one at a time).",
)
@click.option("--max-disk", help="Most bytes of downloaded weights on disk at once, e.g. 20GB or 800MiB.")
@click.option("--keep-weights", is_flag=True, help="Keep downloaded weights in the Hugging Face cache after scoring.")
@click.option(
    "--verify-cached",
    is_flag=True,
    help="Hash weight files already in the Hugging Face cache too. By default a cached blob is trusted by "
    "its name, which is its sha256, and its size; what a scan downloads is always hashed.",
)
@click.option(
    "--retries",
    type=int,
    default=SCAN_DEFAULTS.retries,
    show_default=True,
    help="Retries of a dropped connection, 5xx, timeout or refused file, with exponential backoff.",
)
@click.option(
    "--retry-backoff",
    type=float,
    default=SCAN_DEFAULTS.retry_backoff,
    show_default=True,
    help="Seconds before the first retry; doubled before each next one.",
)
@click.option(
    "--threads",
    type=int,
    help="torch CPU threads (default: one per core); on a few cores, one fewer leaves the downloads a core.",
)
@click.option("--device", default=SCAN_DEFAULTS.device, show_default=True, help="torch device, e.g. cpu or cuda:0.")
@click.option(
    "--dtype", type=click.Choice(DTYPES), default=SCAN_DEFAULTS.dtype, show_default=True, help="Compute dtype."
)
@click.option(
    "--layer-by-layer",
    is_flag=True,
    help="Read each layer's weights from disk only when the forward pass reaches it: peak memory is "
    "about one layer plus the embeddings (for models larger than memory), same scores.",
)
@click.option(
    "--icl-dataset",
    metavar="NAME_OR_PATH",
    help="Also score in-context learning on real text: a Hub dataset name or a local "
    ".parquet/.json/.jsonl/.txt/.csv file, loaded with datasets.load_dataset.",
)
@click.option("--icl-split", default=ICL_DEFAULTS.split, show_default=True, help="The dataset's split.")
@click.option(
    "--icl-column",
    help="Column of text (tokenised with the checkpoints' tokenizer) or of token ids "
    "(taken as is). Default: input_ids if present, else text.",
)
@click.option(
    "--icl-examples",
    type=int,
    default=ICL_DEFAULTS.examples,
    show_default=True,
    help="Examples (contexts) scored per checkpoint, chosen once per scan.",
)
@click.option(
    "--icl-context",
    type=int,
    default=ICL_DEFAULTS.context,
    show_default=True,
    help="Tokens per context; the score compares tokens 500/512 and 50/512 of it.",
)
@click.option(
    "--icl-seed",
    type=int,
    default=ICL_DEFAULTS.seed,
    show_default=True,
    help="Seed of the shuffle that chooses the examples (a torch.Generator).",
)
@click.option(
    "--token-losses",
    is_flag=True,
    help="With --icl-dataset: also store every ICL token's loss per checkpoint in OUT/token_losses/ "
    "(--icl-examples x (--icl-context - 1) float32: 16 x 511 x 4 B = 33 kB a checkpoint by default), "
    "for `inductscan compare` and the plots seed-scatter, token-curves and loss-pca.",
)
@click.option(
    "--head-effects",
    is_flag=True,
    help="Also measure which heads in-context learning depends on: each head's effect on the probe's "
    "in_context_gain (and, with --icl-dataset, on icl_score) when its output is mean-ablated, estimated for "
    "every head by attribution patching and exact for the --head-effects-top heads (docs/scores.md).",
)
@click.option(
    "--head-effects-top",
    type=int,
    default=SCAN_DEFAULTS.head_effects_top,
    show_default=True,
    help="With --head-effects: heads (of largest estimated effect) whose effect is computed exactly. The "
    "estimate can rank a previous-token head low whose exact effect is the largest (docs/scores.md): for a "
    "small model give at least its number of heads.",
)
@click.option(
    "--score-module",
    "score_modules",
    multiple=True,
    help="A Python module (a dotted name, or a .py file) that registers scores of your own with "
    "inductscan.register_score, computed beside inductscan's (docs/custom_scores.md); repeatable. Installed "
    "packages' entry points of the group inductscan.scores are loaded by every scan.",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: this process, downloads prefetched; ray: one Ray task per checkpoint.",
)
@click.option(
    "--ray-address",
    help="The Ray cluster: 'auto' (the one this machine is in) or HOST:PORT; default: start a local one.",
)
@click.option(
    "--cpus-per-task",
    type=float,
    default=RAY_DEFAULTS.cpus_per_task,
    show_default=True,
    help="Ray: CPUs each task reserves.",
)
@click.option(
    "--gpus-per-task",
    type=float,
    default=RAY_DEFAULTS.gpus_per_task,
    show_default=True,
    help="Ray: GPUs each task reserves (with --device cuda).",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def scan_command(
    suite_or_folder: str,
    seeds,
    steps,
    step_range,
    every,
    tokens_per_step,
    shard,
    suite_name,
    out: Path,
    max_disk,
    icl_dataset,
    icl_split,
    icl_column,
    icl_examples,
    icl_context,
    icl_seed,
    executor,
    ray_address,
    cpus_per_task,
    gpus_per_task,
    quiet,
    **settings,
) -> None:
    """Score every attention head of every checkpoint of a suite into a parquet table.

    SUITE_OR_FOLDER is a catalogued suite (see `inductscan suites`), `toy`, or a folder of
    Hugging Face checkpoints. Hub checkpoints download ahead of scoring (--prefetch), their
    weights are deleted once scored unless --keep-weights, and --max-disk bounds what is on
    disk at once. Exits 1 if any checkpoint failed (each is recorded with its reason) or the
    scan had to stop (the Hub cannot be reached, out of memory), 2 on bad input, 130 on Ctrl-C
    (what was scored is saved; a re-run resumes).

    \b
    Example:
        inductscan scan stanford-gpt2-small --seeds 21 --steps 0,10,100 --out results/
        inductscan scan stanford-gpt2-small --seeds all --prefetch 3 --max-disk 5GB
        inductscan scan pythia-160m-seeds --seeds 1,2 --step-range 1000:10000 --every 2
        inductscan scan toy --out toy-results/
        inductscan scan runs/small/ --suite mine-small --out mine/   # and runs/large/ --suite mine-large
        inductscan scan pythia-12b --steps 143000 --layer-by-layer --prefetch 0
        inductscan scan runs/bytes/ --probe-tokens 32:127   # a byte-level model: printable ASCII only
        inductscan scan runs/mine/ --probe-tokens-file common-ids.txt
        inductscan scan pythia-160m --icl-dataset NeelNanda/pile-10k --icl-examples 32
        inductscan scan pythia-160m-seeds --icl-dataset NeelNanda/pile-10k --token-losses
        inductscan scan toy --head-effects --out toy-effects/   # which heads the gain depends on
        inductscan scan toy --score-module my_scores.py --out toy-mine/   # scores of your own
        inductscan scan stanford-gpt2-small --shard 3/8 --out /shared/results   # one of 8 array tasks
        inductscan scan stanford-gpt2-small --executor ray --ray-address auto --out /shared/results

    With --icl-dataset each checkpoint also gets icl_score, the mean loss of predicting token 500
    of a 512-token context minus that of token 50 (Olsson et al.; both scale with --icl-context),
    and its loss per token position goes to OUT/icl_curves/ (see `inductscan plot --kind icl-curves`).
    """
    icl = None
    if icl_dataset is not None:
        icl = IclConfig(icl_dataset, icl_split, icl_column, icl_examples, icl_context, icl_seed)
    max_disk = None if max_disk is None else _size(max_disk, "--max-disk")
    ray = None
    if executor == "ray":
        ray = RayOptions(address=ray_address, cpus_per_task=cpus_per_task, gpus_per_task=gpus_per_task)
    elif ray_address is not None:
        raise ConfigError("--ray-address needs --executor ray")
    plan = _plan_arguments(seeds, steps, step_range, every, tokens_per_step, shard)
    settings["probe_tokens"] = _token_range(settings["probe_tokens"])
    if (path := settings.pop("probe_tokens_file")) is not None:
        settings["probe_token_ids"] = read_token_ids(path)
    from inductscan.api import scan  # torch and transformers: only a scan needs them
    from inductscan.runner import ScanInterrupted

    try:
        summary = scan(
            suite_or_folder,
            out,
            **plan,
            suite=suite_name,
            config=ScanConfig(**settings, max_disk=max_disk, icl=icl),
            ray=ray,
            progress=not quiet,
        )
    except ScanInterrupted as interrupted:
        done = interrupted.summary
        click.echo(
            f"interrupted after {done.seconds:.1f} s: {done.scored} checkpoint(s) scored and saved in {out} by "
            f"this run ({done.already_done} done before); a re-run of the same command resumes",
            err=True,
        )
        sys.exit(EXIT_INTERRUPTED)
    click.echo(summary.line(out))
    for warning in summary.warnings():
        click.echo(warning, err=True)
    if summary.failed:
        sys.exit(EXIT_FAILED)


@main.command("status")
@click.argument("results", type=click.Path(path_type=Path))
@click.option(
    "--suite",
    "suite_or_folder",
    help="The suite (or folder) that was scanned, to plan all its runs; default: the suites and runs "
    "the results folder holds.",
)
@plan_options
@click.option("--list", "list_steps", is_flag=True, help="Name every missing and failed step.")
def status_command(
    results: Path,
    suite_or_folder: str | None,
    seeds,
    steps,
    step_range,
    every,
    tokens_per_step,
    shard,
    list_steps: bool,
) -> None:
    """What of a planned scan is done, failed, skipped and missing in a results folder.

    Without --suite, the plan is every step of each run the folder holds (of a catalogued
    suite: all its steps; of a local run: the checkpoint folders it has now); the plan options
    narrow it. Steps listed as missing upstream in the package's known_checkpoint_hazards.csv
    are reported apart and not waited for. Exits 0 when every planned checkpoint is done (or
    known missing), 1 otherwise, so that a job script can wait on it.

    \b
    Example:
        inductscan status results/
        inductscan status results/ --suite stanford-gpt2-small
        inductscan status results/ --suite pythia-160m-seeds --seeds 1,2 --list
    """
    from inductscan.status_report import status

    report = status(
        results, suite_or_folder, **_plan_arguments(seeds, steps, step_range, every, tokens_per_step, shard)
    )
    for line in report.lines(list_steps=list_steps):
        click.echo(line)
    if suite_or_folder is None:
        click.echo(f"(the runs {results} holds; --suite plans every run of a suite, those not started too)")
    if not report.complete:
        sys.exit(EXIT_FAILED)


def _emit(frame, fmt: str) -> None:
    """A pandas frame in the chosen format."""
    if fmt == "csv":
        click.echo(frame.to_csv(index=False), nl=False)
    elif fmt == "json":
        click.echo(frame.to_json(orient="records", indent=1, double_precision=15))
    elif frame.empty:
        click.echo(NO_ROWS)
    else:
        click.echo(frame.to_string(index=False, float_format=lambda value: f"{value:.4f}"))


def _emit_rows(columns: list[str], rows: list[tuple], fmt: str) -> None:
    """Rows of plain values in the chosen format, as :func:`_emit` writes a frame, without pandas."""
    if fmt == "csv":
        import csv
        import io

        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
        click.echo(text.getvalue(), nl=False)
    elif fmt == "json":
        import json
        import math

        def plain(value):
            return None if isinstance(value, float) and not math.isfinite(value) else value

        records = [{name: plain(value) for name, value in zip(columns, row)} for row in rows]
        click.echo(json.dumps(records, indent=1, default=str))
    elif not rows:
        click.echo(NO_ROWS)
    else:
        cells = [columns] + [[_cell(value) for value in row] for row in rows]
        widths = [max(len(row[index]) for row in cells) for index in range(len(columns))]
        click.echo("\n".join(" ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in cells))


def _cell(value) -> str:
    if value is None:
        return "None"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def selection_options(command):
    """The row selection every command that reads a results table shares (pushed down to parquet)."""
    options = [
        click.option("--suite", help="Only this suite."),
        click.option("--run", help="Only this run (a Hub repo's name, or a local run's, e.g. output-3fa2b1c9)."),
        click.option("--seed", "--seeds", "seed", help="Comma-separated seeds."),
        click.option("--step-range", help="Only steps A..B inclusive, as A:B."),
    ]
    return functools.reduce(lambda wrapped, option: option(wrapped), reversed(options), command)


def _selection(suite: str | None, run: str | None, seed: str | None, step_range: str | None) -> dict:
    """The selection options, parsed, as :func:`inductscan.results.selection.selection` takes them."""
    return {
        "suite": suite,
        "run": run,
        "seed": _integers(seed, "--seed"),
        "step_range": _range(step_range, "--step-range"),
    }


NO_ROWS = "no rows match"
FALLING = [name for name, metric in METRICS.items() if metric.direction == "falls"]


@main.command("query")
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
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
def query_command(
    results: Path, suite, run, seed, step_range, layer, head, min_induction, top, best, columns, statement, fmt
) -> None:
    """Select rows of a results table.

    \b
    Example:
        inductscan query results/ --seed 21 --layer 5 --min-induction 0.4
        inductscan query results/ --best --format csv
        inductscan query results/ --top 10 --columns seed,step,layer,head,induction
        inductscan query results/ --sql "SELECT seed, max(induction) AS best FROM scores GROUP BY seed"
    """
    from inductscan.results import sql
    from inductscan.results.selection import selection
    from inductscan.vocabulary import DERIVED

    chosen = _selection(suite, run, seed, step_range) | {"layer": layer, "head": head}
    options = {"min_induction": min_induction, "top": top, "best": best or None, "columns": columns}
    if statement is not None:
        given = [name for name, value in (chosen | options).items() if value is not None]
        if given:
            raise ConfigError(f"--sql takes no other selection option (got --{given[0].replace('_', '-')})")
        answer = sql.run_sql(results, statement)
        _emit_rows(answer.columns, answer.rows, fmt)
        return
    wanted = None if columns is None else [name.strip() for name in columns.split(",") if name.strip()]
    if wanted is not None and any(name in DERIVED for name in wanted):  # derived by pandas, as load_results does
        from inductscan.results.queries import query

        _emit(query(results, **chosen, min_induction=min_induction, top=top, best=best, columns=wanted), fmt)
        return
    answer = sql.select(results, selection(**chosen), columns=wanted, min_induction=min_induction, best=best, top=top)
    _emit_rows(answer.columns, answer.fetchall(), fmt)


@main.command("compact")
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


def timing_axis_options(command):
    """The axis of a comparison of phase-change timings: tokens, or a fraction of training."""
    options = [
        click.option(
            "--x",
            "x_axis",
            type=click.Choice(["tokens", "fraction"]),
            default="tokens",
            show_default=True,
            help="Time in tokens seen, or as a fraction of each run's training (the suite's total tokens).",
        ),
        click.option(
            "--total-tokens",
            type=int,
            help="With --x fraction: the total training tokens of runs whose training is not known (local "
            "folders); the catalogued suites' come from the catalog, the toy suite's from its manifest.",
        ),
    ]
    return functools.reduce(lambda wrapped, option: option(wrapped), reversed(options), command)


@main.command("phases")
@click.argument("results", type=click.Path(path_type=Path), nargs=-1, required=True)
@selection_options
@click.option(
    "--metric",
    default="induction",
    show_default=True,
    help=f"What to time: {', '.join(METRICS)}, or a score of your own the folder has (docs/custom_scores.md). "
    "A score that falls as induction forms ({', '.join(FALLING)}) "
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
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
def phases_command(
    results: tuple[Path, ...],
    suite,
    run,
    seed,
    step_range,
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
    from inductscan import phases as phase_timing
    from inductscan.phase_view import readable
    from inductscan.results.queries import best_rows, load_selection
    from inductscan.timing_compare import add_fractions, load_several, run_folders

    _learn_scores(results)
    phase_timing.timed_metric(metric, per_head)
    _refuse_total_tokens_without_fractions(total_tokens, x_axis)
    chosen = _selection(suite, run, seed, step_range)
    folder = ["repo"] if x_axis == "fraction" else []  # where a toy run's manifest records its training
    if per_head:
        read = functools.partial(load_selection, columns=["tokens", metric, *folder], **chosen)
    else:  # a run's curve is its best head's: one row per checkpoint is all it needs
        read = functools.partial(best_rows, metric=metric, columns=folder, **chosen)
    frame = load_several(results, read)
    if frame.empty:
        click.echo(NO_ROWS)
        return
    timing = phase_timing.find_phase_changes(frame, metric, threshold, per_head)
    if x_axis == "fraction":
        timing = add_fractions(timing, total_tokens, folders=run_folders(frame))
    if changed_only:
        timing = timing[timing["phase_change"]]
    if fmt != "table":
        _emit(timing, fmt)
        return
    click.echo(_phases_header(frame, metric, per_head))
    shown = readable(timing) if len(timing) else timing
    if x_axis == "fraction" and len(timing):
        fractions = timing[[f"{level}_fraction" for level in phase_timing.LEVELS]].to_numpy(dtype=float)
        shown["fraction of training"] = [
            " / ".join("-" if value != value else f"{value:.3g}" for value in row)
            for row in fractions  # NaN: -
        ]
    _emit(shown, fmt)


def _learn_scores(results: tuple[Path, ...]) -> None:
    """The users' scores the folders record (docs/custom_scores.md), known before a --metric is checked."""
    from inductscan.results.declarations import learn_scores

    for path in results:
        learn_scores(path)


def _refuse_total_tokens_without_fractions(total_tokens: int | None, x_axis: str) -> None:
    if total_tokens is not None and x_axis != "fraction":
        raise ConfigError("--total-tokens applies only with --x fraction (the fraction of training it divides by)")


def _phases_header(frame, metric: str, per_head: bool) -> str:
    """What the phase table shows: the curve, the levels, and the axis (tokens seen, or the step
    where runs count no tokens)."""
    curve = (
        f"each head's {metric}"
        if per_head
        else (metric if get_metric(metric).level == "checkpoint" else f"the best head's {metric}")
    )
    change = "rise" if get_metric(metric).direction == "rises" else "fall"
    counted = frame.groupby(level=["suite", "run", "seed"])["tokens"].max() > 0
    if counted.all():
        axis = "tokens seen (interpolated in log tokens)"
    elif not counted.any():
        axis = "the training step (interpolated in log steps; these runs count no tokens)"
    else:
        axis = "tokens seen (interpolated in log tokens), or the training step where a run counts no tokens"
    return (
        f"{curve}: onset / midpoint / end = 10% / 50% / 90% of the {change} from the early to the late "
        f"plateau; {axis} and the checkpoints that bracket them"
    )


@main.command("plot")
@click.argument("results", type=click.Path(path_type=Path), nargs=-1, required=True)
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Image file: .png, .svg or .pdf.")
@click.option(
    "--kind",
    type=click.Choice(list(PLOTS)),
    default="timing",
    show_default=True,
    help="; ".join(f"{name}: {what}" for name, what in PLOTS.items()) + ".",
)
@selection_options
@click.option(
    "--metric",
    default="induction",
    show_default=True,
    help="The score to draw (timing, heatmap, seeds, compare; effects: gain_effect or icl_effect).",
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
    suite,
    run,
    seed,
    step_range,
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
    from inductscan import plots
    from inductscan.results.layout import unwritable_reason
    from inductscan.results.queries import best_rows, load_selection
    from inductscan.results.read import load_icl_curves
    from inductscan.results.selection import selection
    from inductscan.timing_compare import compare_timing, load_several

    if output.suffix.lower() not in IMAGE_SUFFIXES:
        raise ConfigError(f"cannot tell the image format of {output}: name it .png, .svg or .pdf")
    _refuse_options_of_other_kinds(click.get_current_context(), kind)
    _refuse_total_tokens_without_fractions(total_tokens, x_axis)
    _refuse_a_missing_folder(output)
    if kind == "effects" and click.get_current_context().get_parameter_source("metric").name == "DEFAULT":
        metric = "gain_effect"
    _learn_scores(results)
    get_metric(metric)  # an unknown name lists the scores
    if len(results) > 1 and (kind == "icl-curves" or kind in TOKEN_PLOTS):
        raise ConfigError(f"--kind {kind} draws one results folder, got {len(results)}")
    chosen = _selection(suite, run, seed, step_range)
    if kind == "icl-curves" or kind in TOKEN_PLOTS:  # one folder, a table of its own: its names checked here
        from inductscan.results import sql

        sql.require_held(results[0], selection(**chosen))
    if kind == "icl-curves":  # a table of its own, not the scores
        frame = load_icl_curves(results[0], **selection(**chosen))
    elif kind in TOKEN_PLOTS:
        frame = _token_losses(results[0], **selection(**chosen))
    elif kind in ("heatmap", "effects"):  # every head
        frame = load_several(results, lambda path: load_selection(path, columns=["tokens", metric], **chosen))
    else:  # one curve a run: the best head's, or a checkpoint's score
        best_of = {"gain": "in_context_gain", "icl": "icl_score"}.get(kind, metric)
        extra = {"icl": ["icl"], "compare": ["repo"]}.get(kind)  # compare: where a toy run records its training
        frame = load_several(results, functools.partial(best_rows, metric=best_of, columns=extra, **chosen))
    if frame.empty:
        click.echo(f"{NO_ROWS}; no plot written")
        return
    if kind == "icl-curves":
        figure = plots.plot_icl_curves(frame)
    elif kind in TOKEN_PLOTS:
        figure = _token_figure(kind, frame, chosen["seed"], step, top)
    elif kind == "compare":
        from inductscan.compare_plots import plot_compare

        timing = compare_timing(frame, metric, threshold, x=x_axis, total_tokens=total_tokens)
        figure = plot_compare(timing, x=x_axis)
    else:
        figure = _scores_figure(kind, frame, metric, threshold)
    try:
        figure.savefig(output, dpi=150)
    except OSError as error:
        reason = unwritable_reason(output, error)
        raise OutputError(f"cannot write the plot to {output}: {reason}; choose another -o") from error
    click.echo(f"{kind} plot written to {output}")


def _refuse_a_missing_folder(output: Path) -> None:
    """A plot goes into a folder that exists: one made silently for a mistyped path would hide
    the mistake. The refusal names the missing folder, or the file that stands in its way."""
    if output.parent.is_dir():
        return
    blocker = next((parent for parent in output.parents if parent.exists()), None)
    if blocker is not None and not blocker.is_dir():
        reason = f"{blocker} is a file, not a folder; choose another -o"
    else:
        reason = f"the folder {output.parent} does not exist; create it, or choose another -o"
    raise OutputError(f"cannot write the plot to {output}: {reason}")


PLOT_OPTIONS = {  # an option of `plot`, and the kinds it applies to (the selection options apply to all)
    "metric": ("timing", "heatmap", "seeds", "compare", "effects"),
    "threshold": ("timing", "gain"),
    "x_axis": ("compare",),
    "total_tokens": ("compare",),
    "step": ("seed-scatter",),
    "top": TOKEN_PLOTS,
}


def _refuse_options_of_other_kinds(context: click.Context, kind: str) -> None:
    """An option given for a kind of plot it does not change is refused, naming the kinds it
    changes: ignored silently, it would leave the user believing it was drawn."""
    for name, kinds in PLOT_OPTIONS.items():
        given = context.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)
        if given and kind not in kinds:
            flag = next(param.opts[-1] for param in context.command.params if param.name == name)
            raise ConfigError(f"{flag} does not apply to --kind {kind}; it applies to {', '.join(kinds)}")


def _scores_figure(kind: str, frame, metric: str, threshold: float | None):
    from inductscan import plots

    if kind == "icl":
        return plots.plot_icl_score(frame)
    if kind == "timing":
        return plots.plot_timing(frame, metric=metric, threshold=threshold)
    if kind == "gain":
        return plots.plot_in_context_gain(frame, threshold=threshold)
    if kind == "heatmap":
        return plots.plot_heatmap(frame, metric=metric)
    if kind == "effects":
        return plots.plot_effects(frame, metric=metric)
    from inductscan.phases import find_phase_changes

    return plots.plot_seed_comparison(find_phase_changes(frame, metric, threshold))


@main.command("pattern")
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
    from inductscan.pattern import head_pattern, plot_head_pattern
    from inductscan.results.layout import unwritable_reason

    if output.suffix.lower() not in IMAGE_SUFFIXES:
        raise ConfigError(f"cannot tell the image format of {output}: name it .png, .svg or .pdf")
    _refuse_a_missing_folder(output)
    ScanConfig(device=device)  # a device torch has: cpu, cuda[:N] or mps, else one line
    found = head_pattern(
        results,
        step,
        layer,
        head,
        suite=suite,
        run=run,
        seed=seed,
        sequence=sequence,
        device=device,
        layer_by_layer=layer_by_layer,
    )
    try:
        plot_head_pattern(found).savefig(output, dpi=150)
    except OSError as error:
        reason = unwritable_reason(output, error)
        raise OutputError(f"cannot write the plot to {output}: {reason}; choose another -o") from error
    shown = f"probe sequence {sequence}" if sequence is not None else "mean of the probe's sequences"
    click.echo(
        f"pattern of layer {layer} head {head} at {found.checkpoint.describe()} ({shown}; induction "
        f"{found.induction:.4f}, scored {found.recorded_induction:.4f}) written to {output}"
    )


@main.command("report")
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
def report_command(results: Path, output: Path, suite, run, seed, step_range, patterns: int) -> None:
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

    written = write_report(results, output, **_selection(suite, run, seed, step_range), patterns=patterns)
    if written.empty_folder:  # a folder with no results is bad input, as for every reader; the page says so too
        click.echo(f"error: {written.notice} (the page written to {written.path} says so)", err=True)
        sys.exit(EXIT_BAD_INPUT)
    note = f"; {written.notice}" if written.notice else ""
    click.echo(f"report written to {written.path} ({written.size / 1e6:.1f} MB){note}")


def _token_losses(results: Path, **filters):
    """The token losses of a results folder, with a warning where scored checkpoints have none."""
    from inductscan.results.token_losses import load_token_losses, missing

    losses = load_token_losses(results, **filters)
    lacking = missing(results)
    if len(lacking):
        click.echo(
            f"warning: {len(lacking)} scored checkpoint(s) of {results} have no token losses (scanned without "
            "--token-losses); a scan with --token-losses adds them",
            err=True,
        )
    return losses


def _token_figure(kind: str, losses, seeds: list[int] | None, step: int | None, top: int | None):
    from inductscan import compare_plots

    if kind == "seed-scatter":
        pair = tuple(seeds[:2]) if seeds else None
        return compare_plots.plot_seed_scatter(losses, seeds=pair, step=step, top=top or 10)
    if kind == "token-curves":
        return compare_plots.plot_token_curves(losses, seeds=seeds, top=top or 20)
    return compare_plots.plot_loss_pca(losses, seeds=seeds, top=top or 5)


@main.command("compare")
@click.argument("results", type=click.Path(path_type=Path))
@click.option("--seed", "--seeds", "seed", help="The two seeds to compare, as A,B (default: the first two).")
@click.option("--suite", help="Only this suite's runs.")
@click.option("--step", type=int, help="The step (default: the last both seeds have).")
@click.option("--top", type=int, default=10, show_default=True, help="Outlier tokens listed.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
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
    from inductscan.compare import require_seeds, seed_scatter
    from inductscan.results import sql
    from inductscan.results.selection import selection
    from inductscan.results.token_losses import icl_ids, seeds_held

    seeds = _integers(seed, "--seed")
    if seeds is not None and len(seeds) != 2:
        raise click.BadParameter(f"expected two seeds, A,B, got {seed!r}", param_hint="--seed")
    sql.require_held(results, selection(suite=suite))
    if seeds is not None:  # both, or either, absent: named alike
        require_seeds(seeds, seeds_held(results, suite))
    losses = _token_losses(results, **selection(suite=suite, seed=seeds))  # a missing step is named below
    if losses.empty:
        click.echo(NO_ROWS)
        return
    scatter = seed_scatter(losses, seeds=tuple(seeds) if seeds else None, step=step)
    outliers = scatter.outliers(top)
    ids = icl_ids(results)
    if ids is not None:
        where = list(zip(outliers["example"], outliers["position"]))
        outliers.insert(2, "token", ids["token"].reindex(where).to_numpy())
    first, second = scatter.labels
    outliers = outliers.rename(columns={"logprob_a": f"logprob {first}", "logprob_b": f"logprob {second}"})
    if fmt == "table":
        click.echo(
            f"{first} vs {second} at step {scatter.step}: Pearson r = {scatter.correlation:.4f} over "
            f"{len(scatter.points)} tokens; the {len(outliers)} furthest apart:"
        )
    _emit(outliers, fmt)


@main.command("toy-suite")
@click.argument("out", type=click.Path(path_type=Path), required=False)
@click.option("--seeds", type=int, default=3, show_default=True, help="Number of seeds (0 .. N-1).")
@click.option("--train-steps", type=int, help="Training steps per seed (default 3000).")
@click.option(
    "--jobs",
    type=int,
    default=min(3, os.cpu_count() or 1),
    show_default=True,
    help="Seeds trained at once, one process each.",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def toy_suite_command(out: Path | None, seeds: int, train_steps: int | None, jobs: int, quiet: bool) -> None:
    """Train the toy suite: small attention-only GPT-2s that form induction heads in minutes.

    Saves Hugging Face checkpoints at log-spaced steps (step 0 included), and every 25 steps
    over steps 1600-2600 where the heads form, under OUT/seedN/, default the toy suite's home.
    Seeds already trained with the same settings (schedule included) are kept; others are trained again.

    \b
    Example:
        inductscan toy-suite --seeds 3
        inductscan toy-suite toy/ --seeds 2 && inductscan scan toy/ --out toy-results/
    """
    from inductscan.toy import ToyConfig, build_toy_suite

    if seeds < 1 or jobs < 1:
        raise ConfigError(f"--seeds and --jobs must be >= 1, got {seeds} and {jobs}")
    config = ToyConfig() if train_steps is None else ToyConfig(train_steps=train_steps)
    out = out or toy_home()
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} is a file, not a folder: choose another OUT")
    try:
        trained = build_toy_suite(out, list(range(seeds)), config, jobs=jobs, progress=not quiet)
    except OSError as error:
        from inductscan.results.layout import unwritable_reason

        raise OutputError(f"cannot write the toy suite to {out}: {unwritable_reason(out, error)}") from error
    kept = seeds - len(trained)
    click.echo(f"toy suite in {out}: {len(trained)} seed(s) trained, {kept} already there")


if __name__ == "__main__":
    main()
