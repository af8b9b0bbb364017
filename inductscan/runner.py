"""Run a planned scan: fetch, score and store each checkpoint, record the ones that fail.

A checkpoint that cannot be scored is recorded with its reason and the scan goes on; one already
in the results folder is skipped, so a killed scan resumes where it stopped. Where the work runs is
an executor's business: :class:`LocalExecutor` (this process, downloads prefetched in threads) or
:class:`inductscan.distributed.RayExecutor` (one Ray task per checkpoint), both behind
:func:`run_scan`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from tqdm import tqdm

from inductscan import architecture, custom_scores, effects, hazards, icl
from inductscan.checkpoints import CheckpointFiles, CheckpointRef, fetch_config, hash_files, local_files
from inductscan.errors import (
    CheckpointError,
    CheckpointUnavailableError,
    ConfigError,
    HubUnreachableError,
    OutOfMemory,
    UnknownRunError,
    UnsupportedArchitectureError,
    parameter,
)
from inductscan.families.registry import make_scorer, read_architecture
from inductscan.measure import Scorer
from inductscan.pipeline import Fetched, Prefetcher
from inductscan.plan import ScanConfig, suite_probe
from inductscan.probe import Probe
from inductscan.results import sql, token_losses
from inductscan.results.compact import compact
from inductscan.results.damaged import set_aside_damaged
from inductscan.results.declarations import declare_scores, withdraw_declarations
from inductscan.results.folder import ResultsFolder, Scored, is_done, remove_stale_temporaries
from inductscan.results.layout import DAMAGED_FOLDER, Damaged, check_writable, claim, safe
from inductscan.results.read import SameWeights, load_results, same_weights
from inductscan.results.records import run_notes, write_failure, write_run_note
from inductscan.results.settings import Settings, refuse_other_settings, release_unbacked_settings
from inductscan.results.write import IclResult, custom_record, write_scores
from inductscan.suites import local_step_folder
from inductscan.vocabulary import Outcome
from inductscan.weights import read_state_dict


@dataclass
class ScanSummary:
    planned: int = 0
    scored: int = 0
    already_done: int = 0
    elsewhere: int = 0  # being scored by another scan into the same folder, started at the same time
    failed: list[tuple[CheckpointRef, str]] = field(default_factory=list)  # failed or skipped
    known_missing: list[tuple[CheckpointRef, str]] = field(default_factory=list)  # missing upstream, as listed
    seconds: float = 0.0
    peak_disk: int = 0  # bytes reserved at once for downloads
    same_weights: list[SameWeights] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the suites' branch listings showed (inductscan.listing)
    ignored: tuple[str, ...] = ()  # local folders that look like checkpoints but name no step
    set_aside: list[Damaged] = field(default_factory=list)  # damaged files moved into OUT/damaged/
    unscored: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)  # (suite, run) -> score -> why empty

    def record(self, ref: CheckpointRef, outcome: tuple[str, str], progress: Progress) -> None:
        """Count one checkpoint's outcome (from :func:`process_checkpoint`) and advance the progress."""
        kind, reason = outcome
        if kind == Outcome.SCORED:
            self.scored += 1
        elif kind == Outcome.DONE:  # another scan finished it since this one started
            self.already_done += 1
        elif kind == Outcome.ELSEWHERE:
            self.elsewhere += 1
        else:
            (self.known_missing if kind == Outcome.KNOWN_MISSING else self.failed).append((ref, reason))
            progress.write(f"{kind}: {ref.describe()}: {reason}")
        progress.advance(ref, failed=len(self.failed))

    def line(self, out: Path) -> str:
        text = (
            f"{self.planned} checkpoints in {self.seconds:.1f} s: {self.scored} scored, "
            f"{self.already_done} already done, {len(self.failed)} failed or skipped"
        )
        if self.elsewhere:
            text += f", {self.elsewhere} being scored by another scan into the same folder"
        if self.known_missing:
            sources = dict.fromkeys(_missing_source(ref) for ref, _ in self.known_missing)
            text += f", {len(self.known_missing)} known missing upstream ({', '.join(sources)})"
        text += f"; results in {out}"
        if self.failed or self.known_missing:
            text += f" (reasons in {Path(out) / 'failures'})"
        if self.peak_disk:
            text += f"; at most {self.peak_disk / 1e6:,.0f} MB of downloads on disk at once"
        return text

    def warnings(self) -> list[str]:
        """One line per group of steps of a run that serve identical weights, per damaged file set
        aside, one naming the folders that look like checkpoints but were not scanned, one per note
        on the suites' branch listings (a name that disagrees with the token schedule, ...), and one per
        run scanned with some head scores left empty, saying why (recorded in OUT/notes/, not a failure)."""
        lines = [
            f"warning: {group.run} steps {', '.join(map(str, group.steps))} serve identical weights "
            f"(sha256 {group.sha256[:12]}...): the column same_weights_as marks them"
            for group in self.same_weights
        ]
        for damaged in self.set_aside:
            what = "a file of another tool" if damaged.foreign else "damaged"
            steps = "" if damaged.steps is None else f" {', '.join(map(str, sorted(damaged.steps)))}"
            lines.append(
                f"warning: set aside {damaged.paths[0]} ({what}) into {Path(damaged.paths[0]).parents[3]}/"
                f"{DAMAGED_FOLDER}/: its step(s){steps} are scored again where planned"
            )
        if self.ignored:
            lines.append(
                f"warning: not scanned, {len(self.ignored)} folder(s) that look like checkpoints but name no step "
                f"(checkpoint-N/, stepN/, step_N/ are scanned): {', '.join(self.ignored)}"
            )
        lines += [f"note: {note}" for note in self.notes]
        for (_, run), unscored in sorted(self.unscored.items()):
            by_reason: dict[str, list[str]] = {}
            for score, reason in unscored.items():
                by_reason.setdefault(reason, []).append(score)
            lines.append(f"note: {run}: " + "; ".join(f"{', '.join(s)}: {why}" for why, s in by_reason.items()))
        return lines


