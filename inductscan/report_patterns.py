"""The report's attention patterns (``inductscan report --patterns K``): the K heads with the highest
induction score at each run's phase-change checkpoint, drawn by :func:`inductscan.pattern.plot_head_pattern`
and embedded in the page as PNG images (base64 ``data:`` URLs, so that the page stays one file).

Each run's checkpoint is run again (:func:`inductscan.pattern.head_patterns`, one forward pass for
its K heads), so this costs a fetch and a forward pass per run and is off by default. The
checkpoint is the scanned one nearest (in log steps) to the midpoint that
:func:`inductscan.phases.find_phase_changes` times for the run's induction curve; the one after
the midpoint's crossing where the change goes on past an edge of the scan (the midpoint is then
only bounded); the run's last checkpoint where it has no phase change in the scanned range.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os

import pandas as pd

from inductscan.errors import CheckpointError, UnsupportedArchitectureError
from inductscan.phases import find_phase_changes, verdict
from inductscan.vocabulary import RUN_KEYS

PATTERN_DPI = 80


def pattern_checkpoint(phase: pd.Series, steps: list[int]) -> tuple[int, str]:
    """The step whose patterns a run shows, and why that one: ``phase`` is the run's row of
    :func:`find_phase_changes` (induction), ``steps`` its scanned steps, in order."""
    if not phase["phase_change"]:
        if verdict(phase) == "too few checkpoints":
            return steps[-1], "too few checkpoints to time its rise: its last checkpoint"
        return steps[-1], "no phase change in the scanned range: its last checkpoint"
    before, after = int(phase["midpoint_step_before"]), int(phase["midpoint_step_after"])
    midpoint = phase["midpoint_step"]
    if pd.isna(midpoint):
        return after, f"the phase change goes on past the scan: the checkpoint after its midpoint's bound ({after:,})"
    nearer = before if before > 0 and math.log(midpoint / before) < math.log(after / midpoint) else after
    return nearer, f"the checkpoint nearest the phase change's midpoint (step {midpoint:,.0f})"


def patterns_html(results: str | os.PathLike, frame: pd.DataFrame, labels: dict[tuple, str], top: int) -> str:
    """The section's HTML: per run, the ``top`` heads' patterns at its chosen checkpoint.

    frame: the report's rows (indexed as :func:`inductscan.load_results`, with ``tokens`` and
    ``induction``); labels: each run's (suite, run, seed) -> its label on the page. A run whose
    checkpoint cannot be run again (gone from its folder, not in the cache offline) gets a line
    saying why instead of images."""
    from inductscan.pattern import head_patterns, plot_head_pattern

    flat = frame.reset_index()
    phases = find_phase_changes(frame, "induction").set_index(RUN_KEYS)
    blocks = []
    for identity, rows in flat.groupby(RUN_KEYS, sort=True):
        suite, run, seed = identity
        step, why = pattern_checkpoint(phases.loc[identity], sorted(rows["step"].unique()))
        at_step = rows[rows["step"] == step].nlargest(top, "induction")
        heads = list(zip(at_step["layer"].astype(int), at_step["head"].astype(int)))
        title = f'<h3>{html.escape(labels[identity])}, step {step:,}</h3><p class="hint">{html.escape(why)}</p>'
        try:
            found = head_patterns(results, step, heads, suite=suite, run=run, seed=int(seed))
        except (CheckpointError, UnsupportedArchitectureError) as error:
            blocks.append(f'{title}<p class="notice">no patterns: {html.escape(str(error))}</p>')
            continue
        figures = "".join(_figure_html(pattern, plot_head_pattern(pattern)) for pattern in found)
        blocks.append(f'{title}<div class="patterns">{figures}</div>')
    hint = (
        f"The {top} heads with the highest induction score at each run's phase-change checkpoint, that "
        "checkpoint run again on the scan's probe: query x key, the mean over the probe's sequences, the "
        "cells the induction score weighs outlined in red."
    )
    return f'<h2>Attention patterns</h2><p class="hint">{html.escape(hint)}</p>{"".join(blocks)}'


def _figure_html(pattern, figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=PATTERN_DPI)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    caption = f"layer {pattern.layer} head {pattern.head}: induction {pattern.recorded_induction:.3f}"
    return (
        f'<figure class="pattern"><img class="pattern" alt="{html.escape(caption)}" '
        f'src="data:image/png;base64,{encoded}"><figcaption>{html.escape(caption)}</figcaption></figure>'
    )
