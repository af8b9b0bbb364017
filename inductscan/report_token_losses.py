"""The report's token-loss section, for a results folder scanned with ``--token-losses``: the
seed-against-seed scatter of per-token log-probabilities at a step chosen with a slider, each run's
loss curves of the tokens whose loss changes most, and the loss PCA.

The analyses are :mod:`inductscan.compare`'s, the ones behind ``inductscan compare`` and ``plot
--kind seed-scatter / token-curves / loss-pca`` (:func:`~inductscan.compare.seed_scatter`,
:func:`~inductscan.compare.curve_shapes`, :func:`~inductscan.compare.loss_pca`), with the CLI's
defaults; this module bounds what the page embeds, and makes the section's Plotly figures and HTML.

What the page embeds: the scatter at no more than ``MAX_SCATTER_STEPS`` of the two runs' common
steps (the last included) and no more than ``MAX_SCATTER_TOKENS`` tokens, evenly spread in
(example, position) order (Pearson's r and the ``SCATTER_OUTLIERS`` tokens circled are over every
token); the ``CURVE_TOKENS`` curves of each run at no more than ``MAX_CURVE_STEPS`` checkpoints;
each checkpoint's place on the first two principal components and each component's ``PCA_TOKENS``
heaviest tokens. Numbers to :data:`inductscan.report_numbers.DIGITS` significant digits.
"""

from __future__ import annotations

import html
import os

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from inductscan.compare import TOKEN, curve_shapes, loss_pca, seed_scatter
from inductscan.errors import ConfigError
from inductscan.labels import run_labels
from inductscan.report_figures import HEIGHT, axis_title, palette, scatter
from inductscan.report_numbers import rounded, subsample
from inductscan.results import token_losses
from inductscan.results.selection import selection
from inductscan.vocabulary import RUN_KEYS

MAX_SCATTER_STEPS = 24
MAX_SCATTER_TOKENS = 2000
SCATTER_OUTLIERS = 10  # as `inductscan compare` and `plot --kind seed-scatter`
CURVE_TOKENS = 20  # as `plot --kind token-curves`
MAX_CURVE_STEPS = 120
PCA_TOKENS = 5  # as `plot --kind loss-pca`
SHAPE_COLOURS = {"S-shaped": "#d62728", "smooth": "#1f77b4"}  # matplotlib's C3 and C0, as the CLI's figure


def token_loss_section(results: str | os.PathLike, frame: pd.DataFrame, chosen: dict) -> tuple[str, dict] | None:
    """The section's HTML and the page's data for it, where ``results`` holds token losses of the
    report's runs (``frame``: the report's scores) within the selection ``chosen``; else None."""
    if not token_losses.seeds_held(results):
        return None
    runs = sorted(set(frame.index.to_frame(index=False)[RUN_KEYS].itertuples(index=False, name=None)))
    losses = token_losses.load_token_losses(results, **selection(**chosen))
    every = _runs_of(losses)
    held = [identity for identity in every if identity in runs]  # not a run without scores (a killed scan's)
    if not held:
        return None
    losses = losses if len(held) == len(every) else losses[_rows_of(losses, held)]
    label_of = run_labels(runs)  # as the rest of the page names them
    labels = [label_of[identity] for identity in held]
    ids = token_losses.icl_ids(results)
    data = {
        "scatter": scatter_data(losses, held, labels, ids),
        "curves": curves_data(losses, labels, ids),
        "pca": pca_data(losses, labels, ids),
    }
    lacking = token_losses.missing(results)
    return section_html(losses, data, int(_rows_of(lacking, held).sum())), data


def _runs_of(frame: pd.DataFrame) -> list[tuple]:
    """The runs (suite, run, seed) of a frame, sorted."""
    return [tuple(identity) for identity in frame.groupby(RUN_KEYS, sort=True).size().index]


