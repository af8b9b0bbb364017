"""Every kind of figure ``inductscan plot`` draws, in one registry: what it shows, the options it
takes, how it reads its rows and how it draws them; and :func:`plot`, which writes one.

    inductscan.plot("timing", "results/", "timing.png")
    inductscan.plot("compare", ["small/", "medium/"], "compare.png", x="fraction")

Importing this module imports neither pandas nor matplotlib (the command line reads the registry
for its help): a kind's functions import what they need when they run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from inductscan.errors import ConfigError, OutputError, parameter
from inductscan.metrics import DEFAULT_METRIC, get_metric
from inductscan.results.layout import refuse_a_missing_folder

IMAGE_SUFFIXES = (".png", ".svg", ".pdf")
TOKEN_KINDS = ("seed-scatter", "token-curves", "loss-pca")  # from the token-losses side table
OPTIONS = {  # an option of plot(), and the kinds it changes (the selection applies to every kind)
    "metric": ("timing", "heatmap", "seeds", "compare", "effects"),
    "threshold": ("timing", "gain"),
    "x": ("compare",),
    "total_tokens": ("compare",),
    "step": ("seed-scatter",),
    "top": TOKEN_KINDS,
}


@dataclass
class PlotRequest:
    """What :func:`plot` was asked: the folders, the selection and the options; ``warnings`` collects
    what a kind's reader has to say (token losses missing for some checkpoints)."""

    results: list[Path]
    chosen: dict
    metric: str
    threshold: float | None = None
    x: str = "tokens"
    total_tokens: int | None = None
    step: int | None = None
    top: int | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PlotKind:
    """A kind of figure: ``description`` (the help of ``--kind``), whether it draws ``one_folder``
    only, its default metric, and its two steps: ``read`` the rows of the request, ``draw`` them
    into a matplotlib Figure. The options it takes are :data:`OPTIONS`'."""

    description: str
    read: Callable[[PlotRequest], object]
    draw: Callable[[PlotRequest, object], object]
    one_folder: bool = False
    default_metric: str = DEFAULT_METRIC


def _best_rows(best_of: str | None = None, columns: list[str] | None = None):
    """A reader of one row per checkpoint: the best head's ``best_of`` (default: the request's metric)."""

    def read(request: PlotRequest):
        import functools

        from inductscan.results.queries import best_rows
        from inductscan.timing_compare import load_several

        metric = best_of or request.metric
        return load_several(
            request.results, functools.partial(best_rows, metric=metric, columns=columns, **request.chosen)
        )

    return read


def _every_head(request: PlotRequest):
    from inductscan.results.queries import load_selection
    from inductscan.timing_compare import load_several

    columns = ["tokens", request.metric]
    return load_several(request.results, lambda path: load_selection(path, columns=columns, **request.chosen))


def _require_held(request: PlotRequest) -> None:
    """A one-folder kind reads a table of its own: the names of its selection are checked here."""
    from inductscan.results import sql
    from inductscan.results.selection import selection

    sql.require_held(request.results[0], selection(**request.chosen))


def _icl_curves(request: PlotRequest):
    from inductscan.results.read import load_icl_curves
    from inductscan.results.selection import selection

    _require_held(request)
    return load_icl_curves(request.results[0], **selection(**request.chosen))


def _token_losses(request: PlotRequest):
    from inductscan.results.selection import selection
    from inductscan.seed_comparison import require_held_seeds, token_losses_of

    _require_held(request)
    suite = request.chosen["suite"]
    require_held_seeds(request.results[0], request.chosen["seed"], suite if isinstance(suite, str) else None)
    return token_losses_of(request.results[0], request.warnings, **selection(**request.chosen))


def _draw(name: str, *, on_tokens: bool = False, **arguments):
    """A drawer that calls ``inductscan.plots.NAME(rows, ...)`` with the request's ``arguments``
    (each the name of a request field); ``on_tokens``: a plot against tokens seen, which leaves
    out, with a warning, the runs that count none beside runs that do (they have no place on its axis)."""

    def draw(request: PlotRequest, rows):
        from inductscan import plots

        if on_tokens:
            rows = _without_untokened_runs(request, rows)
        return getattr(plots, name)(rows, **{key: getattr(request, field) for key, field in arguments.items()})

    return draw


