"""The catalog of checkpoint suites: data, looked up by name.

A suite is a set of runs (one per seed) that share a step schedule, a revision naming scheme and
a probe token range (:mod:`inductscan.entries`). Hub suites name Hugging Face repos: Stanford
CRFM's and Pythia's (here), and the newer suites of :mod:`inductscan.recent_suites`; a local suite
is any folder of Hugging Face checkpoint folders (``checkpoint-N/``, ``stepN/``, ``step_N/``), one
run or one sub-folder per run. The toy suite is a local suite whose folder carries a manifest (see
:mod:`inductscan.toy`).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from inductscan.entries import Run, Suite
from inductscan.errors import ConfigError, UnknownRunError, UnknownSuiteError, parameter
from inductscan.probe import ProbeConfig
from inductscan.recent_suites import recent_suites

__all__ = ["CATALOG", "Run", "Suite", "get_suite", "local_suite", "suite_names", "total_tokens"]

MANIFEST_NAME = "inductscan-suite.json"
TRAINED_MARK = "training.json"  # a toy seed's folder holds it once its training has finished
STEP_FOLDER = re.compile(r"^(?:checkpoint-|step_?)(\d+)$")
STEP_LIKE = re.compile(r"^(?:checkpoint|step)", re.IGNORECASE)  # a name that looks like a step folder's
RUN_SEED = re.compile(r"(?:seed[-_]?|-x)(\d+)$")


def stanford_steps() -> tuple[int, ...]:
    """The 609 checkpoint steps of every Stanford CRFM Mistral GPT-2 run."""
    schedule = [range(0, 100, 10), range(100, 2000, 50), range(2000, 20000, 100), range(20000, 400001, 1000)]
    return tuple(step for part in schedule for step in part)


def pythia_steps() -> tuple[int, ...]:
    """The 154 checkpoint steps of every Pythia run: 0, powers of two to 512, then every 1000."""
    return (0, *(2**i for i in range(10)), *range(1000, 143001, 1000))


STANFORD_RUNS = {
    "small": ("alias", "battlestar", "caprica", "darkmatter", "expanse"),
    "medium": ("arwen", "beren", "celebrimbor", "durin", "eowyn"),
}
STANFORD_SEEDS = (21, 49, 81, 343, 777)
# Whole training runs: Stanford CRFM Mistral GPT-2, 400,000 steps of 512 x 1024 tokens (~210 B);
# Pythia, 143,000 steps of 1024 x 2048 tokens (~300 B). Each suite's last checkpoint is its last step.
STANFORD_TOTAL_STEPS, PYTHIA_TOTAL_STEPS = 400_000, 143_000
PYTHIA_SIZES = ("14m", "31m", "70m", "160m", "410m", "1b", "1.4b", "2.8b", "6.9b", "12b")
PYTHIA_SEED_SIZES = ("14m", "31m", "70m", "160m", "410m")
PYTHIA_PLAIN_SEED = 1234
GPT2_BOS = 50256
# Olsson et al. drew probe tokens from a middle range, avoiding the most frequent and rarest ids.
COMMON_TOKEN_RANGE = (1000, 20000)


def _stanford(size: str) -> Suite:
    runs = tuple(
        Run(f"{name}-gpt2-{size}-x{seed}", seed, f"stanford-crfm/{name}-gpt2-{size}-x{seed}")
        for name, seed in zip(STANFORD_RUNS[size], STANFORD_SEEDS)
    )
    return Suite(
        name=f"stanford-gpt2-{size}",
        description=f"Stanford CRFM Mistral GPT-2 {size}, 5 seeds (OpenWebText)",
        runs=runs,
        steps=stanford_steps(),
        tokens_per_step=512 * 1024,
        total_tokens=STANFORD_TOTAL_STEPS * 512 * 1024,
        revision="checkpoint-{step}",
        token_range=COMMON_TOKEN_RANGE,
        bos_token_id=GPT2_BOS,
        token_source="512 sequences x 1024 tokens",
        model_type="gpt2",
        family="Stanford CRFM",
        checkpoints=len(stanford_steps()),
    )


def _pythia(name: str, description: str, runs: tuple[Run, ...], family: str = "Pythia") -> Suite:
    # Pythia was trained without a BOS token, so the probe has none.
    return Suite(
        name=name,
        description=description,
        runs=runs,
        steps=pythia_steps(),
        tokens_per_step=1024 * 2048,
        total_tokens=PYTHIA_TOTAL_STEPS * 1024 * 2048,
        revision="step{step}",
        token_range=COMMON_TOKEN_RANGE,
        bos_token_id=None,
        token_source="1024 sequences x 2048 tokens",
        model_type="gpt_neox",
        family=family,
        checkpoints=len(pythia_steps()),
    )


def _catalog() -> dict[str, Suite]:
    suites = [_stanford("small"), _stanford("medium")]
    for size in PYTHIA_SIZES:
        for suffix, what in (("", "the Pile"), ("-deduped", "the deduplicated Pile")):
            repo = f"EleutherAI/pythia-{size}{suffix}"
            run = Run(f"pythia-{size}{suffix}", PYTHIA_PLAIN_SEED, repo)
            suites.append(_pythia(f"pythia-{size}{suffix}", f"Pythia {size} on {what}", (run,)))
    for size in PYTHIA_SEED_SIZES:
        runs = (Run(f"pythia-{size}", PYTHIA_PLAIN_SEED, f"EleutherAI/pythia-{size}"),) + tuple(
            Run(f"pythia-{size}-seed{seed}", seed, f"EleutherAI/pythia-{size}-seed{seed}") for seed in range(1, 10)
        )
        suites.append(_pythia(f"pythia-{size}-seeds", f"Pythia {size}, 10 seeds (seed 1234 is the plain run)", runs))
    suites += [_polypythias(kind) for kind in POLYPYTHIAS]
    suites += recent_suites()
    return {suite.name: suite for suite in suites}


# PolyPythias (van der Wal et al. 2025) also decouple Pythia 160M's two sources of randomness:
# EleutherAI/pythia-160m-data-seedN and -weight-seedN, Pythia's schedule and tokenizer. The Hub
# confirmed data-seed2, data-seed3 and weight-seed1 to the sources read; seeds 1-3 of each are catalogued.
POLYPYTHIAS = {
    "data": "the data order varies, the initialisation is fixed",
    "weight": "the initialisation varies, the data order is fixed",
}


def _polypythias(kind: str) -> Suite:
    runs = tuple(
        Run(f"pythia-160m-{kind}-seed{seed}", seed, f"EleutherAI/pythia-160m-{kind}-seed{seed}") for seed in (1, 2, 3)
    )
    description = f"PolyPythias: Pythia 160M, 3 {kind} seeds ({POLYPYTHIAS[kind]})"
    return _pythia(f"pythia-160m-{kind}-seeds", description, runs, family="PolyPythias")


CATALOG: dict[str, Suite] = _catalog()
TOY_NAME = "toy"
LOCAL_NAME = "local"  # a local folder's suite, unless named (scan FOLDER --suite NAME)
# 30 tokens x 2 + BOS = 61 of the toy's 64 positions; with 4 repeats a toy head's attention spreads
# over the earlier copies, and `induction` counts only the most recent.
TOY_PROBE = ProbeConfig(length=30, repeats=2, batch=10, seed=0)


def toy_home() -> Path:
    """Where ``inductscan toy-suite`` builds the toy suite unless told otherwise."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "inductscan" / "toy-suite"
    return Path(os.environ.get("INDUCTSCAN_TOY_DIR", default))


