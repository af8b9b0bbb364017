"""The phase timing of one or more results folders, as ``inductscan phases`` shows it: the rows a
curve needs, read for a selection; :func:`inductscan.find_phase_changes` on them; and, asked for,
each level's fraction of the run's training.

    table = inductscan.phase_changes(["small/", "medium/"], metric="induction", x="fraction")
    table.timing    # one row per run (per head with per_head=True): find_phase_changes' columns
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from inductscan import phases
from inductscan.errors import ConfigError, parameter
from inductscan.metrics import DEFAULT_METRIC, get_metric
from inductscan.phase_view import readable
from inductscan.results import declarations
from inductscan.results.queries import best_rows, load_selection
from inductscan.timing_compare import AXES, add_fractions, load_several, run_folders


@dataclass(frozen=True)
class PhaseTable:
    """The timing (:func:`inductscan.find_phase_changes`' columns, and with ``x="fraction"`` each
    level's ``_fraction`` of training) and the rows it was timed on (empty: no row matched)."""

    timing: pd.DataFrame
    rows: pd.DataFrame
    metric: str
    per_head: bool
    x: str

    @property
    def empty(self) -> bool:
        return self.rows.empty

    def header(self) -> str:
        """What the table shows: the curve, the levels, and the axis (tokens seen, or the step
        where runs count no tokens)."""
        declared = get_metric(self.metric)
        if self.per_head:
            curve = f"each head's {self.metric}"
        else:
            curve = self.metric if declared.level == "checkpoint" else f"the best head's {self.metric}"
        change = "rise" if declared.direction == "rises" else "fall"
        counted = self.rows.groupby(level=["suite", "run", "seed"])["tokens"].max() > 0
        if counted.all():
            axis = "tokens seen (interpolated in log tokens)"
        elif not counted.any():
            axis = "the training step (interpolated in log steps; these runs count no tokens)"
        else:
            axis = "tokens seen (interpolated in log tokens), or the training step where a run counts no tokens"
        return (
            f"{curve}: onset / midpoint / end = 10% / 50% / 90% of the {change} from the early to the late "
            f"plateau; {axis} and the checkpoints that bracket them"
        )

    def readable(self) -> pd.DataFrame:
        """The timing as a person reads it (:func:`inductscan.phase_view.readable`), with the
        fractions of training in one column where they were asked for."""
        shown = readable(self.timing) if len(self.timing) else self.timing
        if self.x == "fraction" and len(self.timing):
            fractions = self.timing[[f"{level}_fraction" for level in phases.LEVELS]].to_numpy(dtype=float)
            shown["fraction of training"] = [
                " / ".join("-" if value != value else f"{value:.3g}" for value in row)
                for row in fractions  # NaN: -
            ]
        return shown


def learn_scores(results: Sequence[str | os.PathLike]) -> None:
    """The users' scores the folders record (docs/custom_scores.md), known before a metric is checked."""
    for path in results:
        declarations.learn_scores(path)


def refuse_total_tokens_without_fractions(total_tokens: int | None, x: str | None) -> None:
    if total_tokens is not None and x != "fraction":
        raise ConfigError(
            f"{parameter('total_tokens')} applies only with {parameter('x')} fraction "
            "(the fraction of training it divides by)"
        )


def phase_changes(
    results: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    metric: str = DEFAULT_METRIC,
    threshold: float | None = None,
    per_head: bool = False,
    changed_only: bool = False,
    x: str = "tokens",
    total_tokens: int | None = None,
    **chosen,
) -> PhaseTable:
    """When the phase change happens in the runs of ``results`` (a folder, or several read as one
    table: a checkpoint held by two is refused): onset, midpoint and end per run, or per head.

    ``chosen``: the selection (``suite``, ``run``, ``seed``, ``step_range``, as
    :func:`inductscan.query` takes them). ``metric``, ``threshold`` and ``per_head`` are
    :func:`inductscan.find_phase_changes`'; ``changed_only`` keeps the rows with a phase change;
    ``x="fraction"`` adds each level's share of the run's training (``total_tokens``: the total of
    runs whose training the catalog and manifests do not know).
    """
    folders = [results] if isinstance(results, (str, os.PathLike)) else list(results)
    learn_scores(folders)
    phases.timed_metric(metric, per_head)
    refuse_total_tokens_without_fractions(total_tokens, x)
    if x not in AXES:
        raise ConfigError(f"{parameter('x')} must be one of {', '.join(AXES)}, got {x!r}")
    folder = ["repo"] if x == "fraction" else []  # where a toy run's manifest records its training
    if per_head:
        read = functools.partial(load_selection, columns=["tokens", metric, *folder], **chosen)
    else:  # a run's curve is its best head's: one row per checkpoint is all it needs
        read = functools.partial(best_rows, metric=metric, columns=folder, **chosen)
    rows = load_several([Path(path) for path in folders], read)
    if rows.empty:
        return PhaseTable(pd.DataFrame(), rows, metric, per_head, x)
    timing = phases.find_phase_changes(rows, metric, threshold, per_head)
    if x == "fraction":
        timing = add_fractions(timing, total_tokens, folders=run_folders(rows))
    if changed_only:
        timing = timing[timing["phase_change"]]
    return PhaseTable(timing, rows, metric, per_head, x)
