"""Scanning: ``inductscan scan`` scores a suite's checkpoints, ``inductscan status`` says what of
a planned scan a results folder holds."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from inductscan.cli.errors import EXIT_FAILED, EXIT_INTERRUPTED
from inductscan.cli.options import plan_options, probe_options, size, token_range
from inductscan.errors import ConfigError
from inductscan.icl import IclConfig
from inductscan.plan import DTYPES, SCAN_DEFAULTS, PlanArguments, RayOptions, ScanConfig
from inductscan.probe import read_token_ids

ICL_DEFAULTS = IclConfig("")  # click shows the dataclasses' own defaults: written once, there
RAY_DEFAULTS = RayOptions()


@click.command("scan")
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
    help=f"With --head-effects: heads (of largest estimated effect) whose effect is computed exactly "
    f"(default: {SCAN_DEFAULTS.head_effects_top}). The "
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
    arguments: PlanArguments,
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
    max_disk = None if max_disk is None else size(max_disk, "--max-disk")
    ray = None
    if executor == "ray":
        ray = RayOptions(address=ray_address, cpus_per_task=cpus_per_task, gpus_per_task=gpus_per_task)
    elif ray_address is not None:
        raise ConfigError("--ray-address needs --executor ray")
    if settings["head_effects_top"] is None:
        del settings["head_effects_top"]  # the library's default
    elif not settings["head_effects"]:
        raise ConfigError("--head-effects-top needs --head-effects")
    settings["probe_tokens"] = token_range(settings["probe_tokens"])
    if (path := settings.pop("probe_tokens_file")) is not None:
        settings["probe_token_ids"] = read_token_ids(path)
    from inductscan.api import scan  # torch and transformers: only a scan needs them
    from inductscan.runner import ScanInterrupted

    try:
        summary = scan(
            suite_or_folder,
            out,
            arguments=arguments,
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


@click.command("status")
@click.argument("results", type=click.Path(path_type=Path))
@click.option(
    "--suite",
    "suite_or_folder",
    help="The suite (or folder) that was scanned, to plan all its runs; default: the suites and runs "
    "the results folder holds.",
)
@plan_options
@click.option("--list", "list_steps", is_flag=True, help="Name every missing and failed step.")
def status_command(results: Path, suite_or_folder: str | None, arguments: PlanArguments, list_steps: bool) -> None:
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

    report = status(results, suite_or_folder, arguments=arguments)
    for line in report.lines(list_steps=list_steps):
        click.echo(line)
    if suite_or_folder is None:
        click.echo(f"(the runs {results} holds; --suite plans every run of a suite, those not started too)")
    if not report.complete:
        sys.exit(EXIT_FAILED)
