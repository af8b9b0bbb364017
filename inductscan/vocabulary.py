"""Words the results speak, spelled once: the keys of a run, the columns derived as a table is read,
and the kinds of a checkpoint's outcome.

Imports nothing of the package: every module that reads or writes results can take its words from
here (the scores themselves are declared in :mod:`inductscan.metrics`).
"""

from __future__ import annotations

import enum

# A run of a folder: a folder may hold several suites whose seed numbers coincide, and a run's name
# is unique within its suite (a local run's name carries a hash of its folder's path).
RUN_KEYS = ["suite", "run", "seed"]

# Columns computed from the stored ones as a table is read (inductscan/results/read.py), never
# stored: each with the stored columns it is computed from.
DERIVED = {"same_weights_as": ["weights_sha256"], "hazard": ["repo", "revision", "weights_sha256"]}


class Outcome(str, enum.Enum):
    """What became of one planned checkpoint of a scan. The values are the words written in the
    failure records (``failures/SUITE/RUN/step-N.json``, key ``kind``) and in the scan's lines, so
    an outcome compares equal to its word (``Outcome.FAILED == "failed"``)."""

    SCORED = "scored"  # its rows are written
    DONE = "done"  # another scan into the folder finished it meanwhile
    ELSEWHERE = "elsewhere"  # another scan into the folder is scoring it now
    FAILED = "failed"  # it could not be scored (a recorded reason)
    SKIPPED = "skipped"  # its files are not available
    KNOWN_MISSING = "known-missing"  # listed as missing upstream

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)
