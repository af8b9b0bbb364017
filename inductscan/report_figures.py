"""The report's Plotly figures, built in Python from tables already aggregated by
:mod:`inductscan.report`: each function returns a figure as a plain dict (Plotly's JSON, its data as
lists rather than Plotly's base64 arrays, so that the rounding decides the page's size), which the
page hands to ``Plotly.react`` as is. The page's own script only swaps data in (the heatmap's step,
a clicked head's curve); every layout, colour and label is decided here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative, sample_colorscale

from inductscan.metrics import get_metric
from inductscan.phase_view import bound, bound_position
from inductscan.vocabulary import RUN_KEYS

BAND_OPACITY = 0.12
MARKERS_UP_TO = 80  # checkpoints per line drawn with markers; denser lines are drawn as lines only
HEIGHT = 420


def palette(count: int) -> list[str]:
    """One colour per run, Plotly's qualitative palette (24 colours past 10 runs), cycled."""
    colours = qualitative.Plotly if count <= len(qualitative.Plotly) else qualitative.Dark24
    return [colours[index % len(colours)] for index in range(count)]


def axis_title(axis: str) -> str:
    return "tokens seen (log scale; step 0 not shown)" if axis == "tokens" else "training step (log scale; 0 not shown)"


def metric_title(metric: str) -> str:
    declared = get_metric(metric)
    best = "best head's " if declared.level == "head" else ""
    return f"{best}{declared.label} ({declared.unit})"


def _layout(**extra) -> dict:
    return {"height": HEIGHT, "margin": {"l": 70, "r": 20, "t": 50, "b": 60}, "template": "plotly_white", **extra}


def timing_figure(
    best: pd.DataFrame, phases: pd.DataFrame | None, metric: str, axis: str, runs: list[tuple], labels: list[str]
) -> dict:
    """The best head's ``metric`` against ``axis`` (log), one line per run, its onset-end span shaded
    and its midpoint dotted in the run's colour (a run still changing at an edge of the scan: a
    dash-dot line at its midpoint's bound and an arrow towards the midpoint); a dashed line at the
    metric's threshold.

    best: one row per (run, step) with ``value`` and, for a head score, the best head's ``layer``
    and ``head``. phases: ``find_phase_changes`` of the metric, None where it is not timed.
    """
    traces, shapes, arrows = [], [], []
    colours = palette(len(runs))
    by_run = dict(list(best.groupby(RUN_KEYS, sort=False)))
    head_score = get_metric(metric).level == "head"
    for identity, label, colour in zip(runs, labels, colours):
        curve = by_run.get(identity)
        if curve is None:
            continue
        curve = curve[curve[axis] > 0]
        data = {"x": curve[axis].tolist(), "y": curve["value"].tolist()}
        if head_score:
            data["customdata"] = curve[["step", "layer", "head"]].to_numpy().tolist()
        hover = f"{label}<br>%{{x:.4s}} {axis}<br>{metric} %{{y:.3f}}"
        hover += "<br>head %{customdata[1]}.%{customdata[2]} (step %{customdata[0]})" if head_score else ""
        style = {"name": label, "line": {"color": colour}, "marker": {"size": 5}}
        mode = "lines+markers" if len(curve) <= MARKERS_UP_TO else "lines"
        traces.append(scatter(data, mode=mode, hovertemplate=hover + "<extra></extra>", **style))
        shapes += _phase_shapes(phases, identity, axis, colour)
        arrows += _bound_annotations(phases, identity, axis, colour)
    threshold = get_metric(metric).threshold
    if threshold is not None:
        shapes.append(_line(threshold, "y", "grey", "dash"))
    legend = "shaded: onset-end (10-90% of the change);<br>dotted: midpoint"  # short lines: the plot keeps its width
    if arrows:
        legend += ";<br>dash-dot and arrow: the midpoint<br>lies past it (still changing<br>at an edge of the scan)"
    figure = go.Figure(
        layout=_layout(
            title={"text": f"{metric_title(metric)} during training"},
            xaxis={"type": "log", "title": {"text": axis_title(axis)}},
            yaxis={"title": {"text": metric_title(metric)}},
            shapes=shapes,
            annotations=arrows,
            legend={"title": {"text": legend}},
        )
    )
    return figure.to_plotly_json() | {"data": traces}