def _missing_source(ref: CheckpointRef) -> str:
    known = ref.missing_upstream
    return known.source if known is not None and known.source else hazards.TABLE


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
            shown = f"{each:.1f}" if each >= 1 else f"{each:.2g}"  # a toy checkpoint takes 0.038 s, not "0.0"
            print(
                f"[{time.strftime('%H:%M:%S')}] {self.done}/{self.total} checkpoints ({failed} failed or skipped), "
                f"last {ref.describe()}, {shown} s each{left}",
                file=self.stream,
                flush=True,
            )

    def close(self) -> None:
        self.bar.close()


def identity(ref: CheckpointRef, revision: str) -> dict:
    return {
        "suite": ref.suite.name,
        "repo": ref.repo,
        "run": ref.run.name,
        "revision": revision,
        "seed": ref.run.seed,
        "step": ref.step,
        "tokens": ref.tokens,
    }


def prepare_probes(
    refs: list[CheckpointRef],
    config: ScanConfig,
    icl_examples: icl.IclExamples | None = None,
    notes: list[str] | None = None,
) -> dict[str, Probe]:
    """Each suite's probe, from the first of its checkpoints whose config can be read.

    Made before the scan starts so that a probe that cannot fit fails at once, in one line, and
    so that the settings of a folder's finished checkpoints can be compared with this scan's; ICL
    examples longer than that config's context, or with ids beyond its vocabulary, fail there too,
    before the scan records its settings. ``notes`` gets what the scan's summary should say of a
    probe (one that a sliding window keeps from its induction heads).
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
        if icl_examples is not None:
            icl.check_fits(icl_examples, arch.n_ctx, arch.vocab_size)
        if notes is not None:
            notes += _window_notes(ref.suite.name, arch, probes[ref.suite.name])
    return probes


def _window_notes(suite: str, arch, probe: Probe) -> list[str]:
    """A note when the probe's repeats are longer than a sliding window: an induction head looks
    ``length - 1`` positions back, which a query of a window of at most that many cannot see."""
    length = probe.layout.length
    windowed = [(index, window) for index, window in enumerate(getattr(arch, "windows", ())) if window is not None]
    blind = [index for index, window in windowed if window <= length - 1]
    if not blind:
        return []
    window = min(window for _, window in windowed)
    layers = "every layer" if len(blind) == arch.n_layers else f"layers {', '.join(map(str, blind))}"
    return [
        f"{suite}: the probe repeats {length} tokens, more than the sliding window of {window} positions of "
        f"{layers} can look back, so no head there can be an induction head on it (induction 0); "
        f"--probe-length {window} or less probes them"
    ]


class ScanContext:
    """What every checkpoint of a scan is scored with, and how it is stored: the settings, each
    suite's probe, the ICL examples if any, and one :class:`Scorer` whose buffers are reused for as
    long as the architecture stays the same."""

    def __init__(
        self,
        config: ScanConfig,
        probes: dict[str, Probe],
        icl_examples: icl.IclExamples | None = None,
        custom: tuple[custom_scores.CustomScore, ...] = (),
    ):
        self.config, self.probes, self.icl_examples = config, probes, icl_examples
        self.custom = custom  # the users' scores this scan computes (inductscan/custom_scores.py)
        self.scorer: Scorer | None = None
        # a checkpoint is done when its scores and each side file this scan makes are there: one whose
        # side file is missing (scanned without --token-losses, or set aside as damaged) is redone
        self.tables = ["scores"] + (["icl_curves"] if config.icl else [])
        self.tables += [token_losses.TABLE] if config.token_losses else []
        self.taken: list[CheckpointRef] = []  # claimed by this process and found not done: scored here
        self.claimed: list[str] = []  # the suites whose settings this scan recorded first (refuse_other_settings)
        self.declared: list[str] = []  # the users' scores this scan declared first in the folder (declare_scores)
        self.notes: list[str] = []  # what the summary says of the probes (prepare_probes)

    def is_done(self, ref: CheckpointRef, out: Path) -> bool:
        """Whether ``out`` holds the checkpoint's scores and side files (one listing of its run's folders)."""
        return all(is_done(out, ref.suite.name, ref.run.name, ref.step, table) for table in self.tables)

    def settings(self, suite: str) -> Settings:
        icl_record = self.icl_examples.record_json() if self.icl_examples is not None else None
        custom = custom_record(custom_scores.versions(self.custom))
        return Settings(self.probes[suite].record_json(), icl_record, self.config.dtype, custom_scores=custom)

    def scorer_for(self, arch) -> Scorer:
        if self.scorer is None or self.scorer.arch != arch:
            self.scorer = None  # let go of the old buffers before making new ones
            self.scorer = make_scorer(
                arch, getattr(torch, self.config.dtype), self.config.device, layer_by_layer=self.config.layer_by_layer
            )
        return self.scorer

    def score_files(self, ref: CheckpointRef, files: CheckpointFiles, out: Path) -> None:
        """Score and store one fetched checkpoint."""
        arch = read_architecture(files.config)
        if ref.suite.name not in self.probes:  # no config of the suite could be read before the scan
            self.probes[ref.suite.name] = suite_probe(ref.suite, arch, self.config)
            refuse_other_settings(out, {ref.suite.name: self.settings(ref.suite.name)})
        probe = self.probes[ref.suite.name]
        bos = probe.tokens.bos
        if bos is not None and bos >= arch.vocab_size:
            raise UnsupportedArchitectureError(
                f"the probe starts with the BOS token {bos}, outside this vocabulary of {arch.vocab_size} (a local "
                "folder takes bos_token_id from its first checkpoint's config.json): set it there to a token the "
                "model has"
            )
        if int(probe.ids.max()) >= arch.vocab_size:
            raise UnsupportedArchitectureError(
                f"vocabulary of {arch.vocab_size} is smaller than the suite's probe needs (its tokens reach id "
                f"{int(probe.ids.max())}): a suite of another vocabulary is scanned as a suite of its own (--suite)"
            )
        if self.icl_examples is not None:
            icl.check_fits(self.icl_examples, arch.n_ctx, arch.vocab_size)
        if self.config.head_effects:
            effects.check_supported(arch)
        try:
            scorer = self.scorer_for(arch)
            weights = scorer.load(lambda: read_state_dict(list(files.weights)))
            scored = scorer.score(weights, probe, self.custom)
            if self.config.head_effects:
                scored = effects.with_effects(
                    scored, weights, probe, self.icl_examples, top=self.config.head_effects_top
                )
            in_context = None
            if self.icl_examples is not None:
                losses = scorer.token_losses(weights, self.icl_examples.ids)
                in_context = IclResult(self.icl_examples, *icl.score(losses, self.icl_examples.config))
        except (torch.OutOfMemoryError, RuntimeError) as error:
            if not is_out_of_memory(error):
                raise  # a bug, not a fault of the checkpoint: never recorded as one
            self.scorer = None
            raise OutOfMemory(
                f"out of memory scoring {ref.describe()} on {self.config.device}: try {parameter('layer_by_layer')}, "
                f"a smaller {parameter('probe_batch')}, or {parameter('device')} cpu"
            ) from error
        if self.config.token_losses:  # before the scores file, whose presence marks the checkpoint done
            token_losses.write(out, identity(ref, ref.revision), losses, self.icl_examples)
        write_scores(
            out,
            identity(ref, ref.revision),
            scored.heads,
            scored.checkpoint,
            weights_sha256=files.sha256,
            probe=probe,
            dtype=self.config.dtype,
            icl=in_context,
            custom=custom_scores.versions(self.custom),
        )
        if scored.unscored:
            write_run_note(out, identity(ref, ref.revision), scored.unscored)


def is_out_of_memory(error: BaseException) -> bool:
    """A device's out-of-memory error, or the CPU allocator's (a plain RuntimeError in torch)."""
    return isinstance(error, torch.OutOfMemoryError) or "can't allocate memory" in str(error)


def run_scan(
    refs: list[CheckpointRef], out: Path, config: ScanConfig, *, progress: bool = True, executor: Executor | None = None
) -> ScanSummary:
    """Score every planned checkpoint not yet in ``out``; record the ones that fail and go on.

    ``executor`` runs them: :class:`LocalExecutor` (the default) or
    :class:`inductscan.distributed.RayExecutor`. Stops at once, with what was scored saved, when the Hub
    cannot be reached (:class:`HubUnreachableError`), on out-of-memory (:class:`OutOfMemory`),
    and on Ctrl-C (:class:`ScanInterrupted`, which carries the summary so far).
    """
    out = Path(out)
    if config.threads is not None:
        torch.set_num_threads(config.threads)  # process-wide: torch has no per-call setting
    started = time.perf_counter()
    folder = ResultsFolder(out)  # listed once at start-up, then only the runs this scan writes
    context, todo, summary = prepare_scan(refs, folder, config)
    summary.notes = list(dict.fromkeys([*(note for ref in refs for note in ref.suite.notes), *context.notes]))
    if config.head_effects and summary.already_done:
        summary.notes.append(
            f"{summary.already_done} checkpoint(s) were done already and keep their rows: head effects are "
            "measured only on the checkpoints a scan scores (a fresh --out measures every one)"
        )
    if refs and all(ref.suite.source == "local" for ref in refs):
        summary.notes += _hub_settings_unused(config)
    pending = {(ref.suite.name, ref.run.name, ref.step) for ref in todo}
    summary.notes += changed_since_scored(
        folder, [ref for ref in refs if (ref.suite.name, ref.run.name, ref.step) not in pending]
    )
    summary.ignored = tuple(sorted({path for ref in refs for path in ref.suite.ignored}))
    bar = Progress(len(refs), summary.already_done, enabled=progress)
    try:
        (executor or LocalExecutor()).run(todo, out, context, summary, bar)
    except KeyboardInterrupt as interrupt:
        summary.seconds = time.perf_counter() - started
        raise ScanInterrupted(summary) from interrupt
    except BaseException:
        release_unbacked_settings(folder, context.claimed)
        raise
    finally:
        bar.close()
        if not summary.scored:  # no row has the columns of the scores this scan declared first
            withdraw_declarations(folder.path, context.declared)
    runs = sorted({(ref.suite.name, ref.run.name) for ref in todo})
    compact(folder, runs)  # readers then open one file per run, not one per checkpoint
    summary.same_weights = same_weights(folder, runs)
    summary.unscored = run_notes(out, runs)
    summary.seconds = time.perf_counter() - started
    return summary


def changed_since_scored(folder: ResultsFolder, done: list[CheckpointRef]) -> list[str]:
    """Notes on the local checkpoints among ``done`` whose weights changed since they were scored
    (a run trained again into the same folder): their rows, which a scan keeps, are of the old
    weights. Only a weight file newer than its run's results files is hashed again, and named
    when its sha256 is not the one scored."""
    notes = []
    local = [ref for ref in done if ref.suite.source == "local"]
    for (suite, run), refs in _by_run(local).items():
        stored = [path for files in folder.runs("scores", [(safe(suite), safe(run))]) for path in files.visible()]
        try:
            scored_at = max(path.stat().st_mtime for path in stored)
        except (ValueError, OSError):
            continue  # no file, or one gone since the listing: nothing to compare with
        newer = {}
        for ref in refs:
            try:
                _, files = local_files(ref)
                if max(path.stat().st_mtime for path in files) > scored_at:
                    newer[ref.step] = files
            except (CheckpointError, OSError):
                continue  # gone or unreadable: nothing to compare; its rows stay as they are
        if not newer:
            continue
        rows = load_results(folder, columns=["weights_sha256"], suite=suite, run=run, step=sorted(newer))
        scored = rows.reset_index().groupby("step")["weights_sha256"].first()
        changed = [step for step, files in newer.items() if step in scored and scored[step] != hash_files(files)]
        if changed:
            steps = ", ".join(map(str, sorted(changed)))
            notes.append(
                f"the weights of {run} step(s) {steps} changed since they were scored (another sha256): their rows "
                "are of the old weights and were kept; scan into a fresh --out to score the new ones"
            )
    return notes


def _by_run(refs: list[CheckpointRef]) -> dict[tuple[str, str], list[CheckpointRef]]:
    """``refs`` by (suite, run), each run's in their order."""
    grouped: dict[tuple[str, str], list[CheckpointRef]] = {}
    for ref in refs:
        grouped.setdefault((ref.suite.name, ref.run.name), []).append(ref)
    return grouped


