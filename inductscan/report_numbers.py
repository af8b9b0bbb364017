"""What the report embeds, bounded: evenly spread samples of long series and numbers rounded to a
few significant digits (JSON has no NaN: None). Used by :mod:`inductscan.report` and
:mod:`inductscan.report_token_losses`."""

from __future__ import annotations

import numpy as np

DIGITS = 4


def subsample(count: int, most: int) -> np.ndarray:
    """At most ``most`` indices of ``count`` items, evenly spread, the first and last included."""
    return np.unique(np.linspace(0, count - 1, min(count, most)).round().astype(int))


def rounded(values: np.ndarray, digits: int = DIGITS, scale: float | None = None):
    """``values`` as nested lists, rounded to ``digits`` significant digits of ``scale`` (default:
    the largest magnitude), NaN as None (JSON has no NaN)."""
    values = np.asarray(values, dtype=float)
    finite = np.abs(values[np.isfinite(values)])
    scale = scale if scale is not None else (finite.max() if finite.size else 0.0)
    decimals = max(0, digits - 1 - int(np.floor(np.log10(scale)))) if scale > 0 else digits
    return np.where(np.isfinite(values), np.round(values, decimals), None).tolist()