def _without_untokened_runs(request: PlotRequest, rows):
    """``rows`` less the runs whose checkpoints count no tokens, when other runs count them; each
    left out is named in a warning (its line would be in the legend, with nothing drawn)."""
    from inductscan.labels import run_labels
    from inductscan.vocabulary import RUN_KEYS

    flat = rows.reset_index()
    if "tokens" not in flat:
        return rows
    counted = (flat["tokens"] > 0).groupby([flat[key] for key in RUN_KEYS]).transform("any").to_numpy()
    if counted.all() or not counted.any():
        return rows  # every run on the tokens axis, or every run on the step axis
    left_out = flat.loc[~counted, RUN_KEYS].drop_duplicates().itertuples(index=False)
    labels = run_labels(flat[RUN_KEYS].itertuples(index=False))
    for identity in left_out:
        request.warnings.append(
            f"warning: {labels[tuple(identity)]} counts no tokens (a local folder scanned without --tokens-per-step): "
            "left out of a plot against tokens seen"
        )
    return rows[counted]


def _draw_heatmap(request: PlotRequest, rows):
    from inductscan import plots

    _warn_of_other_runs(request, rows, "a heatmap", "selected")
    return plots.plot_heatmap(rows, metric=request.metric)


def _draw_effects(request: PlotRequest, rows):
    from inductscan import plots
    from inductscan.vocabulary import RUN_KEYS

    if request.metric in rows.columns:  # the runs scanned without --head-effects have nothing to draw
        run = [rows.index.get_level_values(key) for key in RUN_KEYS]
        valued = rows[request.metric].notna().groupby(run).transform("any").to_numpy()
        rows = rows[valued] if valued.any() else rows
    _warn_of_other_runs(request, rows, "an effects plot", f"with {request.metric}")
    return plots.plot_effects(rows, metric=request.metric)


def _warn_of_other_runs(request: PlotRequest, rows, plot: str, which: str) -> None:
    """One run a plot: the others are named as left out, not dropped in silence."""
    from inductscan.vocabulary import RUN_KEYS

    runs = len(rows.index.to_frame(index=False)[RUN_KEYS].drop_duplicates())
    if runs > 1:
        request.warnings.append(
            f"warning: {plot} draws one run, the first of the {runs} {which}; select one by its seed, suite or run"
        )


def _draw_seeds(request: PlotRequest, rows):
    from inductscan import plots
    from inductscan.phases import find_phase_changes

    return plots.plot_seed_comparison(find_phase_changes(rows, request.metric, request.threshold))


def _draw_compare(request: PlotRequest, rows):
    from inductscan.compare_plots import plot_compare
    from inductscan.timing_compare import compare_timing

    timing = compare_timing(rows, request.metric, request.threshold, x=request.x, total_tokens=request.total_tokens)
    return plot_compare(timing, x=request.x)


def _draw_token(name: str, default_top: int):
    def draw(request: PlotRequest, losses):
        from inductscan import compare_plots

        seeds, top = request.chosen["seed"], default_top if request.top is None else request.top
        if name == "plot_seed_scatter":
            pair = tuple(seeds[:2]) if seeds else None
            return compare_plots.plot_seed_scatter(losses, seeds=pair, step=request.step, top=top)
        return getattr(compare_plots, name)(losses, seeds=seeds, top=top)

    return draw


PLOT_KINDS: dict[str, PlotKind] = {  # kind: how to draw it, in the order the help lists them
    "timing": PlotKind(
        "best head's score against tokens, one line per seed, midpoint and onset-end marked",
        _best_rows(),
        _draw("plot_timing", on_tokens=True, metric="metric", threshold="threshold"),
    ),
    "heatmap": PlotKind(
        "every head (layer.head) against step, for one run",
        _every_head,
        _draw_heatmap,
    ),
    "effects": PlotKind(
        "scans with --head-effects: the top heads' exact gain_effect (or --metric icl_effect) against "
        "tokens, a line a head, for one run",
        _every_head,
        _draw_effects,
        default_metric="gain_effect",
    ),
    "seeds": PlotKind("midpoint tokens per seed with onset-end whiskers", _best_rows(), _draw_seeds),
    "gain": PlotKind(
        "in-context gain (nats) against tokens, one line per seed",
        _best_rows("in_context_gain"),
        _draw("plot_in_context_gain", on_tokens=True, threshold="threshold"),
    ),
    "icl": PlotKind(
        "ICL score (scans with --icl-dataset) against tokens, one line per seed, its fall timed",
        _best_rows("icl_score", ["icl"]),
        _draw("plot_icl_score", on_tokens=True),
    ),
    "icl-curves": PlotKind(
        "loss against token position for one run, a line per checkpoint coloured by step",
        _icl_curves,
        _draw("plot_icl_curves"),
        one_folder=True,
    ),
    "compare": PlotKind(
        "every run of the folders on one axis (--x tokens|fraction), onset-end whiskers, grouped by suite",
        _best_rows(columns=["repo"]),  # repo: where a toy run records its training
        _draw_compare,
    ),
    "seed-scatter": PlotKind(
        "per-token log-probabilities of two seeds at one step (--step), correlation, --top outliers",
        _token_losses,
        _draw_token("plot_seed_scatter", 10),
        one_folder=True,
    ),
    "token-curves": PlotKind(
        "per-token loss against tokens for the --top tokens changing most, smooth or S-shaped",
        _token_losses,
        _draw_token("plot_token_curves", 20),
        one_folder=True,
    ),
    "loss-pca": PlotKind(
        "training's path through the first principal components of the per-token losses, per seed",
        _token_losses,
        _draw_token("plot_loss_pca", 5),
        one_folder=True,
    ),
}


