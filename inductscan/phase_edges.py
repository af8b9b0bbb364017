"""Whether a timed change lies whole inside the scanned range, and whether it came in two stages.

A curve cut off in the middle of its rise (a scan with ``--step-range`` that ends, or starts,
while the heads form) shows a rise and a "late plateau" that is only where the scan stopped: its
midpoint would be timed inside the range, and early. These functions say when a plateau is not
seen, from the curve's own slope and noise, so that :mod:`inductscan.phases` gives bounds and a
note instead. They work on a rising curve as :func:`inductscan.phases.curve_timing` holds it:
raw ``values``, their running median ``smoothed``, the log steps ``positions`` (step 0 at -inf),
and the log steps of the onset, midpoint and end crossings. The start of a curve is handled as
the end of its mirror image (values and positions negated and reversed).

``scripts/phase_noise_sweep.py`` calibrates the numbers on the toy, Pythia and Stanford grids:
no complete curve (each plateau on four checkpoints or more, a dip or spike outside the first and
last five checkpoints) is said to be still rising, and most curves cut in the middle of their rise
are.
"""

from __future__ import annotations

import numpy as np

EDGE_SLOPE_SHARE = 0.35  # still rising: the slope at an edge is above this share of the rise's mean slope ...
EDGE_ERRORS = 2.0  # ... by this many standard errors
EDGE_POINTS = 4  # the slope at an edge is measured over at least this many checkpoints
EDGE_JUMP_SHARE = 0.15  # a crossing in an edge interval: the edge checkpoint is this share of the rise off
TWO_STAGE_RATIO = 3.0  # one half of the change (log steps) this many times as long as the other ...
TWO_STAGE_LEVEL = 0.2  # ... held at a level this share of the rise from both plateaus: two stages


def still_climbing(
    values: np.ndarray,
    smoothed: np.ndarray,
    positions: np.ndarray,
    past: int,
    reach: float,
    rate: float,
    noise: float,
) -> bool:
    """Whether the curve still climbs at its last checkpoints, by its own slope and noise.

    The window: the checkpoints within ``reach`` (log steps) of the last one; where they are
    fewer than ``EDGE_POINTS``, more of those from index ``past`` (the first past the end
    crossing) on, up to ``EDGE_POINTS``; at least the last two; step 0 (no logarithm) left out.
    Past its end crossing a complete curve is on its plateau: a window made longer never reaches
    back into a sharp rise (one that fits in a checkpoint interval or two). Over it, the slope of
    the smoothed curve against log step exceeds ``EDGE_SLOPE_SHARE`` of the rise's mean slope
    ``rate`` by ``EDGE_ERRORS`` standard errors of the ``noise``; and the curve's level at its end
    (the median of its last three values, which ignores a spike of one checkpoint) lies
    ``EDGE_ERRORS`` noise levels above anything it reached before that window: a curve that
    climbs back from a dip to the plateau it held before is not rising.
    """
    finite = np.flatnonzero(np.isfinite(positions))
    window = finite[positions[finite] >= positions[finite[-1]] - reach]
    if len(window) < EDGE_POINTS:  # more checkpoints, but none from the rise itself
        window = np.union1d(window, finite[finite >= past][-EDGE_POINTS:])
    window = window if len(window) >= 2 else finite[-2:]
    centred = positions[window] - positions[window].mean()
    spread = float(np.sum(centred**2))
    if len(window) < 2 or spread == 0:
        return False
    slope = float(np.sum(centred * smoothed[window]) / spread)
    if slope - EDGE_ERRORS * noise / np.sqrt(spread) < EDGE_SLOPE_SHARE * rate:
        return False
    before = smoothed[: window[0]]
    return len(before) == 0 or float(np.median(values[-3:])) - float(before.max()) >= EDGE_ERRORS * noise


def unseen_plateaus(
    values: np.ndarray,
    smoothed: np.ndarray,
    positions: np.ndarray,
    crossings: tuple[float, float, float],
    brackets: tuple[int, int],
    rise: float,
    noise: float,
) -> tuple[bool, bool]:
    """Whether the curve is still rising at its first and at its last checkpoint: its early and
    late plateau lie outside the scanned range.

    crossings: the log steps of the onset, midpoint and end. brackets: the index of the checkpoint
    before the onset crossing, and of the one after the end crossing.

    At the end, either the end crossing lies in the last interval, so that the late plateau is
    the last checkpoint alone, and that checkpoint lies more than ``EDGE_JUMP_SHARE`` of the rise
    above its smoothed neighbour (one off by noise alone does not make a plateau of its own: the
    end-point rule of :func:`inductscan.phases.running_median` pulls it to its neighbours' line,
    unless it is far off, and a crossing moved into the edge interval by noise leaves it close to
    its neighbour); or the curve still
    climbs at its last checkpoints (:func:`still_climbing`), over as long as the shorter half of
    the rise (onset to midpoint, or midpoint to end), at a sizeable share of the rise's mean slope.
    Noise on a long plateau can move that plateau's crossing deep into it and stretch its half of
    the rise, never both halves. A complete logistic's slope past its 90% point falls fast (to a
    third of its mean at 94%); cut off before about 95% of its rise, it still climbs at over half
    of it. The start mirrors the end.
    """
    onset, midpoint, end = crossings
    count = len(values)
    jump = EDGE_JUMP_SHARE * rise  # from the edge checkpoint to its smoothed neighbour
    early_unseen = brackets[0] == 0 and smoothed[1] - values[0] > jump
    late_unseen = brackets[1] == count - 1 and values[-1] - smoothed[-2] > jump
    half = min(midpoint - onset, end - midpoint)
    if not half > 0:
        return early_unseen, late_unseen
    rate = 0.8 * rise / (end - onset)  # from 10% to 90% of the rise: its mean slope, per log step
    mirrored = (-values[::-1], -smoothed[::-1], -positions[::-1], count - 1 - brackets[0])
    return (
        early_unseen or still_climbing(*mirrored, half, rate, noise),
        late_unseen or still_climbing(values, smoothed, positions, brackets[1], half, rate, noise),
    )


def two_stage(
    values: np.ndarray, positions: np.ndarray, crossings: tuple[float, float, float], early: float, rise: float
) -> str | None:
    """Which half of the change is a stage of its own: ``"early"`` when the onset comes long before
    the midpoint, ``"late"`` when the end comes long after it; None for one stage.

    A half is a stage of its own when it lasts ``TWO_STAGE_RATIO`` times as long as the other (in
    log steps) and, over its middle third, the curve holds a level at least ``TWO_STAGE_LEVEL`` of
    the rise from both plateaus (the median of its values there). A logistic's halves are equal;
    noise on a long plateau can stretch one (its crossing moved deep into the plateau), but the
    curve there stays at the plateau, so that alone makes no second stage.
    """
    onset, midpoint, end = crossings
    first, second = midpoint - onset, end - midpoint
    for which, low, high, longer, shorter in (
        ("early", onset, midpoint, first, second),
        ("late", midpoint, end, second, first),
    ):
        if not longer > TWO_STAGE_RATIO * max(shorter, 0.0):
            continue
        third = (high - low) / 3
        middle = values[(positions >= low + third) & (positions <= high - third)]
        margin = TWO_STAGE_LEVEL * rise
        if len(middle) and early + margin <= np.median(middle) <= early + rise - margin:
            return which
    return None
