"""Files of a results folder that cannot be read as their table's, found from their footers.

A file a reader cannot read as the table's (truncated, garbage, or a parquet file of another tool
dropped into the folder) is found before it is read (:func:`check`): a reader names it in one line
(:class:`~inductscan.errors.DamagedFileError`), ``status`` counts its checkpoints as damaged, and a
scan moves it into ``OUT/damaged/`` (:func:`set_aside`), never deleting it, and scores its
checkpoints again. No pandas, no pyarrow: DuckDB reads the footers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from inductscan.results.layout import ADVICE, DAMAGED_FOLDER, TABLES, Damaged, RunFiles, locked

if TYPE_CHECKING:
    from inductscan.results.folder import ResultsFolder

# The columns that make a file one of the table's: every file inductscan writes has them (see
# inductscan/results/schema.py for the schemas).
IDENTITY = {
    "scores": ("suite", "run", "seed", "step", "layer", "head"),
    "icl_curves": ("suite", "run", "seed", "step", "position", "loss"),
    "token_losses": ("suite", "run", "seed", "step", "example", "position", "loss"),
}
LABEL = {"scores": "scores", "icl_curves": "ICL curves", "token_losses": "token losses"}


def check(run: RunFiles, table: str) -> list[Damaged]:
    """The files of a run that a reader would read and cannot: a committed generation whose
    steps list is unreadable, and every visible parquet file whose footer cannot be read or whose
    columns lack the table's identity (:data:`IDENTITY`), from the footers alone. A file's
    answer is kept for as long as its size and modification time stay (files are written once,
    under a temporary name, and renamed), so a command that reads the folder several times
    checks each file once."""
    found = list(run.unreadable)
    problems = _footer_problems(run.visible(), IDENTITY[table], LABEL[table])
    for path, (problem, foreign) in problems.items():
        found.append(Damaged(_with_listing(run, path), problem, run.steps_of(path), foreign))
    return found


def _with_listing(run: RunFiles, path: Path) -> tuple[Path, ...]:
    """A compacted generation goes (and is set aside) with its steps list."""
    return (path, path.with_suffix(".json")) if path == run.compacted else (path,)


_CHECKED: dict[tuple[str, int, int], tuple[str, bool] | None] = {}  # (path, size, mtime): problem, foreign


def _footer_problems(paths: Iterable[Path], identity: tuple[str, ...], label: str) -> dict[Path, tuple[str, bool]]:
    """The files of ``paths`` that are not a table's parquet file: (what is wrong, whether it is
    a parquet file of another tool)."""
    keys = {}
    for path in paths:
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue  # a compaction removed it meanwhile: the reader lists again
        keys[path] = (str(path), stat.st_size, stat.st_mtime_ns)
    todo = [path for path, key in keys.items() if key not in _CHECKED]
    columns, unreadable = _footers(todo)
    for path in todo:
        if path in unreadable:
            _CHECKED[keys[path]] = (f"is damaged ({unreadable[path]}){ADVICE}", False)
        elif str(path) in columns:
            names = columns[str(path)]
            lacking = [name for name in identity if name not in names]
            has = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
            problem = (
                f"is not an inductscan {label} file (it lacks the columns {', '.join(lacking)}; its columns: "
                f"{has or 'none'}): move it out of {path.parent}"
            )
            _CHECKED[keys[path]] = (problem, True) if lacking else None
    return {path: _CHECKED[key] for path, key in keys.items() if _CHECKED.get(key) is not None}


def _footers(paths: list[Path]) -> tuple[dict[str, list[str]], dict[Path, str]]:
    """Each file's column names, read from its footer, and why those that cannot be read cannot
    (a file removed meanwhile is in neither). DuckDB reads the footers, many at once."""
    import duckdb  # no pandas, no pyarrow: `inductscan query` reads through DuckDB alone

    statement = "SELECT file_name, list(name) FILTER (num_children IS NULL OR num_children = 0) "
    statement += "FROM parquet_schema($files) GROUP BY file_name"
    if not paths:
        return {}, {}
    try:
        return dict(duckdb.sql(statement, params={"files": [str(path) for path in paths]}).fetchall()), {}
    except duckdb.Error:  # one file or more cannot be read: each on its own, to name them
        pass
    columns, unreadable = {}, {}
    for path in paths:
        try:
            columns.update(duckdb.sql(statement, params={"files": [str(path)]}).fetchall())
        except duckdb.Error as error:
            if path.exists():  # else a compaction removed it meanwhile: not damaged, gone
                reason = str(error).strip().splitlines()[0].split("Error: ", 1)[-1]
                unreadable[path] = reason.replace(f" '{path}'", "")
    return columns, unreadable


def set_aside(out: str | os.PathLike, table: str, found: list[Damaged]) -> list[Path]:
    """Move damaged files into ``OUT/damaged/TABLE/SUITE/RUN/`` (never delete what a user may want
    to look at), under each run's compaction lock; return where they went. Their checkpoints are
    then missing, and a scan scores them again."""
    moved = []
    for problem in found:
        folder = problem.paths[0].parent
        target = Path(out) / DAMAGED_FOLDER / table / folder.parent.name / folder.name
        target.mkdir(parents=True, exist_ok=True)
        with locked(folder):
            for path in problem.paths:
                if not path.exists():
                    continue
                destination = target / path.name
                copy = 1
                while destination.exists():  # damaged again after an earlier scan: keep both
                    destination, copy = target / f"{path.name}.{copy}", copy + 1
                os.replace(path, destination)
                moved.append(destination)
    return moved


def set_aside_damaged(folder: ResultsFolder) -> list[Damaged]:
    """Move every file of the folder's tables that cannot be read as its table's into
    ``OUT/damaged/`` (see :func:`set_aside`): their checkpoints are then not done, and the scan
    scores them again. Returns what was set aside; the handle lists the runs they left again."""
    found = []
    for table in TABLES:
        damaged = folder.damaged(table)
        set_aside(folder.path, table, damaged)
        found += damaged
    if found:
        folder.relist_run_folders({problem.paths[0].parent for problem in found})
    return found
