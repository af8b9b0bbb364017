"""The results table through DuckDB: the queries the command line asks, and ad-hoc SQL.

A results folder's tables are views over exactly the files a reader must read
(:meth:`inductscan.results.folder.ResultsFolder.visible_files`: each row once, compacted or not):
``scores``, and ``icl_curves`` and ``token_losses`` where the scan made them. DuckDB reads only the
columns a query names and pushes its filters into the parquet reader; it imports in a fraction of
the time pandas takes, so ``inductscan query`` answers without pandas or pyarrow.
"""

from __future__ import annotations

import difflib
import os
from collections import Counter
from collections.abc import Mapping

import duckdb

from inductscan.errors import ConfigError, NotHeldError, OutputError, parameter
from inductscan.metrics import CHECKPOINT_METRICS, HEAD_METRICS, is_added
from inductscan.results.declarations import learn_scores
from inductscan.results.folder import ResultsFolder
from inductscan.results.layout import TABLES, no_scores, relisted, require_results_folder
from inductscan.results.rows import Rows
from inductscan.results.selection import Selection
from inductscan.vocabulary import DERIVED, RUN_KEYS

SHOWN = [*RUN_KEYS, "step", "tokens", "layer", "head", *HEAD_METRICS, *CHECKPOINT_METRICS]  # query's default columns
SCORES = ("scores",)  # the tables of a reader of the scores alone: a damaged side table does not stop it
ADDED_COLUMNS = {"dtype": "VARCHAR", "scoring_version": "INTEGER", "custom_scores": "VARCHAR"}  # docs/scores.md


