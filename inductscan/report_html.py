"""The report's HTML: the tables (phase table, header, failures) as escaped HTML fragments, and the
page itself, ``report_page.html`` filled with them, the data as JSON, Plotly's bundle and the
page's script (``report_page.js``). :mod:`inductscan.report` decides what goes in."""

from __future__ import annotations

import html
import json
import re
from importlib.resources import files

import numpy as np
import pandas as pd

from inductscan.phase_view import bound_position, readable
from inductscan.phases import LEVELS, verdict
from inductscan.results.write import package_version
from inductscan.vocabulary import RUN_KEYS


def phase_table(phases: pd.DataFrame, metric: str, axis: str, runs: list[tuple], labels: list[str]) -> str:
    """The phase table of one metric as HTML: a row per run, each cell with the value it sorts by
    (a level known only as a bound sorts by that bound)."""
    shown = readable(phases).drop(columns=["suite", "run", "seed"], errors="ignore")
    label_of = dict(zip(runs, labels))
    sort_columns = {
        "early": "early",
        "late": "late",
        **{name: f"{name}_{axis}" for name in ("onset", "midpoint", "end")},
    }
    first = next((name for name in shown.columns if name.startswith("first ")), None)
    if first is not None:
        sort_columns[first] = "first_above_threshold_step"
    head = "".join(f"<th>{html.escape(name)}</th>" for name in ["run", "phase change", *shown.columns])
    body = []
    for (_, row), (_, text) in zip(phases.iterrows(), shown.iterrows()):
        cells = [_cell(label_of[tuple(row[RUN_KEYS])]), _cell(verdict(row))]
        for name, value in text.items():
            key = row[sort_columns[name]] if name in sort_columns else value
            if name in LEVELS and pd.isna(key):  # a bound: sort by where it lies
                key = bound_position(row, name, axis)
            cells.append(_cell(value, key))
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _cell(text, key=None) -> str:
    key = text if key is None else key
    number = isinstance(key, (int, float, np.integer, np.floating)) and not pd.isna(key)
    sort = f' data-sort="{float(key)!r}"' if number else (' data-sort=""' if pd.isna(key) else "")
    return f"<td{sort}>{html.escape(str(text))}</td>"


def header_html(flat: pd.DataFrame, runs: list[tuple], labels: list[str], failures: pd.DataFrame) -> str:
    """What was scanned, as a definition list: suites, runs, steps, settings, versions."""
    steps = flat.groupby(RUN_KEYS, sort=True)["step"].agg(["nunique", "min", "max"])
    run_lines = [
        f"{label}: {row['nunique']} checkpoint(s), steps {row['min']:,} .. {row['max']:,}"
        for label, (_, row) in zip(labels, steps.iterrows())
    ]
    layers, heads = int(flat["layer"].max()) + 1, int(flat["head"].max()) + 1
    items = {
        "suites": ", ".join(sorted(flat["suite"].unique())),
        "runs": f"{len(runs)}: " + "; ".join(run_lines),
        "checkpoints": f"{len(flat[[*RUN_KEYS, 'step']].drop_duplicates())} scored, {layers} layers x {heads} heads",
        "probe": "; ".join(_probe_text(record) for record in flat["probe"].dropna().unique()),
        "ICL data": "; ".join(_icl_text(record) for record in flat["icl"].dropna().unique()) or "none",
        "dtype": ", ".join(sorted(flat["dtype"].dropna().unique())) or "float32",
        "users' scores": "; ".join(_custom_text(record) for record in flat["custom_scores"].dropna().unique())
        or "none",
        "scored by": ", ".join(f"inductscan {version}" for version in sorted(flat["inductscan_version"].unique())),
        "report by": f"inductscan {package_version()}",
        "failed or skipped": f"{len(failures)} checkpoint(s)" + (" (listed at the end)" if len(failures) else ""),
    }
    rows = "".join(f"<dt>{html.escape(name)}</dt><dd>{html.escape(value)}</dd>" for name, value in items.items())
    return f"<dl>{rows}</dl>"


def _probe_text(record: str) -> str:
    probe = json.loads(record)
    bos = "" if probe.get("bos") is None else f", BOS {probe['bos']}"
    listed = f" listed (sha256 {probe['token_list_sha256'][:16]})" if "token_list_sha256" in probe else ""
    return (
        f"{probe['length']} random tokens x {probe['repeats']} repeats, batch {probe['batch']}, seed {probe['seed']}, "
        f"tokens{listed} [{probe['token_low']}, {probe['token_high']}){bos}"
    )


def _custom_text(record: str) -> str:
    """The ``custom_scores`` setting of some rows (JSON, name: version) as "name version v, ..."."""
    return ", ".join(f"{name} version {version}" for name, version in json.loads(record).items())


def _icl_text(record: str) -> str:
    icl = json.loads(record)
    return (
        f"{icl['dataset']} ({icl['split']}, column {icl['column']}): {icl['examples']} examples of {icl['context']} "
        f"tokens; icl_score = loss at token {icl['late']} - loss at token {icl['early']}"
    )


def failures_html(failures: pd.DataFrame) -> str:
    if failures.empty:
        return "<p>None recorded in the folder.</p>"
    columns = ["suite", "run", "seed", "step", "kind", "reason"]
    head = "".join(f"<th>{name}</th>" for name in columns)
    body = "".join("<tr>" + "".join(_cell(row[name]) for name in columns) + "</tr>" for _, row in failures.iterrows())
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _page_file(name: str) -> str:
    return files("inductscan").joinpath(name).read_text(encoding="utf-8")


def render_page(results: str, sections: dict) -> str:
    """Fill the page's template (``report_page.html``) with the sections, the data and the scripts."""
    import plotly.offline

    data = sections["data"]
    metric_options = "".join(
        f'<option value="{html.escape(metric["name"])}">{html.escape(metric["label"])}</option>'
        for metric in (data["metrics"] if data else [])
    )
    run_options = "".join(
        f'<option value="{index}">{html.escape(run["label"])}</option>'
        for index, run in enumerate(data["runs"] if data else [])
    )
    tables = "".join(
        f'<div class="by-metric" data-metric="{html.escape(metric)}">{table}</div>'
        for metric, table in sections["tables"].items()
    )
    notices = "".join(f'<p class="notice">{html.escape(notice)}</p>' for notice in sections["notices"])
    parts = {
        "TITLE": html.escape(f"inductscan report: {results}"),
        "HEADER": sections["header"],
        "NOTICES": notices,
        "METRIC_OPTIONS": metric_options,
        "RUN_OPTIONS": run_options,
        "PHASE_TABLES": tables,
        "FAILURES": sections["failures"],
        "PATTERNS": sections.get("patterns", ""),  # inductscan report --patterns K (inductscan.report_patterns)
        "TOKEN_LOSSES": sections.get("token_losses", ""),  # with --token-losses only
        "PLOTLY": plotly.offline.get_plotlyjs(),
        "DATA": _script_json(data),
        "APP": _page_file("report_page.js"),
    }
    return re.sub(r"<!--@(\w+)-->", lambda match: parts[match.group(1)], _page_file("report_page.html"))


def _script_json(data) -> str:
    """JSON safe inside a <script> element: every '<' escaped, so no '</script>' can end it early."""
    text = json.dumps(data, default=_plain, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c")


def _plain(value):
    """numpy values in Plotly's figure dicts as JSON values; NaN as null."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            return np.where(np.isfinite(value), value, None).tolist()
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot put a {type(value).__name__} in the report's data")
