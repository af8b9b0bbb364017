"""The records beside the tables: why a checkpoint was not scored (``failures/SUITE/RUN/step-N.json``)
and which head scores a run leaves empty (``notes/SUITE/RUN.json``)."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from inductscan.errors import DamagedFileError
from inductscan.results.layout import atomic, failure_path, note_path, require_results_folder
from inductscan.vocabulary import Outcome

FAILURE_COLUMNS = ["suite", "repo", "run", "revision", "seed", "step", "tokens", "kind", "reason", "at"]


def write_failure(out: str | os.PathLike, identity: dict, *, kind: Outcome | str, reason: str) -> Path:
    """Record why a checkpoint was not scored (kind: failed, skipped or known-missing, an :class:`Outcome`)."""
    record = {**identity, "kind": Outcome(kind).value, "reason": reason, "at": datetime.now(timezone.utc).isoformat()}
    path = failure_path(out, identity["suite"], identity["run"], identity["step"])
    with atomic(path) as temporary:
        temporary.write_text(json.dumps(record, indent=1))
    return path


def load_failures(path: str | os.PathLike) -> pd.DataFrame:
    """Every recorded failure and skip of a results folder."""
    require_results_folder(path)
    records = [_failure_record(file) for file in sorted(Path(path).glob("failures/*/*/step-*.json"))]
    return pd.DataFrame.from_records(records, columns=FAILURE_COLUMNS)


def _failure_record(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DamagedFileError(
            f"{path} is damaged (a failure record that cannot be read: {error}); delete it, and a scan "
            "tries its checkpoint again"
        ) from error


def write_run_note(out: str | os.PathLike, identity: dict, unscored: dict[str, str]) -> None:
    """Record, once per run, which head scores its rows leave empty and why (a run scanned through
    transformers' own model has no weight-based scores): ``notes/SUITE/RUN.json``. Not a failure."""
    path = note_path(out, identity["suite"], identity["run"])
    if path.is_file() and json.loads(path.read_text()).get("unscored") == unscored:
        return
    record = {name: identity[name] for name in ("suite", "run", "repo")} | {"unscored": unscored}
    with atomic(path) as temporary:
        temporary.write_text(json.dumps(record, indent=1))


def run_notes(
    out: str | os.PathLike, runs: list[tuple[str, str]] | None = None
) -> dict[tuple[str, str], dict[str, str]]:
    """(suite, run) -> {score: why it is empty}, for the runs given (None: every run with a note)."""
    if runs is not None:  # only their notes: no other folder listed
        paths = [note_path(out, suite, run) for suite, run in runs]
        records = [json.loads(path.read_text()) for path in paths if path.is_file()]
    else:
        records = [json.loads(path.read_text()) for path in sorted(Path(out).glob("notes/*/*.json"))]
    notes = {(record["suite"], record["run"]): record["unscored"] for record in records}
    return notes if runs is None else {run: notes[run] for run in runs if run in notes}
