"""Questions asked of a results table: rows by suite, run, seed, step, layer and head; the best head
per checkpoint; the top heads."""

from __future__ import annotations

import os

import pandas as pd

from inductscan import store
from inductscan.errors import ConfigError
from inductscan.metrics import CHECKPOINT_METRICS, HEAD_METRICS

HEAD_COLUMNS = list(HEAD_METRICS)
CHECKPOINT_COLUMNS = list(CHECKPOINT_METRICS)
RUN_KEYS = ["suite", "run", "seed"]
SHOWN = [*RUN_KEYS, "step", "tokens", "layer", "head", *HEAD_COLUMNS, *CHECKPOINT_COLUMNS]  # query's default columns


def _check_metric(frame: pd.DataFrame, metric: str) -> None:
    if metric not in frame.columns:
        raise ConfigError(f"unknown metric {metric!r}; choose one of {', '.join(HEAD_COLUMNS + CHECKPOINT_COLUMNS)}")


def best_heads(frame: pd.DataFrame, metric: str = "induction") -> pd.DataFrame:
    """One row per (suite, run, seed, step): the head with the highest ``metric``, every column of it.

    frame: as returned by :func:`inductscan.load_results` (indexed by seed, step, layer, head).
    """
    _check_metric(frame, metric)
    flat = frame.reset_index()
    if flat.empty:
        return flat
    best = flat.loc[flat.groupby(RUN_KEYS + ["step"], sort=True)[metric].idxmax()]
    return best.sort_values(RUN_KEYS + ["step"]).reset_index(drop=True)


def top_heads(frame: pd.DataFrame, k: int, metric: str = "induction") -> pd.DataFrame:
    """The ``k`` rows with the highest ``metric``."""
    _check_metric(frame, metric)
    if k < 1:
        raise ConfigError(f"--top must be >= 1, got {k}")
    return frame.sort_values(metric, ascending=False).head(k)


def selection(
    *,
    suite: str | None = None,
    run: str | None = None,
    seed: int | list[int] | None = None,
    step_range: tuple[int, int] | None = None,
    **columns,
) -> dict:
    """The filters of :func:`inductscan.load_results` for a selection; None selects everything."""
    filters = {"suite": suite, "run": run, "seed": seed, **columns}
    filters = {name: value for name, value in filters.items() if value is not None}
    if step_range is not None:
        filters["step"] = slice(*step_range)
    return filters


def load_selection(results: str | os.PathLike, **chosen) -> pd.DataFrame:
    """The rows of a results folder that :func:`selection` chooses; an empty frame when none match,
    :class:`~inductscan.errors.OutputError` when the folder holds no results at all."""
    store.require_results(results)
    return store.load_results(results, **selection(**chosen))


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
    (default: identity and every score) in that order.

    Example::

        inductscan.query("results/", seed=21, layer=5, min_induction=0.4)
    """
    frame = load_selection(results, suite=suite, run=run, seed=seed, step_range=step_range, layer=layer, head=head)
    if min_induction is not None:
        frame = frame[frame["induction"] >= min_induction]
    frame = best_heads(frame) if best else frame.reset_index()
    if top is not None:
        frame = top_heads(frame, top)
    wanted = SHOWN if columns is None else [columns] if isinstance(columns, str) else list(columns)
    unknown = [name for name in wanted if name not in frame.columns]
    if unknown:
        raise ConfigError(f"unknown column(s) {', '.join(unknown)}; columns are {', '.join(frame.columns)}")
    return frame[wanted]