def _rows_of(frame: pd.DataFrame, runs: list[tuple]) -> np.ndarray:
    """Which rows of ``frame`` belong to one of ``runs``: a column at a time, as comparing strings is
    fast only against one value."""
    keep = np.zeros(len(frame), dtype=bool)
    for identity in runs:
        keep |= np.logical_and.reduce(
            [(frame[key] == value).to_numpy(dtype=bool) for key, value in zip(RUN_KEYS, identity)]
        )
    return keep


def _token_names(ids: pd.DataFrame | None, tokens: pd.DataFrame) -> list[str]:
    """'example E, position P (token T)' for each row of ``tokens`` (columns example, position)."""
    where = list(zip(tokens["example"], tokens["position"]))
    found = [None] * len(where) if ids is None else ids["token"].reindex(where).tolist()
    return [
        f"example {example}, position {position}" + ("" if pd.isna(token) else f" (token {int(token)})")
        for (example, position), token in zip(where, found)
    ]


def scatter_data(losses: pd.DataFrame, runs: list[tuple], labels: list[str], ids: pd.DataFrame | None) -> dict:
    """The first two runs' per-token log-probabilities at each of their (subsampled) common steps:
    the figure at the last, and each step's points, outliers and title for the page's slider."""
    if len(runs) < 2:
        return {"note": f"Only {labels[0]} holds token losses here: the seed-against-seed scatter needs two seeds"}
    pair = losses[_rows_of(losses, runs[:2])]
    steps_of = [set(rows["step"]) for _, rows in pair.groupby(RUN_KEYS)]
    shared = np.array(sorted(steps_of[0] & steps_of[1]), dtype=np.int64)
    if not len(shared):
        return {"note": f"{labels[0]} and {labels[1]} share no step: no seed-against-seed scatter"}
    steps = shared[subsample(len(shared), MAX_SCATTER_STEPS)]
    by_step = dict(list(pair[pair["step"].isin(steps)].groupby("step")))
    scatters = [seed_scatter(by_step[step], step=int(step)) for step in steps]  # the pair's first run is x
    tokens = pd.concat([found.points[TOKEN] for found in scatters]).drop_duplicates().sort_values(TOKEN)
    shown = tokens.iloc[subsample(len(tokens), MAX_SCATTER_TOKENS)]
    where = pd.MultiIndex.from_frame(shown)
    values = np.concatenate([found.points[["logprob_a", "logprob_b"]].to_numpy().ravel() for found in scatters])
    values = values[np.isfinite(values)]
    scale = float(np.abs(values).max(initial=0.0))
    low, high = float(values.min(initial=0.0)), float(values.max(initial=0.0))
    pad = 0.03 * max(high - low, 1e-6)
    x, y, outliers, titles = [], [], [], []
    for found in scatters:
        points = found.points.set_index(TOKEN).reindex(where)
        x.append(rounded(points["logprob_a"].to_numpy(), scale=scale))
        y.append(rounded(points["logprob_b"].to_numpy(), scale=scale))
        apart = found.outliers(SCATTER_OUTLIERS)
        outliers.append(
            {
                "x": rounded(apart["logprob_a"].to_numpy(), scale=scale),
                "y": rounded(apart["logprob_b"].to_numpy(), scale=scale),
                "text": _token_names(ids, apart),
            }
        )
        titles.append(
            f"{labels[0]} vs {labels[1]} at step {found.step:,}: Pearson r = {found.correlation:.3f} "
            f"over {len(found.points):,} tokens"
        )
    figure = scatter_figure(labels[:2], [low - pad, high + pad], shown, x[-1], y[-1], outliers[-1], titles[-1])
    return {
        "figure": figure,
        "steps": steps.tolist(),
        "x": x,
        "y": y,
        "outliers": outliers,
        "titles": titles,
        "tokens_shown": len(shown),
        "tokens": len(tokens),
        "common_steps": len(shared),
    }


