"""Plan a scan (which runs and steps) and run it: fetch, score and store each checkpoint.

A checkpoint that cannot be scored is recorded with its reason and the scan goes on; one already
in the results folder is skipped, so a killed scan resumes where it stopped.
"""

from __future__ import annotations

import bisect
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from tqdm import tqdm

from inductscan import hazards, icl, store
from inductscan.architecture import Architecture, read_architecture
from inductscan.checkpoints import CheckpointFiles, CheckpointRef, fetch_config
from inductscan.errors import (
    CheckpointError,
    CheckpointUnavailableError,
    ConfigError,
    HubUnreachableError,
    OutOfMemory,
    UnknownRunError,
    UnknownSuiteError,
    UnsupportedArchitectureError,
)
from inductscan.hub import Retry
from inductscan.icl import IclConfig
from inductscan.measure import Scorer
from inductscan.model import read_state_dict
from inductscan.pipeline import Fetched, Prefetcher
from inductscan.probe import Probe, ProbeConfig, TokenSpec, make_probe
from inductscan.suites import CATALOG, Run, Suite, local_step_folder, local_suite

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
        if device.type not in ("cpu", "cuda", "mps"):
            raise ConfigError(f"device {self.device!r}: inductscan scores on cpu, cuda or mps")
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
    """The checkpoints to scan, run by run in step order.

    ``every`` keeps every Nth of the chosen steps, and always the first and the last, which the
    early and late plateaus of the phase-change timing need.
    """
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
        if every is not None and chosen:
            chosen = chosen[::every] + ([chosen[-1]] if (len(chosen) - 1) % every else [])  # the last plateau needs it
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


OUTCOMES = ("scored", "failed", "skipped", "known-missing")


@dataclass
class ScanSummary:
    planned: int = 0
    scored: int = 0
    already_done: int = 0
    failed: list[tuple[CheckpointRef, str]] = field(default_factory=list)  # failed or skipped
    known_missing: list[tuple[CheckpointRef, str]] = field(default_factory=list)  # missing upstream, as listed
    seconds: float = 0.0
    peak_disk: int = 0  # bytes reserved at once for downloads
    same_weights: list[store.SameWeights] = field(default_factory=list)

    def record(self, ref: CheckpointRef, outcome: tuple[str, str], progress: Progress) -> None:
        """Count one checkpoint's outcome (from :func:`score_fetched`) and advance the progress."""
        kind, reason = outcome
        if kind == "scored":
            self.scored += 1
        else:
            (self.known_missing if kind == "known-missing" else self.failed).append((ref, reason))
            progress.write(f"{kind}: {ref.describe()}: {reason}")
        progress.advance(ref, failed=len(self.failed))

    def line(self, out: Path) -> str:
        text = (
            f"{self.planned} checkpoints in {self.seconds:.1f} s: {self.scored} scored, "
            f"{self.already_done} already done, {len(self.failed)} failed or skipped"
        )
        if self.known_missing:
            text += f", {len(self.known_missing)} known missing upstream ({hazards.TABLE})"
        text += f"; results in {out}"
        if self.failed or self.known_missing:
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


class ScanInterrupted(KeyboardInterrupt):
    """Ctrl-C during a scan; carries what had been done, all of it saved."""

    def __init__(self, summary: ScanSummary):
        super().__init__()
        self.summary = summary


PLAIN_PROGRESS_SECONDS = 60.0


class Progress:
    """A progress bar on a terminal; elsewhere (a SLURM log, a pipe) one plain line a minute and
    one at the end, never the bar's carriage-return frames."""

    def __init__(self, total: int, done: int, *, enabled: bool = True, stream=None):
        self.stream = stream or sys.stderr
        self.total, self.done, self.started = total, done, time.monotonic()
        self.first = done
        self.last_line = self.started
        live = enabled and self.stream.isatty()
        self.plain = enabled and not live
        self.bar = tqdm(total=total, initial=done, unit="ckpt", disable=not live, dynamic_ncols=True, file=self.stream)

    def write(self, line: str) -> None:
        """A checkpoint's outcome, on standard output with the summary line, above the bar."""
        self.bar.write(line, file=sys.stdout)

    def advance(self, ref: CheckpointRef, *, failed: int) -> None:
        self.done += 1
        self.bar.set_postfix_str(ref.describe(), refresh=False)  # redrawn at tqdm's own pace
        self.bar.update()
        now = time.monotonic()
        if self.plain and (now - self.last_line >= PLAIN_PROGRESS_SECONDS or self.done == self.total):
            self.last_line = now
            each = (now - self.started) / max(1, self.done - self.first)
            left = f", about {each * (self.total - self.done):.0f} s left" if self.done < self.total else ""
            print(f"[{time.strftime('%H:%M:%S')}] {self.done}/{self.total} checkpoints ({failed} failed or skipped), "
                  f"last {ref.describe()}, {each:.1f} s each{left}", file=self.stream, flush=True)  # fmt: skip

    def close(self) -> None:
        self.bar.close()


