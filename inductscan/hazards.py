"""Known faults of the public checkpoint suites, read from the table this package ships.

``inductscan/known_checkpoint_hazards.csv`` lists, per Hub repo and revision (shell-style
wildcards allowed), what is known to be wrong upstream:

- ``missing``: the branch does not exist (a few Pythia seed runs lack a step). A scan still asks
  the Hub for it, and if it is absent records it as *known missing*, which is not a failure;
  ``inductscan status`` does not wait for it. A listed suite's step that its repo's branch listing
  lacks is known missing the same way, its ``source`` the listing (:mod:`inductscan.listing`).
- ``wrong_weights``: the branch serves another step's weights (pythia-2.8b, pythia-12b).
  :func:`inductscan.load_results` flags the rows in its ``hazard`` column: every row of a listed
  revision, and for a wildcard entry the rows whose weights another step of the run serves too
  (``same_weights_as``).
- ``moving_ref``, ``extra_files``: facts the fetching code already respects (a pinned revision; only
  ``config.json`` and the weights fetched); listed for the reader.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import cache
from importlib.resources import files

TABLE = "known_checkpoint_hazards.csv"
KINDS = ("missing", "wrong_weights", "moving_ref", "extra_files")


@dataclass(frozen=True)
class Hazard:
    repo: str  # a Hub repo id, or a pattern such as stanford-crfm/*
    revision: str  # a branch name, or a pattern such as checkpoint-* or *
    kind: str  # one of KINDS
    detail: str
    source: str = TABLE  # where it is recorded: the packaged table, or a repo's branch listing

    def matches(self, repo: str, revision: str) -> bool:
        return fnmatchcase(repo, self.repo) and fnmatchcase(revision, self.revision)

    @property
    def exact(self) -> bool:
        """Names one revision (no wildcard)."""
        return not any(mark in self.revision for mark in "*?[")

    def describe(self) -> str:
        return f"{self.kind.replace('_', ' ')}: {self.detail} ({self.source or TABLE})"


@cache
def known_hazards() -> tuple[Hazard, ...]:
    """Every row of the packaged table."""
    text = files("inductscan").joinpath(TABLE).read_text(encoding="utf-8")
    rows = csv.DictReader(io.StringIO(text))  # columns: repo, revision, hazard, detail
    return tuple(Hazard(row["repo"], row["revision"], row["hazard"], row["detail"]) for row in rows)


def hazards_of(repo: str, revision: str, kind: str) -> list[Hazard]:
    """The hazards of ``kind`` listed for a repo at a revision."""
    return [hazard for hazard in known_hazards() if hazard.kind == kind and hazard.matches(repo, revision)]


def known_missing(repo: str, revision: str) -> Hazard | None:
    """The table's entry if this branch is known to be missing upstream, else None."""
    found = hazards_of(repo, revision, "missing")
    return found[0] if found else None
