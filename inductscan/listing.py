"""A listed suite's runs, read from its repos' branches.

Where a suite's branch names are not a function of the step (``inductscan.entries.Suite.grammar``),
the plan lists each repo's branches once through the Hub (``huggingface_hub``'s refs endpoint) and
parses them with the suite's grammar: every branch a pattern reads becomes a step of a run (a
stage-2 run's tokens continuing from the run it branches from), ``main`` is the repo's default
branch and is left alone, and anything else is reported. The listing is kept in the results folder
(``OUT/listings/OWNER_REPO.json``, the repo id inside), so that a re-plan, ``inductscan status``,
every shard of a job array and an offline re-run (``HF_HUB_OFFLINE=1``) plan the same checkpoints
without asking the Hub again; delete the file to list the repo afresh.

What a listing shows that the catalog did not expect is a note on the resolved suite, printed by
``scan``, ``status`` and ``suites NAME --results``, never silently settled: a branch whose name
states other tokens than the schedule (rows carry the schedule's exact count), two branches
naming one step, branches no pattern reads.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from inductscan import hub
from inductscan.entries import Run, Suite
from inductscan.errors import BranchListingError, OutputError
from inductscan.grammar import ParsedBranch, tokens_agree
from inductscan.results.layout import listing_path, unwritable_reason
from inductscan.results.listings import claim_listing, read_listing

DEFAULT_BRANCH = "main"
SHOWN = 5  # branch names quoted in a note or an error


@dataclass(frozen=True)
class Listing:
    """A repo's branches, and where they were read: the results folder's file, or the Hub."""

    repo: str
    branches: tuple[str, ...]
    where: str
    fresh: bool  # just listed from the Hub, not yet kept


def listing_of(repo: str, results: Path | None, *, ask_hub: bool = True) -> Listing | None:
    """The repo's branches: the results folder's kept listing if it has one, else the Hub's (None
    without ``ask_hub``).

    Offline without a kept listing, and a kept listing of another repo, are one
    :class:`BranchListingError` line each, naming what to do.
    """
    path = None
    if results is not None:
        path = listing_path(results, repo)
        record = read_listing(results, repo)
        if record is not None:
            if record.get("repo") != repo:
                raise BranchListingError(
                    f"{path} lists the branches of {record.get('repo')!r}, not of {repo}: delete it, and the next "
                    f"plan lists {repo} again"
                )
            return Listing(repo, tuple(branch["name"] for branch in record["branches"]), str(path), fresh=False)
    if not ask_hub:
        return None
    if hub.offline():
        kept = f"kept in {path}" if path is not None else "kept (no results folder was given)"
        raise BranchListingError(
            f"HF_HUB_OFFLINE is set and no listing of {repo}'s branches is {kept}: run the same command once "
            "with the Hub reachable (it keeps the listing in the results folder), then offline"
        )
    return Listing(repo, tuple(name for name, _ in hub.list_branches(repo)), "the Hub's listing", fresh=True)


def keep(listing: Listing, results: Path) -> Listing:
    """Keep a fresh listing in the results folder (the first writer wins); the listing it holds."""
    record = {
        "repo": listing.repo,
        "listed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "branches": [{"name": name} for name in listing.branches],
    }
    path = listing_path(results, listing.repo)
    try:
        kept = claim_listing(results, listing.repo, record)
    except OSError as error:
        raise OutputError(unwritable_reason(path, error)) from error
    return Listing(listing.repo, tuple(branch["name"] for branch in kept["branches"]), str(path), fresh=False)


def resolve(
    suite: Suite, results: Path | None = None, *, seeds: list[int] | None = None, ask_hub: bool = True
) -> Suite:
    """``suite`` with the runs its repos' branches name (each with its steps, branches and token
    offset), and ``notes`` on what the listings show. Only the repos of the chosen ``seeds`` are
    listed (all, if a seed is not a catalogued one: a stage-2 run appears only in a listing).
    Without ``ask_hub``, a repo whose listing ``results`` does not keep keeps its catalogued run,
    with a note. A suite that is not listed is returned as it is."""
    if not suite.listed:
        return suite
    catalogued = {run.seed for run in suite.runs}
    every = seeds is None or any(seed not in catalogued for seed in seeds)
    repos = list(dict.fromkeys(run.repo for run in suite.runs if every or run.seed in seeds))
    runs, notes = [], []
    for repo in repos:
        found, noted = _runs_of(suite, repo, results, ask_hub)
        runs += found
        notes += noted
    chosen = {run.repo for run in runs}
    runs += [run for run in suite.runs if run.repo not in chosen]  # repos not listed keep their catalogued run
    seen: dict[int, str] = {}
    for run in runs:
        if seen.setdefault(run.seed, run.name) != run.name:
            raise BranchListingError(f"{suite.name}: runs {seen[run.seed]} and {run.name} both have seed {run.seed}")
    steps = tuple(sorted({step for run in runs for step in run.steps}))
    return replace(suite, runs=tuple(sorted(runs, key=lambda run: run.seed)), steps=steps, notes=tuple(notes))


def _runs_of(suite: Suite, repo: str, results: Path | None, ask_hub: bool) -> tuple[list[Run], list[str]]:
    """The runs one repo's branches name, and the notes on them. A fresh listing is kept in the
    results folder once its branches are known to be readable."""
    home = next(run for run in suite.runs if run.repo == repo)
    listing = listing_of(repo, results, ask_hub=ask_hub)
    if listing is None:
        return [], [f"{repo}: no listing kept in {results}; a scan or status there lists it"]
    parsed, notes = _read(suite, home, listing)
    if listing.fresh and results is not None:
        listing = keep(listing, results)  # another plan may have kept one first: plan from that one
        parsed, notes = _read(suite, home, listing)
    runs: dict[str, Run] = {}
    for name in sorted(parsed, key=lambda run: _continues(parsed[run]) is not None):  # runs branched from others last
        branches = parsed[name]
        offset = 0
        origin = _continues(branches)
        if origin is not None:
            if origin in runs:
                offset = suite.tokens_of(runs[origin], runs[origin].steps[-1])
            else:
                notes.append(f"{repo}: {name} continues {origin}, which lists no branch: its tokens start at 0")
        seed = home.seed if name == home.name else next(iter(branches.values())).seed
        steps = tuple(sorted(branches))
        revisions = tuple((step, branches[step].name) for step in steps)
        runs[name] = Run(name, seed, repo, steps=steps, revisions=revisions, token_offset=offset, listing=listing.where)
        notes += _disagreements(suite, runs[name], branches)
    return list(runs.values()), notes


def _read(suite: Suite, home: Run, listing: Listing) -> tuple[dict[str, dict[int, ParsedBranch]], list[str]]:
    """Each run's branches by step, as the grammar reads the listing, and notes on the rest."""
    parsed: dict[str, dict[int, ParsedBranch]] = {}
    notes, unread = [], []
    for name in listing.branches:
        branch = suite.grammar.parse(name)
        if branch is None:
            if name != DEFAULT_BRANCH:
                unread.append(name)
            continue
        steps = parsed.setdefault(branch.run or home.name, {})
        earlier = steps.setdefault(branch.step, branch)
        if earlier is not branch:
            kept = min(earlier, branch, key=lambda one: suite.grammar.patterns.index(one.pattern))
            steps[branch.step] = kept
            notes.append(
                f"{listing.repo}: {earlier.name} and {branch.name} both name step {branch.step}; {kept.name} is scanned"
            )
    if not parsed:
        raise BranchListingError(_nothing_read(listing, suite))
    if unread:
        shown = ", ".join(unread[:SHOWN]) + (f" and {len(unread) - SHOWN} more" if len(unread) > SHOWN else "")
        notes.append(
            f"{listing.repo}: {len(unread)} branch(es) that no pattern of {suite.name}'s grammar reads, "
            f"not planned: {shown}"
        )
    return parsed, notes