def check_image_path(output: Path) -> None:
    """An image file is named .png, .svg or .pdf: its suffix says the format."""
    if output.suffix.lower() not in IMAGE_SUFFIXES:
        raise ConfigError(f"cannot tell the image format of {output}: name it .png, .svg or .pdf")


def save_figure(figure, output: Path) -> None:
    """Write ``figure`` to ``output``; an OSError becomes an OutputError that says why."""
    from inductscan.results.layout import unwritable_reason

    try:
        figure.savefig(output, dpi=150)
    except OSError as error:
        reason = unwritable_reason(output, error)
        raise OutputError(
            f"cannot write the plot to {output}: {reason}; choose another {parameter('output')}"
        ) from error


@dataclass(frozen=True)
class PlotWritten:
    """What :func:`plot` did: ``drawn`` False when no row matched (no file written)."""

    kind: str
    output: Path
    drawn: bool
    warnings: list[str]


def plot(
    kind: str,
    results: str | os.PathLike | Sequence[str | os.PathLike],
    output: str | os.PathLike,
    *,
    metric: str | None = None,
    threshold: float | None = None,
    x: str | None = None,
    total_tokens: int | None = None,
    step: int | None = None,
    top: int | None = None,
    **chosen,
) -> PlotWritten:
    """Draw a figure of ``kind`` (:data:`PLOT_KINDS`) of the results folders ``results`` into the
    image file ``output`` (.png, .svg or .pdf, in a folder that exists).

    ``chosen``: the selection (``suite``, ``run``, ``seed``, ``step_range``). An option given to a
    kind it does not change is refused, naming the kinds it changes: ignored silently, it would
    leave the user believing it was drawn. None keeps an option's default: ``metric`` the kind's
    (``induction``, ``gain_effect`` for effects), ``threshold`` the metric's, ``x`` tokens.
    """
    if kind not in PLOT_KINDS:
        raise ConfigError(f"unknown kind of plot {kind!r}; choose one of {', '.join(PLOT_KINDS)}")
    declared, output = PLOT_KINDS[kind], Path(output)
    folders = [Path(results)] if isinstance(results, (str, os.PathLike)) else [Path(path) for path in results]
    check_image_path(output)
    given = {"metric": metric, "threshold": threshold, "x": x, "total_tokens": total_tokens, "step": step, "top": top}
    for name, value in given.items():
        if value is not None and kind not in OPTIONS[name]:
            raise ConfigError(
                f"{parameter(name)} does not apply to {parameter('kind')} {kind}; "
                f"it applies to {', '.join(OPTIONS[name])}"
            )
    from inductscan.phase_table import learn_scores, refuse_total_tokens_without_fractions

    refuse_total_tokens_without_fractions(total_tokens, x)
    refuse_a_missing_folder(output, "the plot")
    request = PlotRequest(
        folders,
        _selection(chosen),
        metric or declared.default_metric,
        threshold,
        x or "tokens",
        total_tokens,
        step,
        top,
    )
    learn_scores(folders)
    get_metric(request.metric)  # an unknown name lists the scores
    if len(folders) > 1 and declared.one_folder:
        raise ConfigError(f"{parameter('kind')} {kind} draws one results folder, got {len(folders)}")
    rows = declared.read(request)
    if rows.empty:
        return PlotWritten(kind, output, False, request.warnings)
    save_figure(declared.draw(request, rows), output)
    return PlotWritten(kind, output, True, request.warnings)


def _selection(chosen: dict) -> dict:
    """The selection with every key present (the per-token kinds read its seeds)."""
    return {"suite": None, "run": None, "seed": None, "step_range": None} | chosen