def _hub_settings_unused(config: ScanConfig) -> list[str]:
    """Notes on the download settings a scan of local folders was given: they change nothing there."""
    given = (("--max-disk", config.max_disk is not None), ("--keep-weights", config.keep_weights))
    downloads = [flag for flag, was_given in given if was_given]
    notes = []
    if downloads:
        notes.append(
            f"{' and '.join(downloads)} (for weights downloaded from the Hub) "
            "changed nothing: a local folder's files are read where they are"
        )
    if config.verify_cached:
        notes.append(
            "--verify-cached (for files already in the Hub cache) changed nothing: "
            "a local folder's weight files are always hashed"
        )
    return notes


def prepare_scan(
    refs: list[CheckpointRef], out: ResultsFolder | Path, config: ScanConfig
) -> tuple[ScanContext, list[CheckpointRef], ScanSummary]:
    """Everything before the first checkpoint: the users' scores and the ICL examples (a bad plugin or
    dataset fails before anything is written), the output folder, the probes, the refusal of other
    settings, what is done. The folder is listed once (``out``'s handle), for all of it."""
    folder = ResultsFolder.of(out)
    custom_scores.load_entry_points()  # a plugin that cannot be loaded stops the scan before it writes
    custom_scores.import_modules(list(config.score_modules))
    icl_examples = prepare_icl(refs, config)
    check_writable(folder.path)
    remove_stale_temporaries(folder)
    set_aside = set_aside_damaged(folder)  # before anything reads the folder: their checkpoints are redone
    notes: list[str] = []
    context = ScanContext(
        config, prepare_probes(refs, config, icl_examples, notes), icl_examples, custom_scores.registered()
    )
    context.notes = notes
    context.claimed = refuse_other_settings(folder, {suite: context.settings(suite) for suite in context.probes})
    try:
        # read without the user's code
        context.declared = declare_scores(folder.path, [score.metric for score in context.custom])
        refuse_another_suite(folder, refs)
        refuse_mixed_architectures(refs)
    except BaseException:
        release_unbacked_settings(folder, context.claimed)
        withdraw_declarations(folder.path, context.declared)
        raise
    held = [Scored(folder, table) for table in context.tables]  # from the one listing
    todo = [ref for ref in refs if not all((ref.suite.name, ref.run.name, ref.step) in done for done in held)]
    summary = ScanSummary(planned=len(refs), already_done=len(refs) - len(todo), set_aside=set_aside)
    return context, todo, summary


