"""When the induction phase change happens, per run or per head.

A run's curve is its best head's score at each checkpoint (or, per head, that head's own score;
or a checkpoint score such as ``in_context_gain``), on a log axis. It is made monotone in two
robust steps: a running median (each checkpoint with at least two neighbours on each side, more
where checkpoints are dense), which removes dips and spikes of one or two checkpoints and leaves
any monotone stretch, a steep step included, exactly as it is; then the least-squares
non-decreasing fit (pool adjacent violators), which absorbs what noise remains. The early and
late plateaus are medians of the smoothed curve near the fit's two ends; ``onset``, ``midpoint``
and ``end`` are where the fit first reaches 10%, 50% and 90% of the rise between them, placed
between the two checkpoints that bracket the crossing and interpolated geometrically (in log
steps, which is log tokens: a run's tokens are its steps times a constant).

Whether a curve is timed, with ``rise = late - early`` (:func:`untimed_reason`), in this order:

1. Fewer than 2 checkpoints: no rise can be seen; the note is "too few checkpoints to time it: N".
2. A rise below ``min_rise`` (the metric's default from ``inductscan/metrics.py``), or none:
   "no phase change in the scanned range", whatever the number of checkpoints.
3. Fewer than ``MIN_CHECKPOINTS`` (5): "too few checkpoints to time it: N". The noise is a median
   over successive differences; four checkpoints give three, one or more of them the rise's own,
   too few for a median to tell the noise from the rise.
4. A rise of at least ``NOISE_MULTIPLE`` times :func:`noise_level` (the median absolute deviation
   of all successive differences) is a phase change, and is timed. ``scripts/phase_noise_sweep.py``
   calibrates this rule on the toy (its former 32 log-spaced checkpoints), Pythia (154) and Stanford (609) grids.
5. Otherwise that noise may be the rise's own: a median ignores the rise's differences only
   while they are fewer than half. So "no phase change" is said only when there are at least
   ``MIN_QUIET_DIFFERENCES`` (3) differences outside the rise (:func:`quiet_differences`: those
   across which the fit climbs by less than ``PLATEAU_SHARE``, 5%, of its range) and the rise is
   below ``NOISE_MULTIPLE`` times their own noise (:func:`difference_noise`) too. Else the note is
   "too few checkpoints to time it: N": too few checkpoints outside the rise to tell it from noise.
   This errs towards "too few" on short noisy flat curves (some of 5-10 checkpoints) rather than
   towards "no phase change" on real rises.

A curve of 5 checkpoints or more is thus timed exactly when rule 4 says so; rule 5 only chooses
the note of a curve that is not.

A timed curve may still be rising at its last checkpoint (a scan that stopped while the heads
formed) or already rising at its first: its late (early) plateau is then only where the scan
stopped, and each level's crossing only a bound. :mod:`inductscan.phase_edges` decides it from
the curve's own slope and noise; the row then says ``rising_at_end`` (``rising_at_start``), its
``_step``/``_tokens`` are NaN, its brackets bound the level (after the earlier checkpoint of
each, or before the later one), and its note says to scan further. A curve whose onset comes far
before its midpoint with a level held between (or whose end comes far after it) gets a
"two-stage" note. A score that falls as induction heads form (``icl_score``, the losses) is
timed as the rise of its negative, and reported in its own units.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from inductscan import phase_edges
from inductscan.errors import ConfigError, parameter
from inductscan.metrics import DEFAULT_METRIC, HEAD_EFFECTS, METRICS, Metric, all_metrics, choose_metric, is_added
from inductscan.results.declarations import learn_scores
from inductscan.results.read import load_results
from inductscan.vocabulary import RUN_KEYS

LEVELS = {"onset": 0.1, "midpoint": 0.5, "end": 0.9}
TIMED_METRICS = list(METRICS)  # every declared score; one that falls is timed as it falls
NOISE_MULTIPLE = 8.0  # a rise must exceed this many noise standard deviations (see scripts/phase_noise_sweep.py)
MIN_CHECKPOINTS = 5  # fewer leave at most three successive differences to measure the noise on
MIN_QUIET_DIFFERENCES = 3  # "no phase change" needs the noise of at least this many differences outside the rise
PLATEAU_SHARE = 0.05  # a plateau: where the fit is within 5% of its range of its first (last) value ...
PLATEAU_NOISE = 1.0  # ... or within this many noise levels of it
EDGE_NOISE = 6.0  # an edge checkpoint this many noise levels off its neighbours' line is a real step, kept
SMOOTHING_REACH = 0.25  # the running median spans +-25% of the steps (log 1.25) where checkpoints are dense
LOCAL_SHARE = 0.2  # a crossing on a densely sampled rise is fitted to the checkpoints within +-20% of the rise
LOCAL_POINTS = 4
NO_CHANGE = "no phase change in the scanned range"
TOO_FEW = "too few checkpoints to time it"  # the note adds ": N", the number of checkpoints
EARLY_UNSEEN = "already {moving} at the first checkpoint (no early plateau seen): scan {earlier} to time it"
LATE_UNSEEN = "still {moving} at the last checkpoint (no late plateau seen): scan further to time it"
TWO_STAGE = {
    "early": "two-stage {change}: the onset comes long before the midpoint (an early, partial {change})",
    "late": "two-stage {change}: the end comes long after the midpoint (a slow, late second {change})",
}
NO_VALUES = "no values: the scan left this score empty (the folder's notes/ say why)"


def verdict(timing: Mapping) -> str:
    """A timing row's answer in a word or three: "yes", "no", or "too few checkpoints" when the
    curve rises but cannot be timed (never "no" then)."""
    if timing["phase_change"]:
        return "yes"
    return "too few checkpoints" if str(timing["note"]).startswith(TOO_FEW) else "no"


def no_values(metric: str) -> str:
    """The note of a run without a single value of ``metric``: why, for the score it is."""
    if metric in HEAD_EFFECTS:
        if metric.startswith("icl"):
            return (
                "no values: these checkpoints were not scanned with both --head-effects and --icl-dataset, "
                f"which {metric} needs (scan them into a fresh --out with both)"
            )
        return "no values: these checkpoints were scanned without --head-effects (scan them into a fresh --out with it)"
    if is_added(metric):
        return "no values: the score's function gave NaN at every checkpoint"
    return NO_VALUES


def isotonic_increasing(values: np.ndarray) -> np.ndarray:
    """The least-squares non-decreasing fit of ``values`` (pool adjacent violators), same shape."""
    means: list[float] = []
    counts: list[int] = []
    for value in np.asarray(values, dtype=float):
        mean, count = float(value), 1
        while means and means[-1] > mean:
            pooled, pooled_count = means.pop(), counts.pop()
            mean = (pooled * pooled_count + mean * count) / (pooled_count + count)
            count += pooled_count
        means.append(mean)
        counts.append(count)
    return np.repeat(means, counts)


def running_median(values: np.ndarray, positions: np.ndarray, *, reach: float = SMOOTHING_REACH) -> np.ndarray:
    """Median of each value and its neighbours on both sides, as many on each side.

    values: (..., checkpoints), curves that share the log-step ``positions`` (checkpoints,).
    A checkpoint's window holds, on each side, the neighbours within ``reach`` of it on the log
    axis, and at least 2 (fewer at the ends): so a dip or spike of 1-2 checkpoints goes, a dense
    stretch of checkpoints is averaged over a fixed share of training, and any monotone stretch,
    however steep, stays exactly as it is (a sorted, centred window's median is its middle value).
    The first and last checkpoints have no neighbour on one side: on a curve of ``MIN_CHECKPOINTS``
    or more they take Tukey's end-point rule (the median of their own value, their smoothed
    neighbour's, and the line through the two smoothed neighbours extended to them) where that
    moves them by at most ``EDGE_NOISE`` times the curve's noise (:func:`noise_level`): a last
    checkpoint high by chance then cannot set the late plateau alone, while a real step at an
    edge (far larger than the noise) and a straight climb to the end stay as they are.
    """
    values = np.asarray(values, dtype=float)
    count = values.shape[-1]
    index = np.arange(count)
    left = index - np.searchsorted(positions, positions - reach, side="left")
    right = np.searchsorted(positions, positions + reach, side="right") - 1 - index
    edge = np.minimum(np.minimum(index, count - 1 - index), 2)
    half = np.maximum(np.minimum(left, right), edge)  # (checkpoints,) neighbours on each side
    smoothed = values.copy()
    for width in np.unique(half[half > 0]):
        where = np.flatnonzero(half == width)
        windows = np.lib.stride_tricks.sliding_window_view(values, 2 * width + 1, axis=-1)  # (..., count - 2w, 2w + 1)
        smoothed[..., where] = np.median(windows[..., where - width, :], axis=-1)
    if count >= MIN_CHECKPOINTS:  # Tukey's end-point rule, for an end that noise alone could have moved
        differences = np.diff(values, axis=-1)
        spread = np.median(np.abs(differences - np.median(differences, axis=-1, keepdims=True)), axis=-1)
        noise = 1.4826 * spread / np.sqrt(2)  # (...,) each curve's noise_level
        for end, inner, next_inner in ((0, 1, 2), (-1, -2, -3)):
            line = 3 * smoothed[..., inner] - 2 * smoothed[..., next_inner]
            rule = np.median(np.stack([values[..., end], smoothed[..., inner], line]), axis=0)
            noisy = np.abs(values[..., end] - rule) <= EDGE_NOISE * noise
            smoothed[..., end] = np.where(noisy, rule, values[..., end])
    return smoothed


def difference_noise(differences: np.ndarray) -> float:
    """Robust standard deviation of the noise behind successive ``differences`` (their MAD).

    The differences of independent noise have sqrt(2) times its standard deviation; the median
    ignores large differences (a rise's) while they are fewer than half.
    """
    differences = np.asarray(differences, dtype=float)
    if len(differences) == 0:
        return 0.0
    deviation = np.median(np.abs(differences - np.median(differences)))
    return float(1.4826 * deviation / np.sqrt(2))


def noise_level(values: np.ndarray) -> float:
    """Robust standard deviation of checkpoint-to-checkpoint noise, from all successive differences."""
    return difference_noise(np.diff(np.asarray(values, dtype=float)))


def quiet_differences(values: np.ndarray, fit: np.ndarray) -> np.ndarray:
    """The successive differences of ``values`` outside the rise: those across which the
    non-decreasing ``fit`` climbs by less than ``PLATEAU_SHARE`` of its range (plateaus, slow drifts).
    The fit's climbs add up to its range, so at most 1 / ``PLATEAU_SHARE`` differences are left out."""
    fit = np.asarray(fit, dtype=float)
    outside = np.diff(fit) < PLATEAU_SHARE * (fit[-1] - fit[0])
    return np.diff(np.asarray(values, dtype=float))[outside]


def untimed_reason(values: np.ndarray, fit: np.ndarray, rise: float, min_rise: float) -> str | None:
    """None when the curve's ``rise`` (late - early plateau) is a phase change to time; else the
    note that says why not. The rules, in order, are the module docstring's."""
    count = len(values)
    if count >= 2 and (rise < min_rise or rise <= 0):
        return NO_CHANGE
    if count < MIN_CHECKPOINTS:
        return f"{TOO_FEW}: {count}"
    noise = noise_level(values)
    if rise >= NOISE_MULTIPLE * noise:
        return None
    quiet = quiet_differences(values, fit)
    if len(quiet) >= MIN_QUIET_DIFFERENCES and rise < NOISE_MULTIPLE * difference_noise(quiet):
        return NO_CHANGE
    # many checkpoints, but a change within the noise and too few flat ones to measure the noise apart
    return (
        f"{TOO_FEW}: {count}, whose change ({rise:.3g}) is less than {NOISE_MULTIPLE:g} times their noise ({noise:.2g})"
    )


def plateaus(smoothed: np.ndarray, fit: np.ndarray, noise: float = 0.0) -> tuple[float, float]:
    """The early and late levels: medians of the smoothed curve where the fit is within
    ``PLATEAU_SHARE`` of its range, or ``PLATEAU_NOISE`` times the ``noise``, of its first (last)
    value; a dip or slow drift sets neither. On a long noisy plateau the fit is a staircase a few
    noise levels high: within 5% of the range of its top lies only its top step, which would set
    the late level too high (and move the end crossing deep into the plateau)."""
    low, high = fit[0], fit[-1]
    within = max(PLATEAU_SHARE * (high - low), PLATEAU_NOISE * noise)
    early = np.median(smoothed[fit <= low + within])
    late = np.median(smoothed[fit >= high - within])
    return float(early), float(late)


@dataclass(frozen=True)
class Crossing:
    """Where the fit first reaches a level: between checkpoints ``before`` and ``after`` (indices)."""

    before: int
    after: int
    fraction: float  # 0 at ``before``, 1 at ``after``


def crossing(
    fit: np.ndarray, smoothed: np.ndarray, positions: np.ndarray, level: float, scale: float
) -> Crossing | None:
    """The first crossing of ``level`` by the non-decreasing ``fit``; None without one in range.

    Between the two checkpoints where the fit first reaches the level, interpolated linearly in
    the fit's value. Where the rise is densely sampled (at least ``LOCAL_POINTS`` checkpoints with
    the fit within ``LOCAL_SHARE * scale`` of the level), a least-squares line through the
    smoothed values there (against log step) places it instead: averaging those checkpoints keeps
    noise from moving the crossing by several checkpoint intervals on a grid like Stanford's.
    """
    if fit[0] >= level or fit[-1] < level:
        return None
    after = int(np.argmax(fit >= level))
    coarse = Crossing(after - 1, after, float((level - fit[after - 1]) / (fit[after] - fit[after - 1])))
    near = np.flatnonzero((np.abs(fit - level) <= LOCAL_SHARE * scale) & np.isfinite(positions))  # contiguous
    if len(near) < LOCAL_POINTS:
        return coarse
    slope, intercept = np.polyfit(positions[near], smoothed[near], 1)
    place = (level - intercept) / slope if slope > 0 else np.nan
    if not positions[near[0]] <= place <= positions[near[-1]]:
        return coarse
    after = int(np.clip(np.searchsorted(positions, place, side="right"), 1, len(fit) - 1))
    fraction = (place - positions[after - 1]) / (positions[after] - positions[after - 1])
    return Crossing(after - 1, after, float(fraction))


def geometric(axis: np.ndarray, where: Crossing) -> float:
    """The axis value (steps or tokens) at a crossing, interpolated in log space; NaN from 0."""
    low, high = float(axis[where.before]), float(axis[where.after])
    if low <= 0 or high <= 0:
        return float("nan")
    return float(np.exp(np.log(low) + where.fraction * (np.log(high) - np.log(low))))


def _timing_columns(name: str, steps: np.ndarray, tokens: np.ndarray, where: Crossing | None, exact: bool) -> dict:
    """A level's columns: its interpolated step and tokens (NaN where the crossing is only a bound)
    and the checkpoints that bracket the crossing the curve shows."""
    if where is None:
        return {}
    return {
        f"{name}_step": geometric(steps, where) if exact else float("nan"),
        f"{name}_tokens": geometric(tokens, where) if exact else float("nan"),
        f"{name}_step_before": steps[where.before],
        f"{name}_step_after": steps[where.after],
        f"{name}_tokens_before": tokens[where.before],
        f"{name}_tokens_after": tokens[where.after],
    }


def log_steps(steps: np.ndarray) -> np.ndarray:
    """The log axis the curves are smoothed and timed on; step 0 at -inf, no one's close neighbour."""
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(steps, dtype=float))


def crossing_position(positions: np.ndarray, where: Crossing) -> float:
    """The log step of a crossing; the bracket's later checkpoint where the earlier one is step 0."""
    low, high = positions[where.before], positions[where.after]
    if not np.isfinite(low):
        return float(high)
    return float(low + where.fraction * (high - low))


def curve_timing(
    steps,
    tokens,
    values,
    *,
    threshold: float | None,
    min_rise: float,
    smoothed=None,
    direction: str = "rises",
    empty_note: str = NO_VALUES,
) -> dict:
    """Phase-change timing of one curve, checkpoints in step order. Keys: the output columns.

    smoothed: ``running_median(values, log_steps(steps))`` when the caller has it already.
    direction: ``"rises"`` or ``"falls"``, the metric's (``inductscan/metrics.py``): a falling curve
    is timed as its mirror image, and ``early``, ``late`` and the threshold stay in its own units
    (``first_above_threshold`` is then the first checkpoint at or below the threshold).
    empty_note: the note of a curve without a single value (see :func:`no_values`).
    """
    steps, tokens, values = (np.asarray(array) for array in (steps, tokens, values))
    sign = 1.0 if direction == "rises" else -1.0
    first = np.flatnonzero(sign * values >= sign * threshold) if threshold is not None else np.array([], dtype=int)
    row = {
        "checkpoints": len(values),
        "first_above_threshold_step": steps[first[0]] if len(first) else pd.NA,
        "first_above_threshold_tokens": tokens[first[0]] if len(first) else pd.NA,
        "rising_at_start": False,
        "rising_at_end": False,
    }
    if np.isnan(values.astype(float)).all():
        return row | {"phase_change": False, "note": empty_note}
    if len(values) < 2:
        return row | {"phase_change": False, "note": f"{TOO_FEW}: {len(values)}"}
    rising = sign * values.astype(float)
    positions = log_steps(steps)
    smoothed = running_median(rising, positions) if smoothed is None else sign * np.asarray(smoothed, dtype=float)
    fit = isotonic_increasing(smoothed)
    early, late = plateaus(smoothed, fit, noise_level(rising))
    row |= {"early": sign * early, "late": sign * late}
    rise = late - early
    reason = untimed_reason(rising, fit, rise, min_rise)
    if reason is not None:
        return row | {"phase_change": False, "note": reason}
    found = {  # a level's neighbourhood reaches at most half way to the nearer plateau (curvature)
        name: crossing(fit, smoothed, positions, early + share * rise, 2 * min(share, 1 - share) * rise)
        for name, share in LEVELS.items()
    }
    at_start, at_end = found["onset"] is None, found["end"] is None
    crossings = None
    if not (at_start or at_end):
        crossings = tuple(crossing_position(positions, where) for where in found.values())
        brackets = (found["onset"].before, found["end"].after)
        at_start, at_end = phase_edges.unseen_plateaus(
            rising, smoothed, positions, crossings, brackets, rise, noise_level(rising)
        )
    for name, where in found.items():
        row |= _timing_columns(name, steps, tokens, where, exact=not (at_start or at_end))
    moving, change = ("rising", "rise") if sign > 0 else ("falling", "fall")
    notes = []
    if at_start:
        earlier = f"steps between 0 and {steps[1]}, if the run has any," if steps[0] == 0 else "earlier steps"
        notes.append(EARLY_UNSEEN.format(moving=moving, earlier=earlier))
    if at_end:
        notes.append(LATE_UNSEEN.format(moving=moving))
    stage = None if at_start or at_end else phase_edges.two_stage(rising, positions, crossings, early, rise)
    if stage is not None:
        notes.append(TWO_STAGE[stage].format(change=change))
    return row | {
        "phase_change": True,
        "rising_at_start": at_start,
        "rising_at_end": at_end,
        "note": "; ".join(notes),
    }


def _columns(keys: list[str]) -> list[str]:
    timing = [
        f"{name}_{part}"
        for name in LEVELS
        for part in ("step", "tokens", "step_before", "step_after", "tokens_before", "tokens_after")
    ]
    return keys + [
        "metric",
        "checkpoints",
        "phase_change",
        "early",
        "late",
        *timing,
        "rising_at_start",
        "rising_at_end",
        "threshold",
        "first_above_threshold_step",
        "first_above_threshold_tokens",
        "note",
    ]


def timed_metric(metric: str, per_head: bool) -> Metric:
    """The declaration of ``metric`` (``inductscan/metrics.py``), if it can be timed: any declared
    score, a head score when timed ``per_head``. ConfigError otherwise."""
    known = all_metrics()  # users' scores too (docs/custom_scores.md)
    if metric not in known:
        raise ConfigError(f"cannot time metric {metric!r}; {choose_metric(metric, list(known))}")
    if per_head and known[metric].level == "checkpoint":
        raise ConfigError(f"{metric} is a checkpoint score, the same for every head; time it without per-head")
    return known[metric]


def curves(results: pd.DataFrame, metric: str, per_head: bool) -> tuple[list[str], pd.DataFrame]:
    """The curves to time, one row per (curve keys, step), and the curve keys.

    Per run, the value at a step is the best head's ``metric``: the highest of a rising score, the
    lowest of a falling one (a checkpoint score is the same on every head row: it is itself).
    """
    declared = timed_metric(metric, per_head)
    flat = results.reset_index()
    unscored = metric in flat.columns and len(flat) and flat[metric].isna().all()
    if metric not in flat.columns or (unscored and metric == "icl_score"):
        scan = f": scan with {parameter('icl')} to score in-context learning" if metric == "icl_score" else ""
        raise ConfigError(f"the table holds no {metric} values{scan}")
    # checkpoints scored without it (an ICL score needs --icl-dataset) are left out; a run with no value
    # at all (a weight score of a model run through transformers) keeps its rows, to say so
    scored = flat[metric].notna()
    flat = flat[scored | ~scored.groupby([flat[key] for key in RUN_KEYS]).transform("any")]
    if per_head:
        keys = RUN_KEYS + ["layer", "head"]
        return keys, flat[keys + ["step", "tokens", metric]].rename(columns={metric: "value"})
    grouped = flat.groupby(RUN_KEYS + ["step"], as_index=False)
    best = "max" if declared.direction == "rises" else "min"
    return RUN_KEYS, grouped.agg(tokens=("tokens", "first"), value=(metric, best))


def effect_coverage(results: pd.DataFrame, metric: str) -> dict[tuple, str]:
    """Per run, what a run-level timing of an exact head effect should say of its checkpoints: those
    scanned without the effects (left out of the curve) and, where scans with different
    ``--head-effects-top`` share a run, that its best head is chosen among different numbers of heads."""
    counts = results.reset_index().groupby(RUN_KEYS + ["step"])[metric].count()  # heads with a value
    said = {}
    for run, per_step in counts.groupby(level=RUN_KEYS):
        valued = per_step[per_step > 0]
        if valued.empty:
            continue
        notes = []
        if len(valued) < len(per_step):
            notes.append(f"{len(per_step) - len(valued)} checkpoint(s) scanned without effects left out")
        if valued.nunique() > 1:
            notes.append(
                f"the exact {metric} covers {', '.join(map(str, sorted(valued.unique())))} heads at different "
                "checkpoints (scans with different --head-effects-top): the best head is chosen among them"
            )
        if notes:
            said[run if isinstance(run, tuple) else (run,)] = "; ".join(notes)
    return said


def find_phase_changes(
    results: pd.DataFrame | str | os.PathLike,
    metric: str = DEFAULT_METRIC,
    threshold: float | None = None,
    per_head: bool = False,
    *,
    min_rise: float | None = None,
) -> pd.DataFrame:
    """Onset, midpoint and end of the phase change, one row per run (or per head with ``per_head``).

    results: a scan table (``inductscan.load_results``) or the path of a results folder.
    metric: any declared score (``TIMED_METRICS``) or a user's (docs/custom_scores.md): a head
    score (the run's curve is its best head's) or a checkpoint score such as ``in_context_gain``
    or ``icl_score``. A score that falls as induction heads form (``icl_score``, the losses) is
    timed as it falls.
    threshold: ``first_above_threshold_*`` is the first checkpoint whose raw value reaches it (at
    or above it for a rising score, at or below it for a falling one).
    min_rise: the smallest change, in the metric's unit, counted as a phase change.
    Both default (None) to the metric's own, declared in ``inductscan/metrics.py`` (0.4 and 0.05
    for ``induction``; 1 and 0.15 nats for ``in_context_gain``; -0.25 and 0.1 nat for ``icl_score``).

    Columns: the run keys (and ``layer``, ``head``), ``phase_change``, the plateaus ``early`` and
    ``late``; for each of ``onset``, ``midpoint`` and ``end``: ``_step`` and ``_tokens``
    (interpolated in log space; NaN when the crossing follows step 0, which has no logarithm, or
    when a plateau lies outside the scanned range) and the bracketing checkpoints
    ``_step_before``/``_step_after`` and ``_tokens_before``/``_tokens_after``; ``rising_at_start``
    and ``rising_at_end``: the curve is still changing at its first (last) checkpoint, its early
    (late) plateau unseen, so each level is only bounded: after its ``_step_before`` (the change
    goes on past the last checkpoint) or before its ``_step_after`` (it began before the first),
    and neither when both; ``first_above_threshold_step``/``_tokens``; ``threshold`` (the one
    used); and ``note``, which says when there is no phase change, too few checkpoints to time
    one, a plateau outside the scanned range, or a change in two stages (the rules are the module
    docstring's).
    """
    if not isinstance(results, pd.DataFrame):
        learn_scores(results)  # a user's score the folder records is timed as any
    declared = timed_metric(metric, per_head)
    threshold = declared.threshold if threshold is None else threshold
    min_rise = declared.min_rise if min_rise is None else min_rise
    if min_rise < 0:
        raise ConfigError(f"min_rise must be >= 0, got {min_rise}")
    if not isinstance(results, pd.DataFrame):
        results = load_results(results, columns=["tokens", metric])
    keys, table = curves(results, metric, per_head)
    coverage = effect_coverage(results, metric) if metric in HEAD_EFFECTS and not per_head else {}
    rows = []
    for _, curve in table.groupby(RUN_KEYS, sort=True):
        values = curve.pivot(index=keys, columns="step", values="value")  # (curves, steps), steps sorted
        steps = values.columns.to_numpy()
        tokens = curve.groupby("step")["tokens"].first().loc[steps].to_numpy()
        matrix = values.to_numpy()
        complete = ~np.isnan(matrix).any(axis=1)
        smoothed = np.full_like(matrix, np.nan)
        smoothed[complete] = running_median(matrix[complete], log_steps(steps))  # every full curve at once
        for identity, curve_values, curve_smoothed in zip(values.index, matrix, smoothed):
            held = ~np.isnan(curve_values)
            if held.any() and not held.all():  # a head valued at some checkpoints only (an exact head effect)
                curve_values = curve_values[held]
                curve_smoothed = running_median(curve_values[None], log_steps(steps[held]))[0]
            else:
                held = np.ones(len(steps), dtype=bool)
            timing = curve_timing(
                steps[held],
                tokens[held],
                curve_values,
                threshold=threshold,
                min_rise=min_rise,
                smoothed=curve_smoothed,
                direction=declared.direction,
                empty_note=no_values(metric),
            )
            identity = identity if isinstance(identity, tuple) else (identity,)
            if identity in coverage:
                timing["note"] = "; ".join(filter(None, [timing["note"], coverage[identity]]))
            rows.append(dict(zip(keys, identity)) | {"metric": metric, "threshold": threshold} | timing)
    frame = pd.DataFrame(rows, columns=_columns(keys))
    integer_columns = [name for name in frame.columns if name.endswith(("_before", "_after")) or "above" in name]
    booleans = ("phase_change", "rising_at_start", "rising_at_end")
    return frame.astype({name: "Int64" for name in integer_columns + ["checkpoints"]} | dict.fromkeys(booleans, bool))