def total_tokens(suite: str) -> int | None:
    """The catalogued suite's total training tokens per run; None for a suite not catalogued."""
    return CATALOG[suite].total_tokens if suite in CATALOG else None


def suite_names() -> list[str]:
    return [*CATALOG, TOY_NAME]


def get_suite(name_or_folder: str, *, tokens_per_step: int | None = None, name: str | None = None) -> Suite:
    """The catalogued suite of that name, else the local suite in that folder (named ``name``,
    if given: see :func:`local_suite`)."""
    if name is not None and (name_or_folder in CATALOG or name_or_folder == TOY_NAME):
        raise ConfigError(f"{parameter('suite')} names a local folder's suite; {name_or_folder} is a suite of its own")
    if name_or_folder in CATALOG:
        return CATALOG[name_or_folder]
    if name_or_folder == TOY_NAME:
        folder = toy_home()
        if not (folder / MANIFEST_NAME).is_file():
            here = " (for the folder ./toy, name it ./toy)" if Path(TOY_NAME).is_dir() else ""
            raise UnknownSuiteError(
                f"the toy suite is not built in {folder}; run `inductscan toy-suite {folder}` first{here}"
            )
        return local_suite(folder)
    path = Path(name_or_folder)
    if path.is_dir():
        return local_suite(path, tokens_per_step=tokens_per_step, name=name)
    if path.exists():
        raise UnknownSuiteError(
            f"{name_or_folder} is a file: a local suite is a folder of checkpoint folders (one per step)"
        )
    if os.sep in name_or_folder or name_or_folder.startswith("."):
        raise UnknownSuiteError(f"no such folder: {name_or_folder}")
    asked = name_or_folder.lower()  # the catalog's names are lower-case: OLMo-2-1B is olmo-2-1b
    close = difflib.get_close_matches(asked, suite_names(), n=1) or [
        name for name in suite_names() if name.startswith(asked)
    ]
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise UnknownSuiteError(
        f"unknown suite {name_or_folder!r} (and no folder of that name); {hint}valid suites: {', '.join(suite_names())}"
    )


