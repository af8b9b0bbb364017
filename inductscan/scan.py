"""Plan a scan (which runs and steps) and run it: fetch, score and store each checkpoint.

A checkpoint that cannot be scored is recorded with its reason and the scan goes on; one already
in the results folder is skipped, so a killed scan resumes where it stopped.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from inductscan import icl, store
from inductscan.architecture import Architecture, read_architecture
from inductscan.checkpoints import CheckpointFiles, CheckpointRef, fetch_config
from inductscan.errors import (
    CheckpointError,
    CheckpointUnavailableError,
    ConfigError,
    CorruptCheckpointError,
    UnknownRunError,
    UnsupportedArchitectureError,
)
from inductscan.hub import Retry
from inductscan.icl import IclConfig
from inductscan.measure import Scorer
from inductscan.model import read_state_dict
from inductscan.pipeline import Fetched, Prefetcher
from inductscan.probe import Probe, ProbeConfig, TokenSpec, make_probe
from inductscan.suites import Suite, local_step_folder

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class ScanConfig:
    """How to score: probe overrides (None keeps the suite's), compute dtype and device; and how
    to fetch: checkpoints downloaded ahead, the disk budget in bytes, retries of transient faults."""

    probe_length: int | None = None
    probe_repeats: int | None = None
    probe_batch: int | None = None
    probe_seed: int | None = None
    dtype: str = "float32"
    device: str = "cpu"
    prefetch: int = 2
    max_disk: int | None = None
    keep_weights: bool = False
    verify_cached: bool = False  # hash weight files already in the cache too (else trusted by their blob's sha256 name)
    retries: int = 3
    retry_backoff: float = 2.0
    threads: int | None = None  # torch's intra-op threads; None leaves torch's default (one per core)
    layer_by_layer: bool = False  # stream each layer's weights from disk: peak memory ~ one layer + embeddings
    icl: IclConfig | None = None  # the in-context learning score on real text (inductscan.icl)

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {self.threads}")
        if self.prefetch < 0:
            raise ConfigError(f"--prefetch must be >= 0, got {self.prefetch}")
        if self.max_disk is not None and self.max_disk <= 0:
            raise ConfigError(f"--max-disk must be > 0 bytes, got {self.max_disk}")
        if self.max_disk is not None and self.keep_weights:
            raise ConfigError("--max-disk cannot bound the disk when --keep-weights keeps every checkpoint; choose one")
        if self.retries < 0 or self.retry_backoff < 0:
            raise ConfigError(f"--retries and --retry-backoff must be >= 0, got {self.retries}, {self.retry_backoff}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        try:
            device = torch.device(self.device)
        except RuntimeError as error:
            raise ConfigError(f"unknown device {self.device!r}: {error}") from error
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {self.device!r} asked for, but this torch sees no CUDA GPU; use --device cpu")
        self.probe_for(ProbeConfig())  # validates the overrides

    @property
    def retry(self) -> Retry:
        return Retry(attempts=self.retries + 1, backoff=self.retry_backoff)

    def probe_for(self, default: ProbeConfig) -> ProbeConfig:
        return default.replace(
            length=self.probe_length, repeats=self.probe_repeats, batch=self.probe_batch, seed=self.probe_seed
        )


def plan(
    suite: Suite,
    *,
    seeds: list[int] | None = None,
    steps: list[int] | None = None,
    step_range: tuple[int, int] | None = None,
    every: int | None = None,
) -> list[CheckpointRef]:
    """The checkpoints to scan, run by run in step order."""
    if every is not None and every < 1:
        raise ConfigError(f"--every must be >= 1, got {every}")
    runs = [suite.run(seed) for seed in seeds] if seeds else list(suite.runs)
    planned = []
    for run in runs:
        available = suite.steps_of(run)
        chosen = list(available)
        if steps is not None:
            for step in steps:
                if step not in available:
                    raise UnknownRunError(f"{run.name} has no step {step}; {_nearby(available, step)}")
            chosen = sorted(set(steps))
        if step_range is not None:
            low, high = step_range
            chosen = [step for step in chosen if low <= step <= high]
        if every is not None:
            chosen = chosen[::every]
        planned.extend(CheckpointRef(suite, run, step) for step in chosen)
    return planned


@dataclass(frozen=True)
class Shard:
    """The ``index``-th of ``count`` interleaved parts of a plan: checkpoints index, index + count, ...

    Interleaved rather than cut into blocks, so that every part gets early and late steps of every
    run alike (late Pythia steps are no slower, but a block cut would give one task all of a run).
    The same plan split the same way on every machine: N processes cover it exactly once.
    """

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        index, sep, count = text.partition("/")
        try:
            shard = cls(int(index), int(count))
        except ValueError:
            shard = None
        if not sep or shard is None or not 0 <= shard.index < shard.count:
            raise ConfigError(f"--shard must be I/N with 0 <= I < N (e.g. 0/4 ... 3/4), got {text!r}")
        return shard

    def select(self, refs: list[CheckpointRef]) -> list[CheckpointRef]:
        return refs[self.index :: self.count]


def _nearby(available: tuple[int, ...], step: int) -> str:
    index = bisect.bisect_left(available, step)
    near = available[max(0, index - 2) : index + 2]
    return f"nearest steps: {', '.join(map(str, near))}" if near else "the run has no steps"


def suite_probe(suite: Suite, arch: Architecture, config: ScanConfig) -> Probe:
    """The suite's probe: its catalogued token range and BOS, else every non-special id."""
    if suite.token_range is not None:
        low, high = suite.token_range
        if high > arch.vocab_size:
            raise ConfigError(f"the probe's token range [{low}, {high}) exceeds the vocabulary ({arch.vocab_size})")
        tokens = TokenSpec(low, high, bos=suite.bos_token_id)
    else:
        tokens = TokenSpec.all_but_special(arch.vocab_size, set(arch.special_tokens), arch.bos_token_id)
    probe = make_probe(config.probe_for(suite.probe), tokens)
    probe.check_fits(arch.n_ctx)
    return probe


@dataclass
class ScanSummary:
    planned: int = 0
    scored: int = 0
    already_done: int = 0
    failed: list[tuple[CheckpointRef, str]] = field(default_factory=list)
    seconds: float = 0.0
    peak_disk: int = 0  # bytes reserved at once for downloads
    same_weights: list[store.SameWeights] = field(default_factory=list)

    def record(self, ref: CheckpointRef, outcome: tuple[str, str], bar: tqdm) -> None:
        """Count one checkpoint's outcome (from :func:`score_fetched`) and advance the bar."""
        kind, reason = outcome
        if kind == "scored":
            self.scored += 1
        else:
            self.failed.append((ref, reason))
            bar.write(f"{kind}: {ref.describe()}: {reason}")
        bar.update()

    def line(self, out: Path) -> str:
        text = (
            f"{self.planned} checkpoints in {self.seconds:.1f} s: {self.scored} scored, "
            f"{self.already_done} already done, {len(self.failed)} failed or skipped; results in {out}"
        )
        if self.failed:
            text += f" (reasons in {Path(out) / 'failures'})"
        if self.peak_disk:
            text += f"; at most {self.peak_disk / 1e6:,.0f} MB of downloads on disk at once"
        return text

    def warnings(self) -> list[str]:
        """One line per group of steps of a run that serve identical weights."""
        return [
            f"warning: {group.run} steps {', '.join(map(str, group.steps))} serve identical weights "
            f"(sha256 {group.sha256[:12]}...): the column same_weights_as marks them"
            for group in self.same_weights
        ]


def identity(ref: CheckpointRef, revision: str) -> dict:
    return {
        "suite": ref.suite.name, "repo": ref.run.repo, "run": ref.run.name, "revision": revision,
        "seed": ref.run.seed, "step": ref.step, "tokens": ref.tokens,
    }  # fmt: skip


def prepare_probes(refs: list[CheckpointRef], config: ScanConfig) -> dict[str, Probe]:
    """Each suite's probe, from the first of its checkpoints whose config can be read.

    Made before the scan starts so that a probe that cannot fit fails at once, in one line.
    """
    probes: dict[str, Probe] = {}
    for ref in refs:
        if ref.suite.name in probes:
            continue
        try:
            arch = read_architecture(fetch_config(ref, config.retry))
        except (CheckpointError, UnsupportedArchitectureError):
            continue  # this checkpoint's own scan will record why; try the suite's next one
        probes[ref.suite.name] = suite_probe(ref.suite, arch, config)
    return probes


class Scoring:
    """Scores fetched checkpoints and stores them: each suite's probe, the ICL examples if any, and
    one :class:`Scorer` whose buffers are reused for as long as the architecture stays the same."""

    def __init__(self, config: ScanConfig, probes: dict[str, Probe], icl_examples: icl.IclExamples | None = None):
        self.config, self.probes, self.icl_examples = config, probes, icl_examples
        self.scorer: Scorer | None = None

    def scorer_for(self, arch: Architecture) -> Scorer:
        if self.scorer is None or self.scorer.arch != arch:
            self.scorer = None  # let go of the old buffers before making new ones
            self.scorer = Scorer(arch, DTYPES[self.config.dtype], self.config.device,
                                 layer_by_layer=self.config.layer_by_layer)  # fmt: skip
        return self.scorer

    def score_files(self, ref: CheckpointRef, files: CheckpointFiles, out: Path) -> None:
        """Score and store one fetched checkpoint."""
        arch = read_architecture(files.config)
        if ref.suite.name not in self.probes:
            self.probes[ref.suite.name] = suite_probe(ref.suite, arch, self.config)
        probe = self.probes[ref.suite.name]
        if int(probe.ids.max()) >= arch.vocab_size:
            raise UnsupportedArchitectureError(f"vocabulary of {arch.vocab_size} is smaller than the suite's probe needs")
        if self.icl_examples is not None:
            icl.check_fits(self.icl_examples, arch.n_ctx, arch.vocab_size)
        scorer = self.scorer_for(arch)
        weights = scorer.load(lambda: read_state_dict(list(files.weights)))
        try:
            scored = scorer.score(weights, probe)
            in_context = None
            if self.icl_examples is not None:
                losses = scorer.token_losses(weights, self.icl_examples.ids)
                in_context = store.IclResult(self.icl_examples, *icl.score(losses, self.icl_examples.config))
        except RuntimeError as error:  # e.g. a weight whose shape disagrees with the config
            raise CorruptCheckpointError(f"the forward pass failed: {error}") from error
        store.write_scores(out, identity(ref, ref.revision), scored.heads, scored.checkpoint,
                           weights_sha256=files.sha256, probe=probe, icl=in_context)  # fmt: skip


def run_scan(refs: list[CheckpointRef], out: Path, config: ScanConfig, *, progress: bool = True,
             ray: RayOptions | None = None) -> ScanSummary:  # fmt: skip
    """Score every planned checkpoint not yet in ``out``; record the ones that fail and go on.

    Here, with downloads prefetched in threads; with ``ray``, as one Ray task per checkpoint
    (:mod:`inductscan.distributed`).
    """
    out = Path(out)
    if config.threads is not None:
        torch.set_num_threads(config.threads)  # process-wide: torch has no per-call setting
    started = time.perf_counter()
    scoring, todo, summary = prepare_scan(refs, out, config)
    bar = tqdm(total=len(refs), initial=summary.already_done, unit="ckpt", disable=not progress, dynamic_ncols=True)
    with bar:
        if ray is not None:
            from inductscan.distributed import run_on_ray

            run_on_ray(todo, out, scoring, ray, summary, bar)
        else:
            _run_here(todo, out, scoring, summary, bar)
    runs = sorted({(ref.suite.name, ref.run.name) for ref in todo})
    summary.same_weights = store.same_weights(out, runs)
    summary.seconds = time.perf_counter() - started
    return summary


def prepare_scan(refs: list[CheckpointRef], out: Path, config: ScanConfig) -> tuple[Scoring, list[CheckpointRef],
                                                                                    ScanSummary]:  # fmt: skip
    """Everything before the first checkpoint: the ICL examples (a bad dataset fails before anything
    is written), the output folder, what is already done, the probes, and the refusals."""
    icl_examples = prepare_icl(refs, config)
    store.check_writable(out)
    store.remove_stale_temporaries(out)
    _refuse_other_icl(out, refs, icl_examples)
    todo = [ref for ref in refs if not store.is_done(out, ref.suite.name, ref.run.name, ref.step)]
    probes = prepare_probes(todo, config)
    _refuse_other_probes(out, probes)
    summary = ScanSummary(planned=len(refs), already_done=len(refs) - len(todo))
    return Scoring(config, probes, icl_examples), todo, summary


def _run_here(todo: list[CheckpointRef], out: Path, scoring: Scoring, summary: ScanSummary, bar: tqdm) -> None:
    config = scoring.config
    prefetcher = Prefetcher(todo, prefetch=config.prefetch, retry=config.retry, max_disk=config.max_disk,
                            keep_weights=config.keep_weights, verify_cached=config.verify_cached)  # fmt: skip
    with prefetcher:
        for fetched in prefetcher:
            bar.set_postfix_str(fetched.ref.describe(), refresh=False)  # redrawn at tqdm's own pace
            summary.record(fetched.ref, score_fetched(fetched, scoring, prefetcher, out), bar)
    summary.peak_disk = prefetcher.budget.peak


@dataclass(frozen=True)
class RayOptions:
    """Where and how to run a scan on Ray: the cluster (None: start a local one; "auto": the one
    this machine belongs to; or HOST:PORT) and each task's resources."""

    address: str | None = None
    cpus_per_task: float = 1.0
    gpus_per_task: float = 0.0
    max_retries: int = 3  # of a task whose worker or node died

    def __post_init__(self) -> None:
        if self.cpus_per_task <= 0 or self.gpus_per_task < 0 or self.max_retries < 0:
            raise ConfigError(f"--cpus-per-task must be > 0, --gpus-per-task and max_retries >= 0, got "
                              f"{self.cpus_per_task}, {self.gpus_per_task}, {self.max_retries}")  # fmt: skip


@dataclass
class RunStatus:
    name: str
    seed: int
    planned: int = 0
    done: int = 0
    failed: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"planned": self.planned, "done": self.done, "failed": len(self.failed), "skipped": len(self.skipped),
                "missing": len(self.missing)}  # fmt: skip