def identity(ref: CheckpointRef, revision: str) -> dict:
    return {
        "suite": ref.suite.name, "repo": ref.run.repo, "run": ref.run.name, "revision": revision,
        "seed": ref.run.seed, "step": ref.step, "tokens": ref.tokens,
    }  # fmt: skip


def prepare_probes(refs: list[CheckpointRef], config: ScanConfig) -> dict[str, Probe]:
    """Each suite's probe, from the first of its checkpoints whose config can be read.

    Made before the scan starts so that a probe that cannot fit fails at once, in one line, and
    so that the settings of a folder's finished checkpoints can be compared with this scan's.
    """
    probes: dict[str, Probe] = {}
    for ref in refs:
        if ref.suite.name in probes:
            continue
        try:
            arch = read_architecture(fetch_config(ref, config.retry))
        except HubUnreachableError:
            raise
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

    def settings(self, suite: str) -> store.Settings:
        icl_record = self.icl_examples.record_json() if self.icl_examples is not None else None
        return store.Settings(self.probes[suite].record_json(), icl_record, self.config.dtype)

    def scorer_for(self, arch: Architecture) -> Scorer:
        if self.scorer is None or self.scorer.arch != arch:
            self.scorer = None  # let go of the old buffers before making new ones
            self.scorer = Scorer(arch, DTYPES[self.config.dtype], self.config.device,
                                 layer_by_layer=self.config.layer_by_layer)  # fmt: skip
        return self.scorer

    def score_files(self, ref: CheckpointRef, files: CheckpointFiles, out: Path) -> None:
        """Score and store one fetched checkpoint."""
        arch = read_architecture(files.config)
        if ref.suite.name not in self.probes:  # no config of the suite could be read before the scan
            self.probes[ref.suite.name] = suite_probe(ref.suite, arch, self.config)
            refuse_other_settings(out, {ref.suite.name: self.settings(ref.suite.name)})
        probe = self.probes[ref.suite.name]
        if int(probe.ids.max()) >= arch.vocab_size:
            raise UnsupportedArchitectureError(f"vocabulary of {arch.vocab_size} is smaller than the suite's probe needs")
        if self.icl_examples is not None:
            icl.check_fits(self.icl_examples, arch.n_ctx, arch.vocab_size)
        try:
            scorer = self.scorer_for(arch)
            weights = scorer.load(lambda: read_state_dict(list(files.weights)))
            scored = scorer.score(weights, probe)
            in_context = None
            if self.icl_examples is not None:
                losses = scorer.token_losses(weights, self.icl_examples.ids)
                in_context = store.IclResult(self.icl_examples, *icl.score(losses, self.icl_examples.config))
        except (torch.OutOfMemoryError, RuntimeError) as error:
            if not is_out_of_memory(error):
                raise  # a bug, not a fault of the checkpoint: never recorded as one
            self.scorer = None
            raise OutOfMemory(f"out of memory scoring {ref.describe()} on {self.config.device}: try --layer-by-layer, "
                              "a smaller --probe-batch, or --device cpu") from error  # fmt: skip
        store.write_scores(out, identity(ref, ref.revision), scored.heads, scored.checkpoint,
                           weights_sha256=files.sha256, probe=probe, dtype=self.config.dtype,
                           icl=in_context)  # fmt: skip


def is_out_of_memory(error: BaseException) -> bool:
    """A device's out-of-memory error, or the CPU allocator's (a plain RuntimeError in torch)."""
    return isinstance(error, torch.OutOfMemoryError) or "can't allocate memory" in str(error)