@dataclass(frozen=True)
class StepFolders:
    """A folder's checkpoint folders by step, and the folders that look like one but name no step
    (``checkpoint-final``, ``checkpoint-abc``, ``step-10``): those are not scanned, and said so."""

    steps: dict[int, str]
    ignored: tuple[str, ...]


def step_folders(folder: Path) -> StepFolders:
    """The checkpoint folders of ``folder`` (``checkpoint-N/``, ``stepN/``, ``step_N/``).

    A step held by two of them (``checkpoint-10/`` and ``step_00010/``) is refused: which one's
    weights are step 10 would be a guess.
    """
    named: dict[int, list[str]] = {}
    ignored = []
    for child in sorted(Path(folder).iterdir()):
        if not child.is_dir():
            continue
        match = STEP_FOLDER.match(child.name)
        if match:
            named.setdefault(int(match.group(1)), []).append(child.name)
        elif STEP_LIKE.match(child.name):
            ignored.append(str(child))
    clashes = {step: names for step, names in sorted(named.items()) if len(names) > 1}
    if clashes:
        step, names = next(iter(clashes.items()))
        more = f" (and {len(clashes) - 1} more step(s) alike)" if len(clashes) > 1 else ""
        raise ConfigError(
            f"step {step} of {folder} is held by {len(names)} folders: {', '.join(names)}{more}; "
            "keep one of them there (move the others out)"
        )
    return StepFolders({step: names[0] for step, names in named.items()}, tuple(ignored))


