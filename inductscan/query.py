"""Questions asked of a loaded results table: the best head per checkpoint, the top heads."""

from __future__ import annotations

import pandas as pd

from inductscan.errors import ConfigError

HEAD_COLUMNS = ["induction", "prefix_matching", "duplicate_token", "previous_token", "copying", "induction_logit"]
CHECKPOINT_COLUMNS = ["loss_first", "loss_repeat", "in_context_gain", "icl_score"]
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