class Executor(Protocol):
    """Where a scan's checkpoints are processed: each one through :func:`process_checkpoint`, its
    outcome counted with ``summary.record``."""

    def run(
        self, todo: list[CheckpointRef], out: Path, context: ScanContext, summary: ScanSummary, progress: Progress
    ) -> None: ...


@dataclass
class LocalExecutor:
    """This process: downloads prefetched in threads (``--prefetch``, ``--max-disk``), each checkpoint
    scored as soon as it is fetched.

    ``around``, a hook for benchmarks: called with each fetched checkpoint and a function that
    processes it (returning its outcome), it must call that function and return what it returns;
    it may time it, or run other work before it.
    """

    around: Callable[[Fetched, Callable[[], tuple[str, str]]], tuple[str, str]] | None = None

    def run(
        self, todo: list[CheckpointRef], out: Path, context: ScanContext, summary: ScanSummary, progress: Progress
    ) -> None:
        config = context.config
        prefetcher = Prefetcher(
            todo,
            prefetch=config.prefetch,
            retry=config.retry,
            max_disk=config.max_disk,
            keep_weights=config.keep_weights,
            verify_cached=config.verify_cached,
        )
        try:
            with prefetcher:
                for fetched in prefetcher:
                    process = lambda fetched=fetched: process_checkpoint(fetched, context, prefetcher, out)  # noqa: E731
                    outcome = process() if self.around is None else self.around(fetched, process)
                    summary.record(fetched.ref, outcome, progress)
        except KeyboardInterrupt:  # Ctrl-C may land between a file's rename and its count: the disk says
            summary.scored = sum(context.is_done(ref, out) for ref in context.taken)
            raise
        summary.peak_disk = prefetcher.budget.peak


