"""What of a planned scan a results folder holds: done, failed, skipped, known missing upstream,
or missing; planned from a suite, or from the runs the folder holds."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from inductscan import hazards, listing
from inductscan.checkpoints import CheckpointRef
from inductscan.errors import ConfigError, OutputError, UnknownSuiteError, parameter
from inductscan.plan import PlanArguments, plan, plan_scan
from inductscan.results.folder import ResultsFolder, Scored
from inductscan.results.layout import TABLES, Damaged, require_results_folder, safe
from inductscan.results.read import recorded_checkpoints
from inductscan.results.records import load_failures
from inductscan.suites import CATALOG, Run, Suite, local_suite
from inductscan.vocabulary import Outcome


@dataclass
class RunStatus:
    name: str
    seed: int | None  # None: unknown, every file of the run is damaged (see damaged_runs)
    planned: int = 0
    done: int = 0
    failed: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    known_missing: list[int] = field(default_factory=list)  # listed as missing upstream, not done
    missing: list[int] = field(default_factory=list)
    damaged: list[int] = field(default_factory=list)  # scored, in a file that cannot be read

    def counts(self) -> dict[str, int]:
        return {
            "planned": self.planned,
            "done": self.done,
            "damaged": len(self.damaged),
            "failed": len(self.failed),
            "skipped": len(self.skipped),
            "missing": len(self.missing),
            "known missing upstream": len(self.known_missing),
        }


def _counted(counts: dict[str, int]) -> str:
    shown = {key: value for key, value in counts.items() if value or key not in ("known missing upstream", "damaged")}
    return ", ".join(f"{value} {key}" for key, value in shown.items())


@dataclass
class StatusReport:
    """What of a plan a results folder holds, run by run."""

    runs: list[RunStatus]
    notes: list[str] = field(default_factory=list)  # what the suites' branch listings showed
    damaged: list[Damaged] = field(default_factory=list)  # the folder's files that cannot be read

    @property
    def complete(self) -> bool:
        """Every planned checkpoint is done, or listed as missing upstream; no file is damaged."""
        return not self.damaged and all(run.done + len(run.known_missing) == run.planned for run in self.runs)

    def lines(self, *, list_steps: bool = False) -> list[str]:
        lines = []
        for run in self.runs:
            seed = "unknown: its files are damaged" if run.seed is None else run.seed
            lines.append(f"{run.name} (seed {seed}): {_counted(run.counts())}")
            kinds = (
                ("damaged", run.damaged),
                ("failed", run.failed),
                ("skipped", run.skipped),
                ("known missing upstream", run.known_missing),
                ("missing", run.missing),
            )
            for kind, steps in kinds:
                if steps:
                    shown = steps if list_steps else steps[:10]
                    more = "" if len(shown) == len(steps) else f", ... ({len(steps) - len(shown)} more; --list)"
                    lines.append(f"  {kind} steps: {', '.join(map(str, shown))}{more}")
        totals = [run.counts() for run in self.runs]
        if totals:
            lines.append(_counted({key: sum(counts[key] for counts in totals) for key in totals[0]}))
        if any(run.known_missing for run in self.runs):
            lines.append(
                f"known missing upstream: listed in {hazards.TABLE} or absent from the branch listing; not waited for"
            )
        lines += [f"note: {note}" for note in self.notes]
        lines += [f"damaged: {damaged.line()}" for damaged in self.damaged]
        return lines


def damaged_files(folder: ResultsFolder) -> list[Damaged]:
    """The files of every table of the folder that cannot be read: a checkpoint whose token losses
    or ICL curve cannot be read is not done, as one whose scores cannot (a scan scores it again)."""
    return [problem for table in TABLES for problem in folder.damaged(table)]


def scan_status(refs: list[CheckpointRef], out: ResultsFolder | Path) -> StatusReport:
    """Done (scores, compacted or not); damaged (a file of any table holding it cannot be read);
    listed as missing upstream; failed or skipped (a failure record and no scores); else missing."""
    folder = ResultsFolder.of(out)
    out = folder.path
    if not out.is_dir():
        raise ConfigError(f"no results folder at {out}")
    failures = load_failures(out)
    kinds = {(row.suite, row.run, int(row.step)): row.kind for row in failures.itertuples()}
    runs: dict[tuple[str, str], RunStatus] = {}
    scored = Scored(folder)
    damaged = damaged_files(folder)
    steps: dict[tuple[str, str], set[int]] = {}
    for problem in damaged:
        steps.setdefault(problem.run_folder, set()).update(problem.steps or ())
    unreadable = Scored(None, steps=steps)
    for ref in refs:
        run = runs.setdefault((ref.suite.name, ref.run.name), RunStatus(ref.run.name, ref.run.seed))
        run.planned += 1
        if (ref.suite.name, ref.run.name, ref.step) in unreadable:
            run.damaged.append(ref.step)
        elif (ref.suite.name, ref.run.name, ref.step) in scored:
            run.done += 1
        elif ref.missing_upstream is not None:
            run.known_missing.append(ref.step)
        else:
            kind = kinds.get((ref.suite.name, ref.run.name, ref.step))
            {Outcome.FAILED: run.failed, Outcome.SKIPPED: run.skipped}.get(kind, run.missing).append(ref.step)
    notes = list(dict.fromkeys(note for ref in refs for note in ref.suite.notes))
    return StatusReport(list(runs.values()), notes, damaged)


def recorded_suites(results: ResultsFolder | Path) -> list[Suite]:
    """The suites a results folder holds checkpoints of, with the runs it holds, to plan a status.

    A catalogued suite keeps its own steps (a listed one's, from the listing the folder keeps); a
    local run's steps are those its folder (the ``repo`` column) holds now, or, if the folder is
    gone, those recorded.
    """
    folder = ResultsFolder.of(results)
    out = folder.path
    recorded = recorded_checkpoints(folder, skip_damaged=True)  # their checkpoints: counted as damaged
    suites = []
    for name, rows in recorded.groupby("suite", sort=True):
        runs = rows.groupby(["run", "seed", "repo"], sort=True)["step"].agg(lambda steps: tuple(sorted(steps)))
        if name in CATALOG:
            seen = {run for run, _, _ in runs.index}
            seeds = sorted({int(seed) for _, seed, _ in runs.index})
            catalogued = listing.resolve(CATALOG[name], out, seeds=seeds)
            suites.append(replace(catalogued, runs=tuple(run for run in catalogued.runs if run.name in seen)))
            continue
        local = tuple(
            Run(run, int(seed), repo, _present_steps(Path(repo)) or steps) for (run, seed, repo), steps in runs.items()
        )
        steps = tuple(sorted({step for run in local for step in run.steps}))
        suites.append(Suite(name, f"local runs recorded in {out}", local, steps, tokens_per_step=0, source="local"))
    return suites


def _present_steps(folder: Path) -> tuple[int, ...]:
    try:
        return local_suite(folder).runs[0].steps if folder.is_dir() else ()
    except UnknownSuiteError:
        return ()


def status(
    results: str | Path,
    suite: str | None = None,
    *,
    arguments: PlanArguments | None = None,
    **chosen,
) -> StatusReport:
    """What of a plan ``results`` holds. With ``suite`` (a catalogued name, ``toy`` or a folder),
    the plan is that suite's; without, every step of each run the folder holds (see
    :func:`recorded_suites`). ``arguments`` (or its fields by name, ``seeds=[1, 2]``:
    :class:`~inductscan.plan.PlanArguments`) narrow the plan as for a scan."""
    arguments = PlanArguments.of(arguments, **chosen)
    if suite is not None:
        require_results_folder(results)
        return scan_status(plan_scan(suite, arguments, results=results), Path(results))
    if arguments.tokens_per_step is not None:
        raise ConfigError(f"{parameter('tokens_per_step')} needs {parameter('suite')}")
    require_results_folder(results)
    folder = ResultsFolder(results)  # listed once for the plan and the status
    suites = recorded_suites(folder)
    seeds = [arguments.seeds] if isinstance(arguments.seeds, int) else arguments.seeds
    refs = []
    for recorded in suites:
        runs = [run for run in recorded.runs if seeds is None or run.seed in seeds]
        if runs:
            refs += plan(replace(recorded, runs=tuple(runs)), **(arguments.steps_of_runs() | {"seeds": None}))
    damaged = damaged_files(folder)
    unread = damaged_runs(damaged, suites, arguments)
    if not refs and not unread:
        if damaged and not suites:  # every scored checkpoint is in a damaged file: those files are the status
            return StatusReport([], damaged=damaged)
        if not suites:
            raise OutputError(f"{results} holds no scored or recorded checkpoint; name the scan's {parameter('suite')}")
        held = sorted({run.seed for recorded in suites for run in recorded.runs})
        raise ConfigError(
            "no checkpoint of the results folder matches the chosen seeds and steps "
            f"(seeds held: {', '.join(map(str, held))})"
        )
    report = scan_status(arguments.shard_of(refs), folder)
    report.runs += unread
    return report


def damaged_runs(damaged: list[Damaged], suites: list[Suite], arguments: PlanArguments) -> list[RunStatus]:
    """The runs that no readable row plans, every file of theirs being damaged: each still has its
    status, the steps its damaged files held (those the seeds, steps and step range chosen keep;
    ``every`` and ``shard`` thin a plan, and these steps are no plan) planned and damaged. The seed
    of a catalogued suite's run is the catalog's; of another, unknown (the files that recorded it
    cannot be read)."""
    planned = {(safe(suite.name), safe(run.name)) for suite in suites for run in suite.runs}
    held: dict[tuple[str, str], set[int]] = {}
    for problem in damaged:
        if problem.run_folder not in planned:
            held.setdefault(problem.run_folder, set()).update(problem.steps or ())
    seeds = [arguments.seeds] if isinstance(arguments.seeds, int) else arguments.seeds
    chosen = [arguments.steps] if isinstance(arguments.steps, int) else arguments.steps
    low, high = arguments.step_range or (None, None)
    runs = []
    for (suite, run), steps in sorted(held.items()):
        seed = _catalogued_seed(suite, run)
        if seeds is not None and seed not in seeds:
            continue
        kept = sorted(
            step
            for step in steps
            if (chosen is None or step in chosen) and (low is None or low <= step) and (high is None or step <= high)
        )
        if kept:
            runs.append(RunStatus(run, seed, planned=len(kept), damaged=kept))
    return runs


def _catalogued_seed(suite: str, run: str) -> int | None:
    """The seed of a catalogued suite's run, by their folders' names; None for any other run."""
    runs = CATALOG[suite].runs if suite in CATALOG else ()
    return next((known.seed for known in runs if safe(known.name) == run), None)
