"""The phase table as people read it: :func:`inductscan.phases.find_phase_changes`' rows as short
strings (tokens seen with the checkpoints that bracket them, bounds where a plateau lies outside
the scanned range), for ``inductscan phases`` and the report's phase table."""

from __future__ import annotations

import pandas as pd

from inductscan.metrics import get_metric
from inductscan.phases import LEVELS
from inductscan.vocabulary import RUN_KEYS


def amount(value: float) -> str:
    """4469172.6 -> '4.47M'."""
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"


def bound(row: pd.Series) -> str | None:
    """How a timed row's levels are known: None when exact, ``"after"`` when each is a lower
    bound (still changing at the last checkpoint), ``"before"`` when an upper bound (already
    changing at the first), ``"unknown"`` when both plateaus are unseen."""
    start, end = bool(row.get("rising_at_start", False)), bool(row.get("rising_at_end", False))
    return {(False, False): None, (False, True): "after", (True, False): "before"}.get((start, end), "unknown")


def bound_position(row: pd.Series, level: str, column: str) -> float | None:
    """Where a bounded level's bound lies on the ``column`` axis (tokens or step): after the earlier
    checkpoint of its bracket, or before the later one; None where that is step 0 or unknown."""
    limit = bound(row)
    if limit not in ("after", "before"):
        return None
    value = row[f"{level}_{column}_{'before' if limit == 'after' else 'after'}"]
    return float(value) if pd.notna(value) and value > 0 else None


def _when(row: pd.Series, name: str) -> str:
    """A level as people read it: tokens seen (steps where the suite counts no tokens) and the
    bracketing checkpoints, or the bound that is all a curve with an unseen plateau gives."""
    if pd.isna(row.get(f"{name}_step_after")):
        return "-"
    counted = row[f"{name}_tokens_after"] > 0
    limit = bound(row)
    if limit == "unknown":
        return "-"
    if limit is not None:
        side = "before" if limit == "after" else "after"  # "after" is bounded by the bracket's earlier checkpoint
        step, tokens = row[f"{name}_step_{side}"], row[f"{name}_tokens_{side}"]
        return f"{limit} {amount(tokens)} (step {step})" if counted else f"{limit} step {step}"
    bracket = f"steps {row[f'{name}_step_before']}-{row[f'{name}_step_after']}"
    value = row[f"{name}_tokens"] if counted else row[f"{name}_step"]
    unit = "" if counted else "step "
    return f"{unit}{amount(value)} ({bracket})" if pd.notna(value) else f"({bracket})"


def _plateau(value: float, limit: str | None) -> str:
    """A plateau's level, or the bound (``limit``: ">=" or "<=") that is all one outside the
    scanned range gives: the curve goes on past it."""
    if pd.isna(value):
        return "-"
    return f"{value:.3f}" if limit is None else f"{limit} {value:.3f}"


def readable(phases: pd.DataFrame) -> pd.DataFrame:
    """A compact view of :func:`find_phase_changes`' table for people: one string column each.

    onset, midpoint, end: tokens seen (interpolated) and the bracketing checkpoints' steps; a
    suite without a token count per step shows the interpolated step instead; a curve with an
    unseen plateau shows the bound it gives ("after 1.2B (step 1100)").
    """
    several_suites = phases["suite"].nunique() > 1
    runs = phases[RUN_KEYS].drop_duplicates()
    shared_seeds = runs[["suite", "seed"]].duplicated().any()  # e.g. two local runs, both seed 0
    rows = []
    for _, row in phases.iterrows():
        direction = get_metric(row["metric"]).direction
        rises, higher, lower = direction == "rises", ">=", "<="
        readable_row = {"suite": row["suite"]} if several_suites else {}
        readable_row |= {"run": row["run"]} if shared_seeds else {}
        readable_row["seed"] = row["seed"]
        if "layer" in phases.columns:
            readable_row["head"] = f"{row['layer']}.{row['head']}"
        readable_row |= {
            "early": _plateau(row["early"], (lower if rises else higher) if row["rising_at_start"] else None),
            "late": _plateau(row["late"], (higher if rises else lower) if row["rising_at_end"] else None),
            **{name: _when(row, name) for name in LEVELS},
        }
        if pd.notna(row["threshold"]):
            first = row["first_above_threshold_step"]
            readable_row[threshold_label(row["threshold"], direction)] = "-" if pd.isna(first) else f"step {first}"
        readable_row["note"] = row["note"]
        rows.append(readable_row)
    return pd.DataFrame(rows)


def threshold_label(threshold: float, direction: str) -> str:
    """The readable column of ``first_above_threshold``: ``first >= 0.4``, or ``first <= -0.25``
    for a falling score."""
    return f"first {'>=' if direction == 'rises' else '<='} {threshold:g}"