def connect(
    results: ResultsFolder | str | os.PathLike,
    *,
    skip_damaged: bool = False,
    runs: list[tuple[str, str]] | None = None,
    tables: tuple[str, ...] = TABLES,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with a view for each of ``tables`` that the results folder
    holds (of the (suite folder, run folder)s ``runs`` only, if given), made once per listing of the
    folder. A file of those tables that cannot be read as its table's raises
    :class:`~inductscan.errors.DamagedFileError` naming it, or with ``skip_damaged`` is left out
    (see :func:`inductscan.results.damaged.check`); a reader of the scores alone (``tables``:
    ``("scores",)``) neither reads nor checks the token losses and ICL curves."""
    folder = ResultsFolder.of(results)
    require_results_folder(folder.path)
    key = ("duckdb", skip_damaged, None if runs is None else tuple(runs), tables)
    return relisted(
        lambda: folder.remembered(key, lambda: _views_of(folder, skip_damaged, runs, tables)),
        vanished,
        folder.refresh,
    )


def vanished(error: Exception) -> bool:
    """Whether DuckDB failed on a listed file that is gone: a compaction folded it meanwhile, and a
    new listing of the folder holds its rows elsewhere."""
    text = str(error)  # at binding: "No files found ..."; as it runs: "Cannot open file ...: No such file"
    return isinstance(error, duckdb.IOException) and ("No files found" in text or "No such file or directory" in text)


def _views_of(
    folder: ResultsFolder, skip_damaged: bool, runs: list[tuple[str, str]] | None, tables: tuple[str, ...]
) -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    for table in tables:
        files = folder.visible_files(table, skip_damaged=skip_damaged, chosen=runs)
        if files:
            listed = ", ".join("'" + name.replace("'", "''") + "'" for name in files)
            # union_by_name: files written before a column existed (dtype, scoring_version) read it as null
            source = f"read_parquet([{listed}], union_by_name=true)"
            connection.execute(f"CREATE VIEW {table} AS SELECT * FROM {source}")
            if table == "scores":  # a folder written by 0.1 alone has neither column: add them, null
                have = {name for (name,) in connection.execute("SELECT column_name FROM (DESCRIBE scores)").fetchall()}
                added = ", ".join(f"NULL::{kind} AS {name}" for name, kind in ADDED_COLUMNS.items() if name not in have)
                if added:
                    connection.execute(f"CREATE OR REPLACE VIEW scores AS SELECT *, {added} FROM {source}")
    return connection


def run_sql(results: str | os.PathLike, statement: str) -> Rows:
    """Any SQL statement over the views of :func:`connect`, e.g.
    ``SELECT seed, max(induction) FROM scores GROUP BY seed``."""
    if not isinstance(statement, str):
        raise ConfigError(f"{parameter('statement')} must be a string of SQL, got {statement!r}")
    if not statement.replace(";", "").strip():
        raise ConfigError(f"{parameter('statement')} is empty: give a statement, e.g. SELECT count(*) FROM scores")
    connection = connect(results)
    try:
        relation = connection.sql(statement)
    except duckdb.Error as error:
        views = ", ".join(_views(connection)) or "none (no scored checkpoints)"
        raise ConfigError(f"SQL error: {str(error).splitlines()[0]} (tables: {views})") from error
    if relation is None:  # a statement with no result, e.g. SET
        return Rows([], [])
    try:
        return Rows(list(relation.columns), relation.fetchall())
    except duckdb.Error as error:  # raised as it runs: a conversion, error('...')
        raise ConfigError(f"SQL error: {str(error).splitlines()[0]}") from error


def _views(connection: duckdb.DuckDBPyConnection) -> list[str]:
    return [
        name for (name,) in connection.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
    ]


def distinct(
    results: ResultsFolder | str | os.PathLike,
    columns: list[str],
    filters: Mapping | None = None,
    *,
    skip_damaged: bool = False,
    runs: list[tuple[str, str]] | None = None,
) -> list[tuple]:
    """The distinct values of ``columns`` among the scores rows that ``filters`` (a
    :class:`Selection`, or its keywords) select, of the (suite folder, run folder)s ``runs`` if
    given: the checks a scan makes at start-up (settings, finished checkpoints) read a few columns
    of every row, which DuckDB does in a few hundredths of a second for a full suite."""
    folder = ResultsFolder.of(results)

    def read() -> list[tuple]:  # the start-up of a scan reads beside another scan's compaction
        connection = connect(folder, skip_damaged=skip_damaged, runs=runs, tables=SCORES)
        if "scores" not in _views(connection):
            return []
        known = [name for (name,) in connection.execute("SELECT column_name FROM (DESCRIBE scores)").fetchall()]
        where, parameters = Selection.from_filters(filters).where(known)
        shown = ", ".join(f'"{name}"' if name in known else f'NULL AS "{name}"' for name in columns)
        return connection.sql(f"SELECT DISTINCT {shown} FROM scores{where}", params=parameters).fetchall()

    return relisted(read, vanished, folder.refresh)


def require_held(results: ResultsFolder | str | os.PathLike, filters: Mapping, connection=None) -> None:
    """Raise :class:`NotHeldError` when ``filters`` name a suite or run (a name, or a list of
    them) that the folder's scores do not hold: ``--suite toyy`` is a typo to name, not an empty
    answer. Seeds, steps, layers and heads that match nothing stay an empty answer."""
    named = {kind: filters.get(kind) for kind in ("suite", "run") if filters.get(kind) is not None}
    if not named:
        return
    connection = connection or connect(results, tables=SCORES)
    if "scores" not in _views(connection):
        return  # no scored checkpoint at all: the reader says so in its own words
    held = connection.sql("SELECT DISTINCT suite, run FROM scores").fetchall()
    suites = sorted({suite for suite, _ in held})
    within = [suite for suite in _listed(named.get("suite")) if suite in suites] or suites  # a run: of these
    for kind, value in named.items():
        wanted = _listed(value)
        names = suites if kind == "suite" else sorted({run for suite, run in held if suite in within})
        absent = [name for name in wanted if name not in names]
        if absent:
            raise NotHeldError(not_held(kind, absent, names, str(results)), kind=kind, wanted=absent, held=names)


def _listed(value) -> list:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def not_held(kind: str, wanted: list[str], held: list[str], where: str) -> str:
    """The line for a suite or run that ``where`` (one folder or several) does not hold: the names
    it holds, and the closest to each name asked for, of those held and, for a suite, of the catalog."""
    from inductscan.suites import suite_names  # the catalog, for "did you mean"

    shown = ", ".join(held[:12]) + (f", ... ({len(held) - 12} more)" if len(held) > 12 else "")
    line = f"no {kind} {', '.join(map(repr, wanted))} in {where} ({kind}s held: {shown or 'none'})"
    for name in wanted:
        prefix = f"{name}: " if len(wanted) > 1 else ""
        close = (
            difflib.get_close_matches(name, held, n=1, cutoff=0.6)
            or [
                other
                for other in held
                if other.startswith(name)  # a local run's name ends in -HASH: seed1-3fa2b1c9
            ][:1]
        )
        catalogued = [] if close or kind != "suite" else difflib.get_close_matches(name, suite_names(), n=1)
        if close:
            line += f"; {prefix}did you mean {close[0]}?"
        elif catalogued:
            line += f"; {prefix}did you mean {catalogued[0]}? (a suite inductscan knows, not scanned into {where})"
    return line


def default_columns(known: list[str]) -> list[str]:
    """query's default columns of a table with the columns ``known``: :data:`SHOWN`, then the users'
    scores it has (docs/custom_scores.md)."""
    return [*SHOWN, *(name for name in known if is_added(name))]


def refuse_repeated(columns: list[str]) -> None:
    """Refuse a column named twice: a row answers with each column once (and DuckDB's --best
    packs the columns by name, which a repeated name breaks)."""
    repeated = [name for name, count in Counter(columns).items() if count > 1]
    if repeated:
        raise ConfigError(f"{parameter('columns')} names {', '.join(repeated)} more than once; name each column once")


def select(
    results: ResultsFolder | str | os.PathLike,
    filters: Mapping,
    *,
    columns: list[str] | None = None,
    min_induction: float | None = None,
    best: bool = False,
    top: int | None = None,
    metric: str = "induction",
) -> duckdb.DuckDBPyRelation:
    """The rows of the scores table that ``filters`` (a :class:`Selection`, or its keywords) select;
    with ``min_induction``, only heads at least that inductive; with ``best``, the head with the
    highest ``metric`` per (suite, run, seed, step), ties to the lowest (layer, head); with
    ``top``, the ``top`` rows with the highest ``metric``. Sorted by run, step, layer and head
    unless ``top`` orders them. Returns the executed query: fetch its rows with ``fetchall()``
    (plain Python values) or ``to_arrow_table()``."""
    connection = connect(results, tables=SCORES)
    learn_scores(results)  # its users' scores: among the default columns, and as --metric
    if "scores" not in _views(connection):
        raise OutputError(no_scores(results))
    require_held(results, filters, connection)
    known = [name for (name,) in connection.execute("SELECT column_name FROM (DESCRIBE scores)").fetchall()]
    wanted = default_columns(known) if columns is None else columns
    if not wanted:
        raise ConfigError(f"no column chosen; columns are {', '.join(known + list(DERIVED))}")
    refuse_repeated(wanted)
    unknown = [name for name in dict.fromkeys([*wanted, metric]) if name not in known]
    if unknown:
        raise ConfigError(f"unknown column(s) {', '.join(unknown)}; columns are {', '.join(known + list(DERIVED))}")
    if top is not None and top < 1:
        raise ConfigError(f"{parameter('top')} must be >= 1, got {top}")
    where, parameters = Selection.from_filters(filters).where(known)
    if min_induction is not None:
        where += (" AND " if where else " WHERE ") + "induction >= ?"
        parameters.append(min_induction)
    shown = ", ".join(f'"{name}"' for name in wanted)
    statement = f"SELECT * FROM scores{where}"
    if best:  # one aggregate pass: much faster than ranking every row with a window
        packed = ", ".join(f'"{name}" := "{name}"' for name in wanted)
        rank = f'"{metric}" IS NOT NULL, coalesce("{metric}", \'-inf\'::DOUBLE), -layer, -head'
        statement = (
            f"SELECT best.* FROM (SELECT suite, run, seed, step, arg_max(struct_pack({packed}), ({rank})) AS best "
            f"FROM ({statement}) GROUP BY suite, run, seed, step ORDER BY suite, run, seed, step)"
        )
        shown, order = "*", None
    else:
        order = "suite, run, seed, step, layer, head"
    if top is not None:
        order = f'"{metric}" DESC NULLS LAST LIMIT {int(top)}'
    ordered = f" ORDER BY {order}" if order else ""
    return connection.sql(f"SELECT {shown} FROM ({statement}){ordered}", params=parameters)
