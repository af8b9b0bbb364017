"""Questions asked of a results table: rows by suite, run, seed, step, layer and head; the best head
per checkpoint; the top heads."""

from __future__ import annotations

import os

import pandas as pd

from inductscan.results.declarations import learn_scores
from inductscan.results.folder import ResultsFolder
from inductscan.results.read import derive, load_results, require_results
from inductscan.results.schema import INDEX
from inductscan.results.selection import selection
from inductscan.results.sql import refuse_repeated, require_held, run_sql, select
from inductscan.vocabulary import DERIVED


def load_selection(results: str | os.PathLike, *, columns: list[str] | None = None, **chosen) -> pd.DataFrame:
    """The rows of a results folder that :func:`selection` chooses (only ``columns``, if given); an
    empty frame when none match, :class:`~inductscan.errors.OutputError` when the folder holds no
    results at all, and :class:`~inductscan.errors.NotHeldError` for a suite or run it does not hold."""
    folder = ResultsFolder.of(results)
    require_results(folder)
    chosen = selection(**chosen)
    require_held(folder, chosen)
    return load_results(folder, columns=columns, **chosen)


def best_rows(
    results: str | os.PathLike, metric: str = "induction", *, columns: list[str] | None = None, **chosen
) -> pd.DataFrame:
    """One row per checkpoint of the selection, its head with the highest ``metric``, indexed as
    :func:`inductscan.load_results` is, with ``tokens``, ``metric`` and ``columns``: all that a
    run's curve needs (:func:`inductscan.find_phase_changes`, the timing plots), 1/(layers x heads)
    of the table, chosen by DuckDB."""
    folder = ResultsFolder.of(results)
    require_results(folder)
    learn_scores(folder.path)
    wanted = list(dict.fromkeys([*INDEX, "tokens", metric, *(columns or [])]))
    answer = select(folder, selection(**chosen), columns=wanted, best=True, metric=metric)
    return answer.to_arrow_table().to_pandas().set_index(INDEX)


def query(
    results: str | os.PathLike,
    *,
    suite: str | None = None,
    run: str | None = None,
    seed: int | list[int] | None = None,
    step_range: tuple[int, int] | None = None,
    layer: int | None = None,
    head: int | None = None,
    min_induction: float | None = None,
    top: int | None = None,
    best: bool = False,
    columns: str | list[str] | None = None,
) -> pd.DataFrame:
    """Rows of a results table as a flat frame: the selection, heads with ``induction`` at least
    ``min_induction``, one best head per checkpoint (``best``), the ``top`` K heads; ``columns``
    (a list, or one string of comma-separated names; default: identity and every score) in that
    order. Answered by DuckDB over the files
    (:func:`inductscan.results.sql.select`); ``same_weights_as`` and ``hazard`` are derived as
    :func:`inductscan.load_results` derives them, among the rows returned.

    Example::

        inductscan.query("results/", seed=21, layer=5, min_induction=0.4)
    """
    # None: sql.select's defaults, the users' scores the folder records among them (none is derived)
    wanted = None if columns is None else columns.split(",") if isinstance(columns, str) else list(columns)
    wanted = None if wanted is None else [name.strip() for name in wanted]
    refuse_repeated(wanted or [])
    derived = [name for name in wanted or [] if name in DERIVED]
    read = None if wanted is None else [name for name in wanted if name not in DERIVED]
    if derived:
        read += [name for name in ["suite", "run", "step", *DERIVED["hazard"]] if name not in read]
    chosen = selection(suite=suite, run=run, seed=seed, step_range=step_range, layer=layer, head=head)
    answer = select(results, chosen, columns=read, min_induction=min_induction, best=best, top=top)
    frame = answer.to_arrow_table().to_pandas()
    if derived:
        frame = derive(frame)
    return frame if wanted is None else frame[wanted]


def sql(results: str | os.PathLike, statement: str) -> pd.DataFrame:
    """The answer to any SQL statement (DuckDB) over a results folder's tables, as ``inductscan
    query --sql`` gives it: ``scores``, and ``icl_curves`` and ``token_losses`` where the scan made
    them, with the columns stored in the files (docs/scores.md; ``same_weights_as`` and ``hazard``
    are derived by :func:`inductscan.load_results` and :func:`query`, not stored).

    Example::

        inductscan.sql("results/", "SELECT seed, max(induction) AS best FROM scores GROUP BY seed")
    """
    answer = run_sql(results, statement)
    return pd.DataFrame(answer.rows, columns=answer.columns)