def run_scan(refs: list[CheckpointRef], out: Path, config: ScanConfig, *, progress: bool = True,
             ray: RayOptions | None = None) -> ScanSummary:  # fmt: skip
    """Score every planned checkpoint not yet in ``out``; record the ones that fail and go on.

    Here, with downloads prefetched in threads; with ``ray``, as one Ray task per checkpoint
    (:mod:`inductscan.distributed`). Stops at once, with what was scored saved, when the Hub
    cannot be reached (:class:`HubUnreachableError`), on out-of-memory (:class:`OutOfMemory`),
    and on Ctrl-C (:class:`ScanInterrupted`, which carries the summary so far).
    """
    out = Path(out)
    if config.threads is not None:
        torch.set_num_threads(config.threads)  # process-wide: torch has no per-call setting
    started = time.perf_counter()
    scoring, todo, summary = prepare_scan(refs, out, config)
    bar = Progress(len(refs), summary.already_done, enabled=progress)
    try:
        if ray is not None:
            from inductscan.distributed import run_on_ray

            run_on_ray(todo, out, scoring, ray, summary, bar)
        else:
            _run_here(todo, out, scoring, summary, bar)
    except KeyboardInterrupt as interrupt:
        summary.seconds = time.perf_counter() - started
        raise ScanInterrupted(summary) from interrupt
    finally:
        bar.close()
    runs = sorted({(ref.suite.name, ref.run.name) for ref in todo})
    summary.same_weights = store.same_weights(out, runs)
    summary.seconds = time.perf_counter() - started
    return summary


def prepare_scan(refs: list[CheckpointRef], out: Path, config: ScanConfig) -> tuple[Scoring, list[CheckpointRef],
                                                                                    ScanSummary]:  # fmt: skip
    """Everything before the first checkpoint: the ICL examples (a bad dataset fails before anything
    is written), the output folder, the probes, the refusal of other settings, what is done."""
    icl_examples = prepare_icl(refs, config)
    store.check_writable(out)
    store.remove_stale_temporaries(out)
    scoring = Scoring(config, prepare_probes(refs, config), icl_examples)
    refuse_other_settings(out, {suite: scoring.settings(suite) for suite in scoring.probes})
    todo = [ref for ref in refs if not store.is_done(out, ref.suite.name, ref.run.name, ref.step)]
    summary = ScanSummary(planned=len(refs), already_done=len(refs) - len(todo))
    return scoring, todo, summary


def _run_here(todo: list[CheckpointRef], out: Path, scoring: Scoring, summary: ScanSummary, bar: Progress) -> None:
    config = scoring.config
    prefetcher = Prefetcher(todo, prefetch=config.prefetch, retry=config.retry, max_disk=config.max_disk,
                            keep_weights=config.keep_weights, verify_cached=config.verify_cached)  # fmt: skip
    with prefetcher:
        for fetched in prefetcher:
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
    known_missing: list[int] = field(default_factory=list)  # listed as missing upstream, not done
    missing: list[int] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"planned": self.planned, "done": self.done, "failed": len(self.failed), "skipped": len(self.skipped),
                "missing": len(self.missing), "known missing upstream": len(self.known_missing)}  # fmt: skip


def _counted(counts: dict[str, int]) -> str:
    shown = {key: value for key, value in counts.items() if value or key != "known missing upstream"}
    return ", ".join(f"{value} {key}" for key, value in shown.items())


@dataclass
class StatusReport:
    """What of a plan a results folder holds, run by run."""

    runs: list[RunStatus]

    @property
    def complete(self) -> bool:
        """Every planned checkpoint is done, or listed as missing upstream."""
        return all(run.done + len(run.known_missing) == run.planned for run in self.runs)

    def lines(self, *, list_steps: bool = False) -> list[str]:
        lines = []
        for run in self.runs:
            lines.append(f"{run.name} (seed {run.seed}): {_counted(run.counts())}")
            kinds = (("failed", run.failed), ("skipped", run.skipped),
                     ("known missing upstream", run.known_missing), ("missing", run.missing))  # fmt: skip
            for kind, steps in kinds:
                if steps:
                    shown = steps if list_steps else steps[:10]
                    more = "" if len(shown) == len(steps) else f", ... ({len(steps) - len(shown)} more; --list)"
                    lines.append(f"  {kind} steps: {', '.join(map(str, shown))}{more}")
        totals = [run.counts() for run in self.runs]
        lines.append(_counted({key: sum(counts[key] for counts in totals) for key in totals[0]}))
        if any(run.known_missing for run in self.runs):
            lines.append(f"known missing upstream: listed in {hazards.TABLE}; not waited for")
        return lines


def scan_status(refs: list[CheckpointRef], out: Path) -> StatusReport:
    """Done (a scores file); listed as missing upstream; failed or skipped (a failure record and
    no scores); else missing."""
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
        elif _known_missing(ref) is not None:
            run.known_missing.append(ref.step)
        else:
            kind = kinds.get((ref.suite.name, ref.run.name, ref.step))
            {"failed": run.failed, "skipped": run.skipped}.get(kind, run.missing).append(ref.step)
    return StatusReport(list(runs.values()))