def scatter(data: dict, **style) -> dict:
    """A scatter trace as Plotly JSON: its style checked by Plotly, its data lists (long, already
    plain and rounded) added as they are, since checking every number costs seconds on a big scan."""
    return go.Scatter(**style).to_plotly_json() | data


def _line(value: float, along: str, colour: str, dash: str) -> dict:
    """A vertical (``along`` x) or horizontal (``along`` y) line across the whole plot at ``value``."""
    if along == "x":
        return {
            "type": "line",
            "xref": "x",
            "yref": "paper",
            "x0": value,
            "x1": value,
            "y0": 0,
            "y1": 1,
            "line": {"color": colour, "dash": dash, "width": 1.5},
        }
    return {
        "type": "line",
        "xref": "paper",
        "yref": "y",
        "x0": 0,
        "x1": 1,
        "y0": value,
        "y1": value,
        "line": {"color": colour, "dash": dash, "width": 1},
    }


def _phase_row(phases: pd.DataFrame | None, identity: tuple) -> pd.Series | None:
    """The timing row of one run, if it has a phase change."""
    if phases is None or phases.empty:
        return None
    match = phases[(phases[RUN_KEYS] == pd.Series(identity, index=RUN_KEYS)).all(axis=1)]
    return match.iloc[0] if len(match) and match.iloc[0]["phase_change"] else None


def _bound_annotations(phases: pd.DataFrame | None, identity: tuple, axis: str, colour: str) -> list[dict]:
    """An arrow from a run's midpoint bound towards where its midpoint lies, for a run still
    changing at an edge of the scan (its dash-dot line is among :func:`_phase_shapes`)."""
    row = _phase_row(phases, identity)
    where = bound_position(row, "midpoint", axis) if row is not None else None
    if where is None:
        return []
    limit = bound(row)
    return [
        {
            "x": float(np.log10(where * (1.8 if limit == "after" else 1 / 1.8))),
            "y": 0.98,
            "ax": float(np.log10(where)),  # the tail, at the bound (a log axis takes log10 here)
            "ay": 0,  # pixels: level with the head
            "xref": "x",
            "yref": "paper",
            "axref": "x",
            "ayref": "pixel",
            "showarrow": True,
            "arrowhead": 2,
            "arrowcolor": colour,
            "text": "",
            "hovertext": f"midpoint {limit} {where:.4g} {axis}: {row['note']}",
        }
    ]


def _phase_shapes(phases: pd.DataFrame | None, identity: tuple, axis: str, colour: str) -> list[dict]:
    row = _phase_row(phases, identity)
    if row is None:
        return []
    if bound(row) is not None:  # a plateau outside the scan: a bound, not a midpoint
        where = bound_position(row, "midpoint", axis)
        return [] if where is None else [_line(where, "x", colour, "dashdot")]
    shapes = []
    onset, midpoint, end = (row[f"{name}_{axis}"] for name in ("onset", "midpoint", "end"))
    if pd.notna(onset) and pd.notna(end):
        shapes.append(
            {
                "type": "rect",
                "xref": "x",
                "yref": "paper",
                "x0": float(onset),
                "x1": float(end),
                "y0": 0,
                "y1": 1,
                "fillcolor": colour,
                "opacity": BAND_OPACITY,
                "line": {"width": 0},
                "layer": "below",
            }
        )
    if pd.notna(midpoint):
        shapes.append(_line(float(midpoint), "x", colour, "dot"))
    return shapes


