"""A table of plain values, as DuckDB answers a query: what ``inductscan query`` prints without
importing pandas (:mod:`inductscan.cli.output`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rows:
    """A query's answer: column names and rows of plain Python values."""

    columns: list[str]
    rows: list[tuple]