def recorded_suites(out: Path) -> list[Suite]:
    """The suites a results folder holds checkpoints of, with the runs it holds, to plan a status.

    A catalogued suite keeps its own steps; a local run's steps are those its folder (the ``repo``
    column) holds now, or, if the folder is gone, those recorded.
    """
    recorded = store.recorded_checkpoints(out)
    suites = []
    for name, rows in recorded.groupby("suite", sort=True):
        runs = rows.groupby(["run", "seed", "repo"], sort=True)["step"].agg(lambda steps: tuple(sorted(steps)))
        if name in CATALOG:
            seen = {run for run, _, _ in runs.index}
            suites.append(replace(CATALOG[name], runs=tuple(run for run in CATALOG[name].runs if run.name in seen)))
            continue
        local = tuple(Run(run, int(seed), repo, _present_steps(Path(repo)) or steps)
                      for (run, seed, repo), steps in runs.items())  # fmt: skip
        steps = tuple(sorted({step for run in local for step in run.steps}))
        suites.append(Suite(name, f"local runs recorded in {out}", local, steps, tokens_per_step=0, source="local"))
    return suites


def _present_steps(folder: Path) -> tuple[int, ...]:
    try:
        return local_suite(folder).runs[0].steps if folder.is_dir() else ()
    except UnknownSuiteError:
        return ()


def _known_missing(ref: CheckpointRef) -> hazards.Hazard | None:
    if ref.suite.source == "local":
        return None
    return hazards.known_missing(ref.run.repo, ref.revision)


def score_fetched(fetched: Fetched, scoring: Scoring, prefetcher: Prefetcher, out: Path) -> tuple[str, str]:
    """Score one fetched checkpoint, or record why not; then let go of its files.

    Returns ("scored", "") or (one of "failed", "skipped", "known-missing"; the reason). Raises
    :class:`HubUnreachableError` after recording it: every other download would fail alike.
    """
    ref = fetched.ref
    try:
        if fetched.error is not None:
            raise fetched.error
        scoring.score_files(ref, fetched.files, out)
        return "scored", ""
    except (CheckpointError, UnsupportedArchitectureError) as error:
        kind, reason = "failed", str(error)
        if isinstance(error, CheckpointUnavailableError):
            known = _known_missing(ref)
            kind = "skipped" if known is None else "known-missing"
            reason = reason if known is None else f"{reason} ({known.describe()})"
        store.write_failure(out, identity(ref, _revision_or_step(ref)), kind=kind, reason=reason)
        if isinstance(error, HubUnreachableError):
            raise
        return kind, reason
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


def refuse_other_settings(out: Path, wanted: dict[str, store.Settings]) -> None:
    """Rows made with other settings (probe, ICL examples, dtype, scoring version) never pass for
    this scan's: refuse, in one line that names what differs and what to do, before anything is
    scored, whether or not planned checkpoints remain."""
    for suite, settings in sorted(wanted.items()):
        for held in store.settings_used(out, suite):
            differences = settings.differences(held)
            if not differences:
                continue
            named = "; ".join(f"{name} {_shown(theirs)} there, {_shown(mine)} here" for name, mine, theirs in differences)
            fixes = list(dict.fromkeys(_fix(name, theirs) for name, _, theirs in differences))
            raise ConfigError(f"{out} already holds {suite} scores made with other settings ({named}): "
                              f"scan with {' and '.join(fixes)}, or into another --out")  # fmt: skip


def _fix(setting: str, held) -> str:
    """What to pass to scan as the rows in the folder were scanned."""
    if setting == "ICL dataset":
        return "no --icl-dataset (they are without the ICL score)" if held is None else f"--icl-dataset {held}"
    if setting in ("probe token_low", "probe token_high", "probe excluded", "probe bos"):
        return "checkpoints of the folder's vocabulary (these have another one: a local folder's probe draws from it)"
    if setting.startswith("probe "):
        return "the same --probe-* options as before"
    if setting.startswith("ICL "):
        return "the same --icl-* options as before"
    if setting == "dtype":
        return f"--dtype {held}"
    return f"inductscan's scoring version {held} (its rows cannot be extended by this version)"


def _shown(value) -> str:
    return "none" if value is None else str(value)


def _revision_or_step(ref: CheckpointRef) -> str:
    try:
        return ref.revision
    except UnknownRunError:
        return str(ref.step)