def _counted(counts: dict[str, int]) -> str:
    return ", ".join(f"{value} {key}" for key, value in counts.items())


@dataclass
class StatusReport:
    """What of a plan a results folder holds, run by run."""

    runs: list[RunStatus]

    @property
    def complete(self) -> bool:
        return all(run.done == run.planned for run in self.runs)

    def lines(self, *, list_steps: bool = False) -> list[str]:
        lines = []
        for run in self.runs:
            lines.append(f"{run.name} (seed {run.seed}): {_counted(run.counts())}")
            for kind, steps in (("failed", run.failed), ("skipped", run.skipped), ("missing", run.missing)):
                if steps:
                    shown = steps if list_steps else steps[:10]
                    more = "" if len(shown) == len(steps) else f", ... ({len(steps) - len(shown)} more; --list)"
                    lines.append(f"  {kind} steps: {', '.join(map(str, shown))}{more}")
        totals = [run.counts() for run in self.runs]
        lines.append(_counted({key: sum(counts[key] for counts in totals) for key in totals[0]}))
        return lines


def scan_status(refs: list[CheckpointRef], out: Path) -> StatusReport:
    """Done (a scores file), failed or skipped (a failure record and no scores), else missing."""
    out = Path(out)
    if not out.is_dir():
        raise ConfigError(f"no results folder at {out}")
    failures = store.load_failures(out)
    kinds = {(row.suite, row.run, int(row.step)): row.kind for row in failures.itertuples()}
    runs: dict[tuple[str, str], RunStatus] = {}
    for ref in refs:
        run = runs.setdefault((ref.suite.name, ref.run.name), RunStatus(ref.run.name, ref.run.seed))
        run.planned += 1
        if store.is_done(out, ref.suite.name, ref.run.name, ref.step):
            run.done += 1
        else:
            kind = kinds.get((ref.suite.name, ref.run.name, ref.step))
            {"failed": run.failed, "skipped": run.skipped}.get(kind, run.missing).append(ref.step)
    return StatusReport(list(runs.values()))


