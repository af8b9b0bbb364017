"""Phase-change timing of the runs of several results folders (or several suites of one), side
by side: in tokens seen, or as a fraction of each run's whole training.

A run's fraction is its onset, midpoint and end tokens over its total training tokens: from the
catalog for the public suites (:mod:`inductscan.suites`), from the suite's manifest for the toy
suite (``inductscan toy-suite`` records its training), else the ``total_tokens`` the caller gives
(a local run's results do not say how long its training was: its last scanned checkpoint need
not be its last step).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence

import pandas as pd

from inductscan.errors import ConfigError, NotHeldError, parameter
from inductscan.metrics import DEFAULT_METRIC
from inductscan.phases import LEVELS, find_phase_changes
from inductscan.results.queries import load_selection
from inductscan.results.settings import refuse_joined_settings
from inductscan.results.sql import not_held
from inductscan.suites import recorded_total_tokens
from inductscan.suites import total_tokens as catalogued_total
from inductscan.vocabulary import RUN_KEYS

AXES = ("tokens", "fraction")


def load_several(
    paths: Sequence[str | os.PathLike], read: Callable[[str | os.PathLike], pd.DataFrame] | None = None, **chosen
) -> pd.DataFrame:
    """The rows of several results folders (each selected as
    :func:`inductscan.results.queries.load_selection` does, or read by ``read(path)``, e.g.
    :func:`inductscan.results.queries.best_rows`), in one table. A
    checkpoint held by two of them is refused: which one's rows count would be a guess (delete one,
    or select apart with ``suite=``/``seed=``)."""
    if not paths:
        raise ConfigError("no results folder given")
    seen = set()
    for path in paths:  # the same folder twice would hold each of its checkpoints twice: say so plainly
        if os.path.realpath(path) in seen:
            raise ConfigError(f"{path} is given twice: give each results folder once")
        seen.add(os.path.realpath(path))
    frames, origin, lacking = [], {}, []
    for path in paths:
        try:
            frame = read(path) if read is not None else load_selection(path, **chosen)
        except NotHeldError as error:  # a suite or run of the selection that this folder does not hold
            lacking.append(error)
            continue
        checkpoints = frame.index.droplevel(["layer", "head"]).unique()
        for checkpoint in checkpoints:
            if checkpoint in origin:
                suite, run, seed, step = checkpoint
                raise ConfigError(
                    f"{origin[checkpoint]} and {path} both hold {suite} {run} (seed {seed}) step {step}: "
                    f"give each checkpoint once (another folder, or {parameter('suite')}/{parameter('seed')} to select)"
                )
            origin[checkpoint] = path
        frames.append(frame)
    if not frames:  # no folder holds it: a typo, named with every folder's names
        kind, wanted = lacking[0].kind, lacking[0].wanted
        held = sorted({name for error in lacking for name in error.held})
        where = " or ".join(map(str, paths))
        raise NotHeldError(not_held(kind, wanted, held, where), kind=kind, wanted=wanted, held=held)
    if len(frames) > 1:
        refuse_joined_settings(paths, frames)
    return pd.concat(frames).sort_index() if len(frames) > 1 else frames[0]


def totals(suites: Sequence[str], total_tokens: int | None = None) -> dict[str, int]:
    """Each suite's total training tokens: the catalog's, else ``total_tokens``; ConfigError naming
    the suites that have neither."""
    if total_tokens is not None and total_tokens <= 0:
        raise ConfigError(f"{parameter('total_tokens')} must be > 0, got {total_tokens}")
    found = {suite: catalogued_total(suite) or total_tokens for suite in suites}
    _refuse_unknown(found)
    return found


def run_totals(
    runs: pd.DataFrame, total_tokens: int | None = None, folders: Mapping[tuple, str] | None = None
) -> pd.Series:
    """Each run's total training tokens (``runs``: a frame with the run keys), indexed like ``runs``:
    its suite's from the catalog, else what its folder's manifest records (the toy suite's, see
    :func:`inductscan.suites.recorded_total_tokens`; ``folders``: each run's folder, the ``repo``
    of its rows), else ``total_tokens``; ConfigError naming the suites with none of them."""
    if total_tokens is not None and total_tokens <= 0:
        raise ConfigError(f"{parameter('total_tokens')} must be > 0, got {total_tokens}")
    folders = folders or {}
    keys = [key for key in RUN_KEYS if key in runs.columns]
    found = {}
    for index, identity in zip(runs.index, runs[keys].itertuples(index=False, name=None)):
        suite, folder = identity[0], folders.get(identity)
        recorded = recorded_total_tokens(folder) if folder and not catalogued_total(suite) else None
        found[index] = catalogued_total(suite) or recorded or total_tokens
    _refuse_unknown(dict(zip(runs["suite"], found.values())))
    return pd.Series(found, dtype=float)


def _refuse_unknown(found: Mapping[str, int | None]) -> None:
    unknown = sorted({suite for suite, total in found.items() if total is None})
    if unknown:
        raise ConfigError(
            f"the total training tokens of {', '.join(unknown)} are not catalogued: pass {parameter('total_tokens')} N "
            f"(its steps x tokens per step), or use {parameter('x')} tokens"
        )


def run_folders(frame: pd.DataFrame) -> dict[tuple, str]:
    """Each run's folder (or Hub repo) in a scan table that holds the ``repo`` column, by run keys."""
    flat = frame.reset_index()
    if "repo" not in flat.columns or flat.empty:
        return {}
    return {tuple(key): repo for key, repo in flat.groupby(RUN_KEYS, sort=False)["repo"].first().items()}