def process_checkpoint(fetched: Fetched, context: ScanContext, prefetcher: Prefetcher, out: Path) -> tuple[str, str]:
    """Claim one fetched checkpoint, score it, or record why not; then let go of its files.

    Returns ("scored", ""), ("done", "") when another scan into the folder finished it meanwhile,
    ("elsewhere", reason) when another scan is scoring it now (see :func:`claim`), or (one of
    "failed", "skipped", "known-missing"; the reason): each kind an :class:`Outcome`. Raises
    :class:`HubUnreachableError` after recording it: every other download would fail alike.
    """
    ref = fetched.ref
    try:
        with claim(out, ref.suite.name, ref.run.name, ref.step) as claimed:
            if not claimed:
                return Outcome.ELSEWHERE, "another scan into the folder is scoring it"
            if context.is_done(ref, out):
                return Outcome.DONE, ""
            context.taken.append(ref)
            return _score_or_record(fetched, context, out)
    finally:
        prefetcher.release(fetched)


def _score_or_record(fetched: Fetched, context: ScanContext, out: Path) -> tuple[str, str]:
    ref = fetched.ref
    try:
        if fetched.error is not None:
            raise fetched.error
        context.score_files(ref, fetched.files, out)
        return Outcome.SCORED, ""
    except (CheckpointError, UnsupportedArchitectureError) as error:
        kind, reason = Outcome.FAILED, str(error)
        if isinstance(error, CheckpointUnavailableError):
            known = ref.missing_upstream
            kind = Outcome.SKIPPED if known is None else Outcome.KNOWN_MISSING
            reason = reason if known is None else f"{reason} ({known.describe()})"
        write_failure(out, identity(ref, _revision_or_step(ref)), kind=kind, reason=reason)
        if isinstance(error, HubUnreachableError):
            raise
        return kind, reason


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
    return ref.repo, ref.revision


