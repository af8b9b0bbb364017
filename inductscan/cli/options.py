"""The options several commands share, as decorators (sqlite-utils' option bundles), and the
parsers that turn their text into the library's Python values."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import click

from inductscan.errors import ConfigError
from inductscan.plan import PlanArguments


def bundle(*options):
    """A decorator that adds ``options`` to a command, in the order given."""

    def decorate(command):
        return functools.reduce(lambda wrapped, option: option(wrapped), reversed(options), command)

    return decorate


def integers(text: str | None, what: str) -> list[int] | None:
    """'1,2' -> [1, 2]; 'all' or nothing -> None (every one)."""
    if text is None or text.strip().lower() == "all":
        return None
    try:
        chosen = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        chosen = []
    if not chosen:
        raise click.BadParameter(f"expected comma-separated integers or 'all', got {text!r}", param_hint=what)
    return chosen


def step_range(text: str | None, what: str) -> tuple[int, int] | None:
    """'1000:5000' -> (1000, 5000), both included; either bound may be left out."""
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


def token_range(text: str | None) -> tuple[int, int] | None:
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


def size(text: str, what: str) -> int:
    """'20GB' -> 20_000_000_000; '800MiB' -> 838_860_800; '1234' -> 1234."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).upper() if match else None
    if match is None or unit not in SIZE_UNITS:
        raise click.BadParameter(f"expected a size like 20GB, 800MiB or 1234 (bytes), got {text!r}", param_hint=what)
    return int(float(match.group(1)) * SIZE_UNITS[unit])


probe_options = bundle(  # the probe overrides every scoring command shares
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
)


def plan_options(command):
    """Which checkpoints of a suite: the plan that scan and status share, handed to the command as
    one value, ``arguments`` (:class:`inductscan.plan.PlanArguments`)."""
    options = bundle(
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
    )

    @functools.wraps(command)
    def parsed(*args, seeds, steps, step_range, every, tokens_per_step, shard, **kwargs):
        return command(
            *args, arguments=plan_arguments(seeds, steps, step_range, every, tokens_per_step, shard), **kwargs
        )

    return options(parsed)


def plan_arguments(seeds, steps, range_text, every, tokens_per_step, shard) -> PlanArguments:
    """The plan options, parsed from their text."""
    return PlanArguments(
        seeds=integers(seeds, "--seeds"),
        steps=integers(steps, "--steps"),
        step_range=step_range(range_text, "--step-range"),
        every=every,
        tokens_per_step=tokens_per_step,
        shard=shard,
    )


def selection_options(command):
    """The row selection every command that reads a results table shares (pushed down to parquet),
    handed to the command as one dict, ``chosen`` (suite, run, seed, step_range)."""
    options = bundle(
        click.option("--suite", help="Only this suite."),
        click.option("--run", help="Only this run (a Hub repo's name, or a local run's, e.g. output-3fa2b1c9)."),
        click.option("--seed", "--seeds", "seed", help="Comma-separated seeds."),
        click.option("--step-range", help="Only steps A..B inclusive, as A:B."),
    )

    @functools.wraps(command)
    def parsed(*args, suite, run, seed, step_range, **kwargs):
        return command(*args, chosen=selection(suite, run, seed, step_range), **kwargs)

    return options(parsed)


def selection(suite: str | None, run: str | None, seed: str | None, range_text: str | None) -> dict:
    """The selection options, parsed, as :func:`inductscan.results.selection.selection` takes them."""
    return {
        "suite": suite,
        "run": run,
        "seed": integers(seed, "--seed"),
        "step_range": step_range(range_text, "--step-range"),
    }


timing_axis_options = bundle(  # the axis of a comparison of phase-change timings: tokens, or a fraction of training
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
)

format_option = click.option(
    "--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True
)