def compare_timing(
    results: pd.DataFrame | str | os.PathLike | Sequence[str | os.PathLike],
    metric: str = DEFAULT_METRIC,
    threshold: float | None = None,
    *,
    x: str = "tokens",
    total_tokens: int | None = None,
) -> pd.DataFrame:
    """:func:`inductscan.find_phase_changes` of every run of ``results`` (a table, a results folder,
    or a list of them: :func:`load_several`), one row per run, sorted by suite.

    With ``x="fraction"`` it adds ``total_tokens`` (the run's training, see :func:`run_totals`) and
    ``onset_fraction``, ``midpoint_fraction``, ``end_fraction``: the tokens over that total.
    """
    if x not in AXES:
        raise ConfigError(f"x must be one of {', '.join(AXES)}, got {x!r}")
    if isinstance(results, (list, tuple)):
        results = load_several(results)
    elif not isinstance(results, pd.DataFrame):
        results = load_selection(results, columns=["tokens", metric, "repo"])
    timing = find_phase_changes(results, metric, threshold)
    if x == "fraction":
        timing = add_fractions(timing, total_tokens, folders=run_folders(results))
    return timing.sort_values(["suite", "run", "seed"]).reset_index(drop=True)


def add_fractions(
    timing: pd.DataFrame, total_tokens: int | None = None, *, folders: Mapping[tuple, str] | None = None
) -> pd.DataFrame:
    """``timing`` (from :func:`inductscan.find_phase_changes`) with ``total_tokens`` and
    ``onset_fraction``, ``midpoint_fraction``, ``end_fraction`` (each level's tokens over the
    run's total, :func:`run_totals`). A run whose change is timed but counts no tokens (a local
    folder scanned without ``--tokens-per-step``) is refused: its fraction is unknown, not zero."""
    uncounted = without_tokens(timing)
    if uncounted:
        raise ConfigError(
            f"{', '.join(uncounted)} counts no tokens, so its phase change has no fraction of training: "
            f"scan a local folder with {parameter('tokens_per_step')}, or use {parameter('x')} tokens"
        )
    timing = timing.copy()
    total = run_totals(timing, total_tokens, folders)
    timing["total_tokens"] = total.astype("Int64")
    for level in LEVELS:
        timing[f"{level}_fraction"] = timing[f"{level}_tokens"].astype(float) / total
    seen = timing[[f"{level}_tokens_after" for level in LEVELS]].astype(float).max(axis=1)
    beyond = timing[seen > total]
    if len(beyond):
        row = beyond.iloc[0]
        raise ConfigError(
            f"{row['suite']} {row['run']} had seen {int(seen[beyond.index[0]]):,} tokens by a checkpoint it "
            f"scanned, more than its total training tokens ({int(total[beyond.index[0]]):,}): give its whole "
            f"training's tokens ({parameter('total_tokens')} N)"
        )
    return timing


def without_tokens(timing: pd.DataFrame) -> list[str]:
    """The suites of a timing table whose rows count no tokens (a local suite scanned without
    ``--tokens-per-step``): on a token axis they have no place."""
    timed = timing[timing["phase_change"]] if "phase_change" in timing.columns else timing
    return sorted(timed.loc[timed["midpoint_tokens_after"].fillna(0) <= 0, "suite"].unique())
