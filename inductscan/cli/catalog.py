"""The suites: ``inductscan suites`` lists the catalog, ``inductscan toy-suite`` trains the toy one."""

from __future__ import annotations

import os
from pathlib import Path

import click

from inductscan.errors import ConfigError, OutputError
from inductscan.suites import toy_home


@click.command("suites")
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

    if name is None and results is not None:
        raise ConfigError("--results shows one listed suite's runs and steps: name the suite (suites NAME --results)")
    for line in catalog_lines() if name is None else suite_lines(name, results):
        click.echo(line)


@click.command("toy-suite")
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
