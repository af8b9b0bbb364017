"""What a catalog entry is: a :class:`Suite` of :class:`Run` s, frozen data.

A suite is a set of runs that share a step schedule, a way of naming revisions and a probe token
range. Its revisions follow from the step (``revision="checkpoint-{step}"``), or, where the names
carry more than the step, its ``grammar`` parses the branches the repo lists
(:mod:`inductscan.grammar`, :mod:`inductscan.listing`): then each run carries the branch of each
step it has. Tokens follow the suite's schedule: ``(step + step_offset) x tokens_per_step``, plus
the tokens a run had seen before its step 0 (a stage-2 run continues from the end of stage 1).
The catalog itself is in :mod:`inductscan.suites` and :mod:`inductscan.recent_suites`.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from functools import cached_property

from inductscan.errors import CheckpointUnavailableError, UnknownRunError
from inductscan.grammar import Grammar
from inductscan.probe import ProbeConfig


@dataclass(frozen=True)
class Run:
    """One training run: a Hub repo (or a local folder) and its seed.

    ``revisions``: a listed run's branch at each step it has (from the repo's listing, which
    ``listing`` names); ``repos``: the repo of each step, for a suite whose checkpoints are repos
    of their own (TinyLlama); ``token_offset``: tokens seen before the run's step 0.
    """

    name: str
    seed: int
    repo: str  # Hub repo id, or the run's folder for a local suite
    steps: tuple[int, ...] = ()  # a local or listed run's steps; else the suite's
    revisions: tuple[tuple[int, str], ...] = ()
    repos: tuple[tuple[int, str], ...] = ()
    token_offset: int = 0
    listing: str | None = None

    @cached_property
    def _revision_map(self) -> dict[int, str]:
        return dict(self.revisions)

    @property
    def listed(self) -> bool:
        return bool(self.revisions)

    def repo_of(self, step: int) -> str:
        return dict(self.repos).get(step, self.repo)

    def listed_revision(self, step: int) -> str:
        """The branch the listing names for ``step``; :class:`CheckpointUnavailableError` naming the
        branches nearby if the listing has none."""
        try:
            return self._revision_map[step]
        except KeyError:
            raise CheckpointUnavailableError(self.unlisted_reason(step)) from None

    def unlisted_reason(self, step: int) -> str:
        index = bisect.bisect_left(self.steps, step)
        nearby = [self._revision_map[near] for near in self.steps[max(0, index - 2) : index + 2]]
        where = f" ({self.listing})" if self.listing else ""
        return (
            f"{self.repo} lists no branch for {self.name} step {step}{where}; "
            f"the nearest: {', '.join(nearby) if nearby else 'none'}"
        )


@dataclass(frozen=True)
class Suite:
    """A catalogued (or local) suite. The fields after ``total_tokens`` describe the newer suites:
    ``grammar`` (branches listed and parsed, see above), ``step_offset`` (Amber's checkpoint N
    holds N + 1 chunks of data), ``revisions`` (branches the template does not name: Amber's last
    checkpoint is ``main``), ``token_source`` (where ``tokens_per_step`` comes from),
    ``model_type`` (the checkpoints' config.json ``model_type``, as the catalog knows it),
    ``facts`` and ``gaps`` (what ``inductscan suites NAME`` prints), ``checkpoints`` (a count the
    catalog knows, else None: the listing says) and ``notes`` (what a listing showed: names that
    disagree with the token schedule, branches no pattern reads)."""

    name: str
    description: str
    runs: tuple[Run, ...]
    steps: tuple[int, ...]
    tokens_per_step: int
    source: str = "hub"  # "hub" or "local"
    revision: str = "{step}"  # Hub branch of a step; a local run's step folder
    token_range: tuple[int, int] | None = None  # None: every id but the config's special ones
    bos_token_id: int | None = None  # used when token_range is catalogued
    probe: ProbeConfig = ProbeConfig()
    total_tokens: int | None = None  # tokens of a whole run's training, where known (catalogued suites)
    grammar: Grammar | None = None
    step_offset: int = 0
    revisions: tuple[tuple[int, str], ...] = ()
    token_source: str = ""
    model_type: str | None = None
    family: str = ""
    facts: tuple[str, ...] = ()
    gaps: tuple[str, ...] = ()
    checkpoints: int | None = None
    notes: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()  # a local suite's folders that look like checkpoints but name no step

    def run(self, seed: int) -> Run:
        for run in self.runs:
            if run.seed == seed:
                return run
        raise UnknownRunError(
            f"suite {self.name!r} has no seed {seed}; its seeds are {', '.join(map(str, sorted(set(self.seeds))))}"
        )

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(run.seed for run in self.runs)

    @property
    def listed(self) -> bool:
        """Its branches are listed from the Hub and parsed with its grammar."""
        return self.grammar is not None

    def steps_of(self, run: Run) -> tuple[int, ...]:
        return run.steps or self.steps

    def revision_of(self, step: int) -> str:
        return dict(self.revisions).get(step) or self.revision.format(step=step)

    def tokens_of(self, run: Run, step: int) -> int:
        """Tokens seen by ``run`` at ``step``: exact wherever the batch is known."""
        return run.token_offset + (step + self.step_offset) * self.tokens_per_step