def scatter_figure(labels: list[str], limits: list[float], shown: pd.DataFrame, x, y, outliers, title) -> dict:
    """The scatter at one step: a point per shown token, the outliers circled, the diagonal dashed;
    the axes fixed to ``limits`` so that moving the slider moves the points, not the axes."""
    first, second = labels
    hover = f"%{{text}}<br>{first}: log p %{{x:.3f}}<br>{second}: log p %{{y:.3f}}<extra></extra>"
    names = [f"example {example}, position {position}" for example, position in shown.itertuples(index=False)]
    traces = [
        scatter(
            {"x": x, "y": y, "text": names},
            mode="markers",
            name="token",
            marker={"size": 5, "opacity": 0.5, "color": "#1f77b4"},
            hovertemplate=hover,
        ),
        scatter(
            outliers,
            mode="markers",
            name=f"the {SCATTER_OUTLIERS} furthest apart",
            marker={"size": 11, "color": "rgba(0,0,0,0)", "line": {"color": "#d62728", "width": 1.5}},
            hovertemplate=hover,
        ),
        scatter(
            {"x": limits, "y": limits},
            mode="lines",
            name="equal",
            line={"color": "grey", "dash": "dash", "width": 1},
            hoverinfo="skip",
        ),
    ]
    layout = _layout(
        title={"text": title},
        xaxis={"title": {"text": f"log-probability of the token, {first} (nats)"}, "range": limits},
        yaxis={"title": {"text": f"log-probability of the token, {second} (nats)"}, "range": limits},
    )
    return {"data": traces, "layout": layout}


def curves_data(losses: pd.DataFrame, labels: list[str], ids: pd.DataFrame | None) -> dict:
    """Each run's ``CURVE_TOKENS`` tokens whose loss changes most from its first checkpoint with
    tokens seen to its last, each curve coloured by its shape (:func:`inductscan.compare.curve_shapes`)."""
    try:
        shapes = curve_shapes(losses, count=CURVE_TOKENS)
    except ConfigError as error:
        return {"note": f"No per-token loss curves: {error}"}
    shares = shapes.shares()
    figures = []
    for label, (name, matrix) in zip(labels, shapes.curves.items()):  # both in the runs' order
        chosen = shapes.shapes[shapes.shapes["run"] == name]
        share = ", ".join(f"{shares.loc[name, shape]:.0%} {shape}" for shape in SHAPE_COLOURS)
        shown = matrix.iloc[subsample(len(matrix), MAX_CURVE_STEPS)]
        title = f"{label}: the {len(chosen)} tokens whose loss changes most ({share})"
        figures.append({"label": label, "figure": curve_figure(shown, chosen, ids, title), "checkpoints": len(matrix)})
    return {"runs": figures}


def curve_figure(matrix: pd.DataFrame, chosen: pd.DataFrame, ids: pd.DataFrame | None, title: str) -> dict:
    """Loss against tokens seen (log x), a line per token (columns of ``matrix``), its colour its shape."""
    tokens = matrix.index.get_level_values("tokens").tolist()
    scale = float(np.nanmax(np.abs(matrix.to_numpy(dtype=float))))
    traces, named = [], set()
    for (_, values), name, shape in zip(matrix.items(), _token_names(ids, chosen), chosen["shape"]):
        traces.append(
            scatter(
                {"x": tokens, "y": rounded(values.to_numpy(), scale=scale)},
                mode="lines",
                name=shape,
                legendgroup=shape,
                showlegend=shape not in named,
                line={"color": SHAPE_COLOURS[shape], "width": 1.2},
                opacity=0.75,
                hovertemplate=f"{name}, {shape}<br>%{{x:.4s}} tokens<br>loss %{{y:.3f}} nats<extra></extra>",
            )
        )
        named.add(shape)
    layout = _layout(
        title={"text": title},
        xaxis={"type": "log", "title": {"text": axis_title("tokens")}},
        yaxis={"title": {"text": "loss (nats)"}},
        legend={"title": {"text": "shape, by BIC: logistic<br>vs line in log tokens"}},
    )
    return {"data": traces, "layout": layout}