def refuse_another_suite(folder: ResultsFolder, refs: list[CheckpointRef]) -> None:
    """The folder's rows never count the same checkpoints twice, nor a run's tokens two ways:
    refuse, before anything is scored, a scan of checkpoints the folder holds under another suite
    (a toy seed's folder scanned again as a local folder; pythia-160m's run inside
    pythia-160m-seeds), or of a run whose rows count other tokens per step (a local folder scanned
    once with --tokens-per-step and once without). One read of the folder answers both."""
    out = folder.path
    held = sql.distinct(folder, ["suite", "run", "repo", "step", "tokens"])
    suite_of = {repo: suite for suite, _, repo, _, _ in held}
    for ref in refs:
        if suite_of.get(ref.repo, ref.suite.name) != ref.suite.name:
            other = suite_of[ref.repo]
            raise ConfigError(
                f"{out} already holds the checkpoints of {ref.repo} as suite {other}: scanned as "
                f"{ref.suite.name} they would count twice; scan them as {other}, leave seed {ref.run.seed} out, "
                f"or scan into another {parameter('out')}"
            )
    planned = {(ref.suite.name, ref.run.name): ref for ref in refs}
    for suite, run, _, step, tokens in held:
        ref = planned.get((suite, run))
        if ref is None or step <= 0:
            continue
        wanted = ref.suite.tokens_of(ref.run, step)
        if tokens != wanted and ref.suite.source == "local":
            per_step = parameter("tokens_per_step")
            counted = f"{tokens // step:,} tokens per step" if tokens else f"no token count (no {per_step})"
            fix = f"{per_step} {tokens // step}" if tokens else f"no {per_step}"
            raise ConfigError(
                f"{out} holds {suite} {run} with {counted} (step {step}: {tokens:,} tokens), this scan counts "
                f"{ref.suite.tokens_per_step:,} a step: scan with {fix}, or into another {parameter('out')}"
            )
        if tokens != wanted:
            raise ConfigError(
                f"{out} holds {suite} {run} step {step} at {tokens:,} tokens, the catalog counts {wanted:,} now "
                f"(another inductscan's catalog): scan into another {parameter('out')}"
            )