def local_suite(folder: Path, *, tokens_per_step: int | None = None, name: str | None = None) -> Suite:
    """Discover the runs and steps of a folder of Hugging Face checkpoints.

    The folder holds checkpoint folders (one run, seed 0 unless the folder name ends in
    ``seedN`` or ``-xN``) or run folders that hold them; a run folder without such a number takes
    its place among the run folders, in alphabetical order, as its seed (with a note: a folder added
    later renumbers it). Each run is named by
    :func:`local_run_name`. A manifest written by
    ``inductscan toy-suite`` gives the suite's name, tokens per step and probe.

    The suite is ``local`` unless ``name`` (``scan FOLDER --suite NAME``) names it: a user's
    models of different sizes (other vocabularies, so other probes) then share a results folder
    and compare as catalogued suites do, each under its own name.
    """
    folder = folder.resolve()
    manifest = _read_manifest(folder)
    if name is not None:
        check_local_name(name, manifest.get("suite"), folder)
    top = step_folders(folder)
    ignored = list(top.ignored)
    if top.steps:
        candidates = {folder: top}
    else:
        found = {child: step_folders(child) for child in sorted(folder.iterdir()) if child.is_dir()}
        candidates = {child: steps for child, steps in found.items() if steps.steps}
        ignored += [path for child in candidates.values() for path in child.ignored]
    if not candidates:
        raise UnknownSuiteError(
            f"{folder} holds no checkpoint folders (checkpoint-N/, stepN/ or step_N/), "
            "neither directly nor one level down" + (f"; ignored {', '.join(ignored)}" if ignored else "")
        )
    if manifest.get("suite") == TOY_NAME:
        unfinished = [run.name for run in candidates if not (run / TRAINED_MARK).is_file()]
        if unfinished:
            raise UnknownSuiteError(
                f"toy seed folder(s) {', '.join(unfinished)} of {folder} did not finish training (interrupted?); "
                f"run `inductscan toy-suite {folder}` again"
            )
    runs, by_place = [], []
    for index, (run_folder, steps) in enumerate(candidates.items()):
        seed_match = RUN_SEED.search(run_folder.name)
        seed = int(seed_match.group(1)) if seed_match else (0 if len(candidates) == 1 else index)
        if not seed_match and len(candidates) > 1:
            by_place.append(f"{run_folder.name} seed {seed}")
        runs.append(Run(local_run_name(run_folder), seed, str(run_folder), tuple(sorted(steps.steps))))
    if len({run.seed for run in runs}) != len(runs):
        seeds = ", ".join(f"{Path(run.repo).name} seed {run.seed}" for run in runs)
        raise UnknownSuiteError(
            f"two run folders of {folder} have the same seed ({seeds}; a folder without seedN or -xN in its "
            "name takes its place among the run folders): name each seedN, with its own N"
        )
    notes = []
    if by_place:
        notes.append(
            f"run folders without seedN or -xN in their names are numbered by their place among {folder}'s run "
            f"folders ({', '.join(by_place)}): a run folder added there later renumbers them; name them seedN to "
            "fix their seeds"
        )
    all_steps = tuple(sorted({step for run in runs for step in run.steps}))
    probe = ProbeConfig(**manifest["probe"]) if "probe" in manifest else ProbeConfig()
    return Suite(
        name=name or manifest.get("suite", LOCAL_NAME),
        description=manifest.get("description", f"local checkpoints in {folder}"),
        runs=tuple(runs),
        steps=all_steps,
        tokens_per_step=tokens_per_step if tokens_per_step is not None else manifest.get("tokens_per_step", 0),
        source="local",
        probe=probe,
        notes=tuple(notes),
        ignored=tuple(ignored),
    )


def check_local_name(name: str, manifest_name: str | None, folder: Path) -> None:
    """Refuse a suite name for a local folder that would pass for another suite or cannot be a
    folder's name (the results are stored under it)."""
    if manifest_name is not None and name != manifest_name:
        raise ConfigError(
            f"{folder} is the suite {manifest_name} ({MANIFEST_NAME} says so): scan it without {parameter('suite')}"
        )
    if name in CATALOG or name == TOY_NAME:
        raise ConfigError(
            f"{parameter('suite')} {name} is a suite inductscan knows: name a local folder's suite otherwise"
        )
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", name):
        raise ConfigError(
            f"{parameter('suite')} {name!r}: use letters, digits and . _ + - (it names a folder of the results)"
        )


def local_run_name(folder: Path) -> str:
    """A local run's name: its folder's name and a hash of its resolved path, e.g. ``output-3fa2b1c9``.

    Where a run comes from is its identity: two runs in folders of the same name (Trainer folders
    are usually all called ``output/``) never share rows or pass for each other's finished
    checkpoints, and a re-run of the same folder resumes.
    """
    resolved = str(Path(folder).resolve())
    return f"{Path(resolved).name}-{hashlib.sha256(resolved.encode()).hexdigest()[:8]}"


def _read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST_NAME
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise UnknownSuiteError(f"cannot read the suite manifest {path}: {error}") from error


def recorded_total_tokens(run_folder: str | os.PathLike) -> int | None:
    """A local run's whole training in tokens, where its suite's manifest records it (the toy
    suite's: ``inductscan toy-suite`` writes its training steps and tokens per step), else None.
    The manifest is looked for in the run's folder and in the folder above (a seed's folder)."""
    for folder in (Path(run_folder), Path(run_folder).parent):
        if (folder / MANIFEST_NAME).is_file():
            manifest = _read_manifest(folder)
            steps, per_step = manifest.get("training", {}).get("train_steps"), manifest.get("tokens_per_step")
            return int(steps) * int(per_step) if steps and per_step else None
    return None


def local_step_folder(run: Run, step: int) -> Path:
    """The folder of one step of a local run (``checkpoint-10``, ``step10``, ``step_00010``)."""
    folder = Path(run.repo)
    name = step_folders(folder).steps.get(step) if folder.is_dir() else None
    if name is None:
        raise UnknownRunError(f"run {run.name} has no step {step} in {folder}")
    return folder / name