def pca_data(losses: pd.DataFrame, labels: list[str], ids: pd.DataFrame | None) -> dict:
    """Every run's path through the first two principal components of the (checkpoint x token)
    loss matrix of all runs (:func:`inductscan.compare.loss_pca`), and each component's heaviest tokens."""
    try:
        analysis = loss_pca(losses, count=2)
    except ConfigError as error:
        return {"note": f"No loss PCA: {error}"}
    if analysis.components.shape[0] < 2:
        return {"note": "No loss PCA: it needs at least 2 components; scan more checkpoints"}
    explained = [float(share) for share in analysis.explained[:2]]
    trajectory = analysis.trajectory
    scale = float(np.abs(trajectory[["pc1", "pc2"]].to_numpy()).max())
    traces = []
    names = list(dict.fromkeys(trajectory["run"]))  # compare's names, in the runs' order
    for label, name, colour in zip(labels, names, palette(len(labels))):
        rows = trajectory[trajectory["run"] == name].sort_values("step")
        traces.append(
            scatter(
                {
                    "x": rounded(rows["pc1"].to_numpy(), scale=scale),
                    "y": rounded(rows["pc2"].to_numpy(), scale=scale),
                    "customdata": rows[["step", "tokens"]].to_numpy().tolist(),
                },
                mode="lines+markers",
                name=label,
                line={"color": colour},
                marker=_path_markers(len(rows)),
                hovertemplate=f"{label}<br>step %{{customdata[0]:,}}, %{{customdata[1]:.4s}} tokens"
                "<br>PC1 %{x:.3f}, PC2 %{y:.3f}<extra></extra>",
            )
        )
    layout = _layout(
        title={"text": "Per-token losses through training (circle: first checkpoint, square: last)"},
        xaxis={"title": {"text": f"PC1 ({explained[0]:.1%} of the variance)"}},
        yaxis={"title": {"text": f"PC2 ({explained[1]:.1%} of the variance)"}},
    )
    top = analysis.top_tokens(PCA_TOKENS)
    top.insert(3, "name", _token_names(ids, top))
    return {
        "figure": {"data": traces, "layout": layout},
        "explained": explained,
        "top": top[["component", "example", "position", "loading"]].to_numpy().tolist(),
        "table": pca_table(top),
        "tokens": int(analysis.components.shape[1]),
        "checkpoints": len(trajectory),
    }


def _path_markers(count: int) -> dict:
    """A path's markers: a circle at its first checkpoint, a square at its last, small open circles between."""
    if count == 1:
        return {"symbol": ["circle"], "size": [10]}
    return {"symbol": ["circle"] + ["circle-open"] * (count - 2) + ["square"], "size": [10] + [5] * (count - 2) + [10]}


def pca_table(top: pd.DataFrame) -> str:
    """Each component's heaviest tokens and their loadings, as an HTML table."""
    rows = "".join(
        f'<tr><td>{html.escape(row.component.upper())}</td><td>{html.escape(row.name)}</td><td data-sort="'
        f'{float(row.loading)!r}">{row.loading:+.3f}</td></tr>'
        for row in top.itertuples()
    )
    head = "<tr><th>component</th><th>token</th><th>loading</th></tr>"
    return f'<table class="sortable" id="token-pca-tokens"><thead>{head}</thead><tbody>{rows}</tbody></table>'


def _layout(**extra) -> dict:
    """A layout as Plotly JSON (its template spelled out, as Plotly.js needs it), like the report's others."""
    layout = {"height": HEIGHT, "margin": {"l": 70, "r": 20, "t": 50, "b": 60}, "template": "plotly_white", **extra}
    return go.Figure(layout=layout).to_plotly_json()["layout"]