def refuse_mixed_architectures(refs: list[CheckpointRef]) -> None:
    """One run, one architecture: a local run whose checkpoint folders change it (GPT-2 checkpoints,
    then GPT-NeoX ones; a head count that changes at one step) would be scored with the probe of
    its first and its rows read as one curve. Refused before anything is scored, naming the step
    and what changes. Every checkpoint folder of each planned local run is read (its config.json
    only); one that cannot be read is left to its own scan, which records why."""
    runs = {(ref.suite.name, ref.run.name): ref for ref in refs if ref.suite.source == "local"}
    for ref in runs.values():
        first: tuple[int, object] | None = None
        for step in ref.suite.steps_of(ref.run):
            try:
                arch = read_architecture(fetch_config(CheckpointRef(ref.suite, ref.run, step)))
            except (CheckpointError, UnsupportedArchitectureError):
                continue
            if first is None:
                first = (step, arch)
            elif changes := architecture.changes(first[1], arch):
                shown = "; ".join(changes[:4]) + (f"; {len(changes) - 4} more" if len(changes) > 4 else "")
                raise ConfigError(
                    f"the checkpoints of {ref.run.repo} change architecture at step {step} (from step {first[0]}: "
                    f"{shown}): one run's checkpoints share one; move the checkpoints of each architecture "
                    "into a folder of their own"
                )


def _revision_or_step(ref: CheckpointRef) -> str:
    try:
        return ref.revision
    except (UnknownRunError, CheckpointUnavailableError):  # a local step folder gone; a step its listing lacks
        return str(ref.step)
