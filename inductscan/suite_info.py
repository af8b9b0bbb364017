"""What ``inductscan suites`` prints: the catalog in one line per suite, and one suite in full (its
runs, how its branches are named, its token schedule, known gaps, the sources of its numbers).

Nothing here asks the Hub: a listed suite's runs and steps come from a listing a results folder
keeps (``results``), else the lines say where they will come from.
"""

from __future__ import annotations

import os
from pathlib import Path

from inductscan import listing
from inductscan.entries import Suite
from inductscan.errors import BranchListingError
from inductscan.grammar import BranchPattern
from inductscan.results.layout import require_results_folder
from inductscan.suites import CATALOG, TOY_NAME, get_suite, toy_home


def catalog_lines() -> list[str]:
    """One line per catalogued suite: runs and checkpoints (a listed suite's come from its listing)."""
    lines = []
    for suite in CATALOG.values():
        if not suite.listed:
            count = f"{len(suite.runs):2} run(s) x {len(suite.steps):3} steps"
        else:
            known = f", ~{suite.checkpoints}" if suite.checkpoints else ""
            count = f"{len(suite.runs):2} run(s), steps listed{known}"
        lines.append(f"{suite.name:26} {count:30} {suite.description}")
    lines.append(f"{TOY_NAME:26} built by `inductscan toy-suite` (in {toy_home()})")
    lines.append(f"{'FOLDER':26} any folder of checkpoint-N/, stepN/ or step_N/ Hugging Face checkpoints")
    return lines


def suite_lines(name: str, results: str | os.PathLike | None = None) -> list[str]:
    """One suite in full. With ``results``, a listed suite's runs and steps are those of the listing
    that folder keeps (none kept: the lines say so)."""
    suite = get_suite(name)
    if results is not None:
        require_results_folder(results)
    lines = [f"{suite.name}: {suite.description}"]
    if suite.family or suite.model_type:
        lines.append(f"  family: {suite.family or '-'}; config model_type: {suite.model_type or 'any'}")
    lines += _schedule(suite) + _revisions(suite)
    shown = suite
    if suite.listed and results is None:
        lines.append(_where_listed(suite))
    elif suite.listed:
        try:
            shown = listing.resolve(suite, Path(results), seeds=None, ask_hub=False)
        except BranchListingError as error:
            lines.append(f"  listing: none usable in {results}: {error}")
    lines.append("  runs:")
    for run in shown.runs:
        line = f"    seed {run.seed:>5}  {run.name}  {run.repo}"
        steps = shown.steps_of(run)
        if run.listed:
            first, last = shown.tokens_of(run, steps[0]), shown.tokens_of(run, steps[-1])
            line += f": {len(steps)} steps ({steps[0]} .. {steps[-1]}), tokens {first:,} .. {last:,}"
        lines.append(line)
        lines += [f"      step {step}: {repo}" for step, repo in run.repos]
    lines += [f"  known gap: {gap}" for gap in suite.gaps]
    lines += [f"  source: {fact}" for fact in suite.facts]
    lines += [f"  note: {note}" for note in shown.notes]
    lines += [f"  not a checkpoint (names no step): {path}" for path in suite.ignored]
    return lines


def _schedule(suite: Suite) -> list[str]:
    steps = suite.steps
    lines = []
    if not suite.listed:
        lines.append(f"  steps: {len(steps)} ({steps[0]} .. {steps[-1]})" if steps else "  steps: none")
    lines.append(
        f"  tokens per step: {suite.tokens_per_step:,}" + (f" ({suite.token_source})" if suite.token_source else "")
    )
    if suite.step_offset:
        lines.append(f"  tokens at step s: (s + {suite.step_offset}) x {suite.tokens_per_step:,}")
    if suite.total_tokens:
        lines.append(f"  total training tokens per run: {suite.total_tokens:,}")
    token_range = f"[{suite.token_range[0]}, {suite.token_range[1]})" if suite.token_range else "every non-special id"
    bos = ("none" if suite.bos_token_id is None else suite.bos_token_id) if suite.token_range else "the config's"
    lines.append(
        f"  probe: {suite.probe.length} tokens x {suite.probe.repeats}, batch {suite.probe.batch}, "
        f"tokens {token_range}, BOS {bos}"
    )
    return lines


def _revisions(suite: Suite) -> list[str]:
    if suite.source != "hub":
        return ["  revision: local folders"]
    if not suite.listed:
        extra = "".join(f"; step {step}: {branch}" for step, branch in suite.revisions)
        repos = " (a repo per checkpoint)" if any(run.repos for run in suite.runs) else ""
        return [f"  revision: {suite.revision}{extra}{repos}"]
    lines = ["  branches (listed from the Hub, read with the grammar, first pattern that matches):"]
    lines += [f"    {_pattern(suite, pattern)}" for pattern in suite.grammar.patterns]
    return lines


def _pattern(suite: Suite, pattern: BranchPattern) -> str:
    run = pattern.run or "the repo's run"
    seed = f", seed {{{pattern.seed}}}" if isinstance(pattern.seed, str) else ""
    after = (
        f", tokens continuing from {pattern.continues}'s last listed step"
        if pattern.continues
        else f", tokens = step x {suite.tokens_per_step:,}"
    )
    return f"{pattern.template}  ->  {run}{seed}{after}"


def _where_listed(suite: Suite) -> str:
    return (
        "  listing: read from the Hub when a scan or status plans the suite, kept in OUT/listings/ "
        f"(`inductscan suites {suite.name} --results OUT` shows the runs and steps kept there)"
    )
