"""Which parquet files of a results folder hold a table's rows, and compaction that folds them.

A scan writes one file per checkpoint (``TABLE/SUITE/RUN/step-000001000.parquet``): atomic,
kill-safe, and written side by side by shards and Ray workers. A full suite makes thousands of
them, and a reader that opens thousands of footers is slow, so :func:`compact` folds a run's
finished files into one sorted file per run, generation by generation::

    TABLE/SUITE/RUN/compact-000003.json      the steps that generation 3 holds (written first)
    TABLE/SUITE/RUN/compact-000003.parquet   their rows, sorted by step (renamed into place last)

The parquet file's rename is the commit. A reader sees the newest generation whose parquet file
exists plus the per-checkpoint files of steps it does not hold, so that a crash at any moment
loses no row and shows none twice: before the commit the folded files are still there and the
new generation is not; after it, they are hidden by it until the compaction (or the next one)
deletes them with the generations before. A generation holds every step of the one before it.
Compactions of a run take a lock (``fcntl.flock``; local and most shared file systems) and take
a snapshot of its files: a file written meanwhile stays as it is, for the next compaction.

A file a reader cannot read as the table's (truncated, garbage, or a parquet file of another tool
dropped into the folder) is found before it is read, from its footer (:func:`check`): a reader
names it in one line (:class:`~inductscan.errors.DamagedFileError`), ``status`` counts its
checkpoints as damaged, and a scan moves it into ``OUT/damaged/`` (:func:`set_aside`), never
deleting it, and scores its checkpoints again.

No pandas here: the table commands list files with this module before they import anything heavy.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from inductscan import metrics
from inductscan.errors import DamagedFileError, OutputError

T = TypeVar("T")

STEP_FILE = re.compile(r"^step-(\d+)\.parquet$")
GENERATION_FILE = re.compile(r"^compact-(\d+)\.(json|parquet)$")
TABLES = ("scores", "icl_curves", "token_losses")
# The columns that make a file one of the table's: every file inductscan writes has them (see
# inductscan/store.py and inductscan/token_losses.py for the schemas).
IDENTITY = {
    "scores": ("suite", "run", "seed", "step", "layer", "head"),
    "icl_curves": ("suite", "run", "seed", "step", "position", "loss"),
    "token_losses": ("suite", "run", "seed", "step", "example", "position", "loss"),
}
LABEL = {"scores": "scores", "icl_curves": "ICL curves", "token_losses": "token losses"}
DAMAGED_FOLDER = "damaged"  # OUT/damaged/TABLE/SUITE/RUN/: where a scan sets damaged files aside
ADVICE = (  # what a damaged file's line says to do
    ": its checkpoints cannot be read; a scan into the folder sets it aside (into OUT/damaged/) and scores them again"
)


@dataclass(frozen=True)
class Damaged:
    """A file of a table that cannot be read as one: ``paths`` (a per-checkpoint file, or a
    compacted generation's parquet file and its steps list), what is wrong, and the steps whose
    rows it held (None when its steps list is what cannot be read)."""

    paths: tuple[Path, ...]
    problem: str
    steps: frozenset[int] | None
    foreign: bool = False  # a parquet file of another tool, not a damaged one of inductscan's

    @property
    def run_folder(self) -> tuple[str, str]:
        """(suite folder, run folder) of the table, as :func:`done_steps` keys them."""
        return self.paths[0].parent.parent.name, self.paths[0].parent.name

    def line(self) -> str:
        return f"{self.paths[0]} {self.problem}"


ROW_GROUP_ROWS = 16_384  # several row groups per run, so that a step range skips most of them


@dataclass(frozen=True)
class RunFiles:
    """What one run's folder of one table holds, as a reader must see it."""

    folder: Path
    generation: int | None  # the newest committed compaction, None before any
    compacted_steps: frozenset[int]  # the steps it holds
    step_files: dict[int, Path]  # every per-checkpoint file, by step (some may be compacted)
    unreadable: tuple[Damaged, ...] = ()  # committed generations whose steps list cannot be read

    @property
    def compacted(self) -> Path | None:
        return None if self.generation is None else self.folder / f"compact-{self.generation:06d}.parquet"

    def visible(self) -> list[Path]:
        """The files that hold each of the run's rows exactly once."""
        loose = [path for step, path in sorted(self.step_files.items()) if step not in self.compacted_steps]
        return ([self.compacted] if self.compacted else []) + loose

    def steps(self) -> set[int]:
        return set(self.compacted_steps) | set(self.step_files)

    def steps_of(self, path: Path) -> frozenset[int]:
        """The steps whose rows a visible file holds."""
        if path == self.compacted:
            return self.compacted_steps
        return frozenset(step for step, file in self.step_files.items() if file == path)


def read_run(folder: Path) -> RunFiles:
    """One listing of a run folder: its per-checkpoint files and its newest committed generation
    whose steps list can be read (one that cannot is in ``unreadable``). A compaction that removes
    the generation listed before its steps list is read makes the folder be listed again."""
    return relisted(lambda: _read_run_once(folder), removed)


LISTINGS = 8  # a compaction commits and deletes in a few milliseconds: a handful of listings outlast it


def removed(error: Exception) -> bool:
    """Whether a read failed on a file that a compaction removed since the folder was listed."""
    return isinstance(error, FileNotFoundError)


def relisted(read: Callable[[], T], gone: Callable[[Exception], bool]) -> T:
    """``read()``, again (up to :data:`LISTINGS` times in all) while it fails on a file that is
    gone (``gone(error)``): a compaction folded it meanwhile, and a new listing finds its rows."""
    for attempt in range(LISTINGS - 1):
        try:
            return read()
        except Exception as error:
            if not gone(error):
                raise
        time.sleep(0.02 * (attempt + 1))  # let a compaction that is deleting what it folded finish
    return read()


def _read_run_once(folder: Path) -> RunFiles:
    step_files, generations = {}, {}
    with os.scandir(folder) as entries:
        for entry in entries:
            if match := STEP_FILE.match(entry.name):
                step_files[int(match.group(1))] = Path(entry.path)
            elif match := GENERATION_FILE.match(entry.name):
                generations.setdefault(int(match.group(1)), set()).add(match.group(2))
    committed = sorted((number for number, kinds in generations.items() if kinds == {"json", "parquet"}), reverse=True)
    unreadable = []
    for number in committed:
        listing = folder / f"compact-{number:06d}.json"
        try:
            steps = frozenset(int(step) for step in json.loads(listing.read_text())["steps"])
        except FileNotFoundError:
            raise  # a compaction removed it meanwhile: read_run lists again
        except (OSError, ValueError, KeyError, TypeError) as error:
            problem = f"is damaged (its steps list cannot be read: {error}){ADVICE}"
            unreadable.append(Damaged((listing, listing.with_suffix(".parquet")), problem, None))
            continue
        return RunFiles(folder, number, steps, step_files, tuple(unreadable))
    return RunFiles(folder, None, frozenset(), step_files, tuple(unreadable))


def runs(out: Path, table: str = "scores") -> Iterator[RunFiles]:
    """Every run folder of a table (``TABLE/SUITE/RUN``), sorted."""
    root = Path(out) / table
    if not root.is_dir():
        return
    for suite in sorted(root.iterdir()):
        if suite.is_dir() and not suite.name.startswith("."):
            for run in sorted(suite.iterdir()):
                if run.is_dir() and not run.name.startswith("."):
                    yield read_run(run)


def visible_files(out: Path, table: str = "scores", *, skip_damaged: bool = False) -> list[str]:
    """The files a reader of ``table`` reads: each row once (see the module docstring). A file
    that is not sound (:func:`check`) raises :class:`DamagedFileError` naming it, or with
    ``skip_damaged`` is left out."""
    files, damaged = [], []
    for run in runs(out, table):
        found = check(run, table)
        unsound = {path for problem in found for path in problem.paths}
        files += [str(path) for path in run.visible() if path not in unsound]
        damaged += found
    if damaged and not skip_damaged:
        raise DamagedFileError(damaged[0].line() + (f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else ""))
    return files


def damaged(out: Path, table: str = "scores") -> list[Damaged]:
    """Every file of ``table`` in a results folder that is not sound (see :func:`check`)."""
    return [problem for run in runs(out, table) for problem in check(run, table)]


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


def set_aside(out: Path, table: str, found: list[Damaged]) -> list[Path]:
    """Move damaged files into ``OUT/damaged/TABLE/SUITE/RUN/`` (never delete what a user may want
    to look at), under each run's compaction lock; return where they went. Their checkpoints are
    then missing, and a scan scores them again."""
    moved = []
    for problem in found:
        folder = problem.paths[0].parent
        target = Path(out) / DAMAGED_FOLDER / table / folder.parent.name / folder.name
        target.mkdir(parents=True, exist_ok=True)
        with _locked(folder):
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


def has_rows(out: Path, table: str = "scores") -> bool:
    """Whether the table holds any checkpoint, without listing every run."""
    return any(run.step_files or run.generation is not None for run in runs(out, table))


def done_steps(out: Path, table: str = "scores") -> dict[tuple[str, str], set[int]]:
    """The steps each (suite folder, run folder) holds rows of, compacted or not."""
    return {(run.folder.parent.name, run.folder.name): run.steps() for run in runs(out, table)}


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    with open(folder / ".compact.lock", "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def compact_run(folder: Path, schema, sort_by: list[str], atomic) -> int:
    """Fold a run folder's per-checkpoint files into a new generation; return how many were folded.

    schema: the table's pyarrow schema (older files missing a column get nulls), or None: the
    files' own. atomic: the store's temp-file-and-rename context manager.
    """
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    with _locked(folder):
        before = read_run(folder)
        fold = {step: path for step, path in before.step_files.items() if step not in before.compacted_steps}
        if fold:
            sources = [str(path) for path in ([before.compacted] if before.compacted else []) + list(fold.values())]
            table = ds.dataset(sources, schema=schema, format="parquet").to_table()
            metadata = pq.read_schema(sources[-1]).metadata  # e.g. the ICL definition
            table = table.sort_by([(name, "ascending") for name in sort_by]).replace_schema_metadata(metadata)
            generation = (before.generation or 0) + 1
            steps = sorted(before.compacted_steps | set(fold))
            with atomic(folder / f"compact-{generation:06d}.json") as temporary:
                temporary.write_text(json.dumps({"steps": steps, "rows": table.num_rows}))
            floats = [field.name for field in table.schema if pa.types.is_floating(field.type)]
            others = [name for name in table.column_names if name not in floats]  # repeated: dictionaries
            with atomic(folder / f"compact-{generation:06d}.parquet") as temporary:  # the commit
                pq.write_table(
                    table,
                    temporary,
                    row_group_size=ROW_GROUP_ROWS,
                    compression="zstd",
                    use_dictionary=others,
                    use_byte_stream_split=floats,  # floats rarely repeat: split bytes compress better
                )
        _remove_folded(folder)
    return len(fold)


def _remove_folded(folder: Path) -> None:
    """Delete what the newest generation hides, under the lock: the files it folded, the earlier
    generations, and the steps list of any generation a killed compaction never committed."""
    current = read_run(folder)
    for step in current.compacted_steps & set(current.step_files):
        current.step_files[step].unlink(missing_ok=True)
    with os.scandir(folder) as entries:
        for entry in entries:
            match = GENERATION_FILE.match(entry.name)
            if match and int(match.group(1)) != current.generation:
                Path(entry.path).unlink(missing_ok=True)


def declaration_path(out: Path, name: str) -> Path:
    """Where a results folder records a user's score that its scores table has a column of."""
    return Path(out) / "custom_scores" / f"{name}.json"


def recorded_scores(out: str | os.PathLike) -> list[metrics.Metric]:
    """The users' scores a results folder has columns of, by name (docs/custom_scores.md;
    written by :func:`inductscan.store.declare_scores`). A record that cannot be read is an
    :class:`OutputError` naming it."""
    found = []
    for path in sorted(declaration_path(Path(out), "*").parent.glob("*.json")):
        try:
            found.append(metrics.Metric(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError) as error:  # a bad level or direction: ConfigError, a ValueError
            raise OutputError(
                f"cannot read the score declaration {path}: {error}; restore it, or scan again with the score"
            ) from error
    return found


def learn_scores(out: str | os.PathLike) -> list[str]:
    """Make the users' scores a results folder records known (:mod:`inductscan.metrics`), unless this
    process registered one of the same name, so that phases, plots, queries and the report take
    their columns as they take the package's own, without the user's code; returns their names."""
    recorded = recorded_scores(out)
    for metric in recorded:
        metrics.add_metric(metric, replace=False)
    return [metric.name for metric in recorded]