def score_fetched(fetched: Fetched, scoring: Scoring, prefetcher: Prefetcher, out: Path) -> tuple[str, str]:
    """Score one fetched checkpoint, or record why not; then let go of its files.

    Returns ("scored", "") or ("failed" | "skipped", the reason).
    """
    ref = fetched.ref
    try:
        if fetched.error is not None:
            raise fetched.error
        scoring.score_files(ref, fetched.files, out)
        return "scored", ""
    except (CheckpointError, UnsupportedArchitectureError) as error:
        kind = "skipped" if isinstance(error, CheckpointUnavailableError) else "failed"
        store.write_failure(out, identity(ref, _revision_or_step(ref)), kind=kind, reason=str(error))
        return kind, str(error)
    finally:
        prefetcher.release(fetched)


def prepare_icl(refs: list[CheckpointRef], config: ScanConfig) -> icl.IclExamples | None:
    """The scan's ICL examples, tokenised once with the first planned checkpoint's tokenizer."""
    if config.icl is None:
        return None
    if not refs:
        raise ConfigError("no checkpoint to scan")
    return icl.load_examples(config.icl, tokenizer_source(refs[0]))


def tokenizer_source(ref: CheckpointRef) -> tuple[str, str | None]:
    """Where a checkpoint's tokenizer lives: its local folder, or its Hub repo and revision."""
    if ref.suite.source == "local":
        try:
            return str(local_step_folder(ref.run, ref.step)), None
        except UnknownRunError as error:
            raise ConfigError(str(error)) from error
    return ref.run.repo, ref.revision


def _refuse_other_icl(out: Path, refs: list[CheckpointRef], examples: icl.IclExamples | None) -> None:
    """Rows with and without the ICL score, or with other examples, are not one table: refuse."""
    wanted = examples.identifier() if examples else None
    for suite in sorted({ref.suite.name for ref in refs}):
        others = store.icl_used(out, suite) - {wanted}
        if others:
            held = "without the ICL score" if others == {None} else "with other ICL examples"
            raise ConfigError(
                f"{out} already holds {suite} scores {held}; scan with the same --icl-* options "
                "(or none) as before, or into another --out"
            )


def _refuse_other_probes(out: Path, probes: dict[str, Probe]) -> None:
    """Scores made with different probes are not comparable: never mix them in one folder."""
    for suite, probe in probes.items():
        used = store.probes_used(out, suite)
        if used and store.probe_id(probe) not in used:
            raise ConfigError(
                f"{out} already holds {suite} scores made with another probe ({', '.join(sorted(used))}); "
                "scan with the same --probe-* settings or into another --out"
            )


def _revision_or_step(ref: CheckpointRef) -> str:
    try:
        return ref.revision
    except UnknownRunError:
        return str(ref.step)
