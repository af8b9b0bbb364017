"""What ``inductscan query`` prints: DuckDB's rows read without pandas, a frame when pandas derives
a column, or the answer to any SQL."""

from __future__ import annotations

import os

from inductscan.errors import ConfigError, parameter
from inductscan.results.rows import Rows
from inductscan.results.selection import selection
from inductscan.results.sql import run_sql, select
from inductscan.vocabulary import DERIVED


def answer(
    results: str | os.PathLike,
    *,
    statement: str | None = None,
    columns: list[str] | None = None,
    min_induction: float | None = None,
    top: int | None = None,
    best: bool = False,
    **chosen,
):
    """What ``inductscan query`` prints: the answer to ``statement`` (any SQL, which takes no other
    option), or the rows of :func:`inductscan.results.sql.select` as :class:`Rows` of plain values,
    read without pandas; a frame from :func:`inductscan.query` when ``columns`` names a derived
    column, which pandas derives (``chosen``: the selection's keywords)."""
    options = {"min_induction": min_induction, "top": top, "best": best or None, "columns": columns}
    if statement is not None:
        given = [name for name, value in (chosen | options).items() if value is not None]
        if given:
            raise ConfigError(f"{parameter('statement')} takes no other selection option (got {parameter(given[0])})")
        return run_sql(results, statement)
    if columns is not None and any(name in DERIVED for name in columns):
        from inductscan.results.queries import query  # pandas: only for a derived column

        return query(results, **chosen, min_induction=min_induction, top=top, best=best, columns=columns)
    rows = select(results, selection(**chosen), columns=columns, min_induction=min_induction, best=best, top=top)
    return Rows(list(rows.columns), rows.fetchall())
