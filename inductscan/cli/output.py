"""The one renderer of the command line's tables: a pandas frame, or plain rows (what DuckDB
answers, printed without importing pandas), as an aligned table, csv or json."""

from __future__ import annotations

import click

from inductscan.results.rows import Rows

NO_ROWS = "no rows match"


def emit(table, fmt: str) -> None:
    """``table`` (a pandas frame or :class:`Rows`) in the chosen format: table, csv or json."""
    if isinstance(table, Rows):
        _emit_rows(table.columns, table.rows, fmt)
    elif fmt == "csv":
        click.echo(table.to_csv(index=False), nl=False)
    elif fmt == "json":
        click.echo(table.to_json(orient="records", indent=1, double_precision=15))
    elif table.empty:
        click.echo(NO_ROWS)
    else:
        click.echo(table.to_string(index=False, float_format=lambda value: f"{value:.4f}"))


def _emit_rows(columns: list[str], rows: list[tuple], fmt: str) -> None:
    """Rows of plain values, as :func:`emit` writes a frame, without pandas."""
    if fmt == "csv":
        import csv
        import io

        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
        click.echo(text.getvalue(), nl=False)
    elif fmt == "json":
        import json
        import math

        def plain(value):
            return None if isinstance(value, float) and not math.isfinite(value) else value

        records = [{name: plain(value) for name, value in zip(columns, row)} for row in rows]
        click.echo(json.dumps(records, indent=1, default=str))
    elif not rows:
        click.echo(NO_ROWS)
    else:
        cells = [columns] + [[_cell(value) for value in row] for row in rows]
        widths = [max(len(row[index]) for row in cells) for index in range(len(columns))]
        click.echo("\n".join(" ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in cells))


def _cell(value) -> str:
    if value is None:
        return "None"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def warn(lines) -> None:
    """Each of ``lines`` (a library's warnings) on stderr."""
    for line in lines:
        click.echo(line, err=True)