def _continues(branches: dict[int, ParsedBranch]) -> str | None:
    return next(iter(branches.values())).pattern.continues


def _disagreements(suite: Suite, run: Run, branches: dict[int, ParsedBranch]) -> list[str]:
    """A note for each branch whose name states a token count the schedule cannot round to."""
    notes = []
    for step, branch in sorted(branches.items()):
        since_start = suite.tokens_of(run, step) - run.token_offset  # a name counts its own stage's tokens
        if not tokens_agree(since_start, branch):
            unit = branch.pattern.token_unit
            notes.append(
                f"{run.repo}@{branch.name}: the name says {branch.named_tokens} x {unit:,} tokens, the schedule "
                f"{since_start:,} ({suite.tokens_per_step:,} a step): rows carry the schedule's count"
            )
    return notes


def _nothing_read(listing: Listing, suite: Suite) -> str:
    repo, grammar = listing.repo, suite.grammar.describe()
    if not listing.branches:
        return f"{repo} lists no branches ({listing.where}): {suite.name} reads its checkpoints from branches {grammar}"
    shown = ", ".join(listing.branches[:SHOWN])
    return (
        f"{repo} lists {len(listing.branches)} branch(es) ({listing.where}), none of them in {suite.name}'s grammar "
        f"{grammar}: {shown}"
    )
