"""The declarations of the users' scores a results folder has columns of (docs/custom_scores.md):
``OUT/custom_scores/NAME.json``, so that reading the folder needs none of the user's code."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from inductscan import metrics
from inductscan.errors import OutputError
from inductscan.results.layout import atomic, declaration_path


def declare_scores(out: str | os.PathLike, declared: list[metrics.Metric]) -> list[str]:
    """Record in the folder the declaration of each user's score that a scan computes
    (``OUT/custom_scores/NAME.json``), so that reading the folder needs none of the user's code.
    The latest scan's declaration is kept; each row records the version it was scored with.
    Returns the names declared for the first time (see :func:`withdraw_declarations`)."""
    new = []
    for metric in declared:
        path = declaration_path(out, metric.name)
        text = json.dumps(dataclasses.asdict(metric), indent=1)
        if path.is_file() and path.read_text() == text:
            continue
        if not path.is_file():
            new.append(metric.name)
        with atomic(path) as temporary:
            temporary.write_text(text)
    return new


def withdraw_declarations(out: str | os.PathLike, names: list[str]) -> None:
    """Remove the declarations of ``names``, first declared by a scan that then stopped before it
    scored a checkpoint: no row has their columns, which would otherwise show as empty columns of
    scores that never ran."""
    for name in names:
        declaration_path(out, name).unlink(missing_ok=True)


def recorded_scores(out: str | os.PathLike) -> list[metrics.Metric]:
    """The users' scores a results folder has columns of, by name (written by
    :func:`declare_scores`). A record that cannot be read is an :class:`OutputError` naming it."""
    found = []
    for path in sorted(declaration_path(Path(out), "*").parent.glob("*.json")):
        try:
            found.append(metrics.Metric(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError) as error:  # a bad level or direction: ConfigError, a ValueError
            raise OutputError(
                f"cannot read the score declaration {path}: {error}; restore it, or scan again with the score"
            ) from error
    return found


def learn_scores(out: str | os.PathLike) -> list[str]:
    """Make the users' scores a results folder records known (:mod:`inductscan.metrics`), unless this
    process registered one of the same name, so that phases, plots, queries and the report take
    their columns as they take the package's own, without the user's code; returns their names."""
    recorded = recorded_scores(out)
    for metric in recorded:
        metrics.add_metric(metric, replace=False)
    return [metric.name for metric in recorded]