def per_head_figure(changed: pd.DataFrame, axis: str, runs: list[tuple], labels: list[str]) -> dict:
    """Each head that changes (x: layer.head) and its midpoint (log y) with onset-end whiskers, one
    marker per run side by side; ``changed``: the per-head timing rows with a phase change."""
    figure = go.Figure()
    order = sorted({(int(layer), int(head)) for layer, head in zip(changed["layer"], changed["head"])})
    categories = [f"{layer}.{head}" for layer, head in order]
    for identity, label, colour in zip(runs, labels, palette(len(runs))):
        rows = changed[(changed[RUN_KEYS] == pd.Series(identity, index=RUN_KEYS)).all(axis=1)]
        rows = rows[rows[f"midpoint_{axis}"].notna()]
        if rows.empty:
            continue
        middle = rows[f"midpoint_{axis}"].astype(float).to_numpy()
        onset = rows[f"onset_{axis}"].astype(float).fillna(pd.Series(middle, index=rows.index)).to_numpy()
        end = rows[f"end_{axis}"].astype(float).fillna(pd.Series(middle, index=rows.index)).to_numpy()
        trace = go.Scatter(
            x=[f"{layer}.{head}" for layer, head in zip(rows["layer"], rows["head"])],
            y=middle.tolist(),
            error_y={
                "type": "data",
                "symmetric": False,
                "array": (end - middle).tolist(),
                "arrayminus": (middle - onset).tolist(),
            },
            mode="markers",
            name=label,
            marker={"color": colour, "size": 8},
            hovertemplate=f"{label}<br>head %{{x}}<br>midpoint %{{y:.4s}} {axis}<extra></extra>",
        )
        figure.add_trace(trace)
    figure.update_layout(
        _layout(
            title={"text": "When each head's induction score rises (midpoint; whiskers: onset to end)"},
            xaxis={
                "type": "category",
                "categoryorder": "array",
                "categoryarray": categories,
                "title": {"text": "head (layer.head)"},
            },
            yaxis={"type": "log", "title": {"text": axis_title(axis).replace(" (log scale; step 0 not shown)", "")}},
            scattermode="group",
        )
    )
    return figure.to_plotly_json()


def icl_figure(curves: pd.DataFrame, label: str) -> dict:
    """Loss against token position (log x) for one run, a line per checkpoint coloured by step
    (log colour scale), as in Olsson et al.; ``curves``: that run's rows, already subsampled."""
    figure = go.Figure()
    traces = []
    steps = np.sort(curves["step"].unique())
    logs = np.log10(np.maximum(steps, 1).astype(float))
    span = max(logs[-1] - logs[0], 1e-9)
    colours = sample_colorscale("Viridis", list((logs - logs[0]) / span))
    for step, colour in zip(steps, colours):
        rows = curves[curves["step"] == step]
        traces.append(
            scatter(
                {"x": rows["position"].tolist(), "y": rows["loss"].tolist()},
                mode="lines",
                line={"color": colour, "width": 1.2},
                name=f"step {step}",
                showlegend=False,
                hovertemplate=f"step {step}<br>token %{{x}}<br>loss %{{y:.3f}} nats<extra></extra>",
            )
        )
    evenly = np.linspace(logs[0], logs[-1], min(len(steps), 6))  # ticks spread on the colour bar's log scale
    ticks = np.unique(np.abs(logs[None, :] - evenly[:, None]).argmin(axis=1))
    figure.add_trace(  # an invisible marker that carries the colour bar of the steps
        go.Scatter(
            x=[None],
            y=[None],
            mode="markers",
            showlegend=False,
            hoverinfo="skip",
            marker={
                "colorscale": "Viridis",
                "cmin": float(logs[0]),
                "cmax": float(logs[0] + span),
                "color": [float(logs[0])],
                "showscale": True,
                "colorbar": {
                    "title": {"text": "step"},
                    "tickvals": logs[ticks].tolist(),
                    "ticktext": [f"{steps[tick]:,}" for tick in ticks],
                },
            },
        )
    )
    figure.update_layout(
        _layout(
            title={"text": f"Loss by token position: {label}"},
            xaxis={"type": "log", "title": {"text": "token position in the context"}},
            yaxis={"title": {"text": "mean loss (nats)"}},
        )
    )
    drawn = figure.to_plotly_json()
    return drawn | {"data": traces + drawn["data"]}


def heatmap_figure() -> dict:
    """The heatmap's frame: axes, colour bar and hover; the page fills in each step's grid."""
    figure = go.Figure(
        go.Heatmap(
            z=[[None]],
            colorscale="Viridis",
            colorbar={"title": {"text": "score"}},
            hovertemplate="head %{y}.%{x}<br>score %{z:.3f}<extra></extra>",
            xgap=1,
            ygap=1,
        )
    )
    figure.update_layout(
        _layout(
            xaxis={"title": {"text": "head"}, "dtick": 1, "constrain": "domain"},
            yaxis={"title": {"text": "layer"}, "dtick": 1, "autorange": "reversed"},
        )
    )
    return figure.to_plotly_json()


def head_curve_layout(axis: str) -> dict:
    """Layout of the curve of the heads clicked on the heatmap (traces come from the page)."""
    return _layout(
        title={"text": "Clicked heads over training (click a heatmap cell to add one)"},
        xaxis={"type": "log", "title": {"text": axis_title(axis)}},
        yaxis={"title": {"text": "score"}},
    )