def section_html(losses: pd.DataFrame, data: dict, lacking: int) -> str:
    """The section: its headings and captions, and a place for each chart (or, where a chart cannot
    be drawn, the reason); the page's script draws the charts from ``data``."""
    examples, positions = losses["example"].nunique(), losses["position"].nunique()
    runs = len(losses[RUN_KEYS].drop_duplicates())
    parts = [
        "<h2>Token losses</h2>",
        _hint(
            f"The loss of every predicted token of the ICL examples at every checkpoint (scan --token-losses): "
            f"{examples} examples x {positions} positions, {runs} run(s). A token is named by its example and "
            "position (the predicted token's number in the context, from 2). The analyses of inductscan compare "
            "and plot --kind seed-scatter, token-curves and loss-pca."
        ),
    ]
    if lacking:
        parts.append(
            _notice(
                f"{lacking} scored checkpoint(s) of these runs have no token losses (scanned without "
                "--token-losses); a scan with --token-losses adds them"
            )
        )
    return "\n".join(parts + _scatter_html(data["scatter"]) + _curves_html(data["curves"]) + _pca_html(data["pca"]))


def _hint(text: str) -> str:
    return f'<p class="hint">{html.escape(text)}</p>'


def _notice(text: str) -> str:
    return f'<p class="notice">{html.escape(text)}</p>'


def _scatter_html(scatter: dict) -> list[str]:
    parts = ["<h3>Seed against seed</h3>"]
    if "note" in scatter:
        return parts + [_notice(scatter["note"])]
    shown = (
        f"all {scatter['tokens']:,} tokens are drawn"
        if scatter["tokens_shown"] == scatter["tokens"]
        else f"{scatter['tokens_shown']:,} of the {scatter['tokens']:,} tokens are drawn, evenly spread in "
        "(example, position) order"
    )
    steps = len(scatter["steps"])
    parts.append(
        _hint(
            f"Each token's log-probability under one seed against the other's, at one step (dashed: equal); circled: "
            f"the {SCATTER_OUTLIERS} tokens they differ on most. Pearson's r and the circled tokens are over every "
            f"token; {shown}. The slider moves over "
            + (
                f"the {steps} steps both seeds hold."
                if steps == scatter["common_steps"]
                else f"{steps} of the {scatter['common_steps']} steps both seeds hold, evenly spread."
            )
        )
    )
    last = steps - 1
    parts.append(
        f'<div><input id="token-step-slider" type="range" min="0" max="{last}" value="{last}"> '
        '<span id="token-step-label"></span></div>'
    )
    return parts + ['<div id="token-scatter" class="chart"></div>']


def _curves_html(curves: dict) -> list[str]:
    parts = ["<h3>The tokens whose loss changes most</h3>"]
    if "note" in curves:
        return parts + [_notice(curves["note"])]
    thinned = any(run["checkpoints"] > MAX_CURVE_STEPS for run in curves["runs"])
    parts.append(
        _hint(
            f"Per run, the {CURVE_TOKENS} tokens whose loss changes most from its first checkpoint with tokens seen to "
            "its last, against tokens seen. Red: S-shaped (a logistic in log tokens fits better than a straight line, "
            "by at least 2 in BIC); blue: smooth."
            + (f" Drawn at {MAX_CURVE_STEPS} checkpoints at most, evenly spread." if thinned else "")
        )
    )
    options = "".join(
        f'<option value="{index}">{html.escape(run["label"])}</option>' for index, run in enumerate(curves["runs"])
    )
    parts.append(f'<label>run <select id="token-run-select">{options}</select></label>')
    return parts + ['<div id="token-curves" class="chart"></div>']


def _pca_html(pca: dict) -> list[str]:
    parts = ["<h3>Loss PCA</h3>"]
    if "note" in pca:
        return parts + [_notice(pca["note"])]
    parts.append(
        _hint(
            f"The principal components of the loss matrix whose rows are every run's checkpoints ({pca['checkpoints']} "
            f"in all) and whose columns are the {pca['tokens']:,} tokens they all hold (centred): each run's path "
            f"through the first two, and the {PCA_TOKENS} tokens that weigh most on each. A loading's sign says "
            "which way the token's loss moves a run along the component."
        )
    )
    return parts + ['<div id="token-pca" class="chart"></div>', pca["table"]]
