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

No pandas here: the table commands list files with this module before they import anything heavy.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

STEP_FILE = re.compile(r"^step-(\d+)\.parquet$")
GENERATION_FILE = re.compile(r"^compact-(\d+)\.(json|parquet)$")
TABLES = ("scores", "icl_curves", "token_losses")
ROW_GROUP_ROWS = 16_384  # several row groups per run, so that a step range skips most of them


@dataclass(frozen=True)
class RunFiles:
    """What one run's folder of one table holds, as a reader must see it."""

    folder: Path
    generation: int | None  # the newest committed compaction, None before any
    compacted_steps: frozenset[int]  # the steps it holds
    step_files: dict[int, Path]  # every per-checkpoint file, by step (some may be compacted)

    @property
    def compacted(self) -> Path | None:
        return None if self.generation is None else self.folder / f"compact-{self.generation:06d}.parquet"

    def visible(self) -> list[Path]:
        """The files that hold each of the run's rows exactly once."""
        loose = [path for step, path in sorted(self.step_files.items()) if step not in self.compacted_steps]
        return ([self.compacted] if self.compacted else []) + loose

    def steps(self) -> set[int]:
        return set(self.compacted_steps) | set(self.step_files)


def read_run(folder: Path) -> RunFiles:
    """One listing of a run folder: its per-checkpoint files and its newest committed generation."""
    step_files, generations = {}, {}
    with os.scandir(folder) as entries:
        for entry in entries:
            if match := STEP_FILE.match(entry.name):
                step_files[int(match.group(1))] = Path(entry.path)
            elif match := GENERATION_FILE.match(entry.name):
                generations.setdefault(int(match.group(1)), set()).add(match.group(2))
    committed = [number for number, kinds in generations.items() if kinds == {"json", "parquet"}]
    if not committed:
        return RunFiles(folder, None, frozenset(), step_files)
    newest = max(committed)
    steps = json.loads((folder / f"compact-{newest:06d}.json").read_text())["steps"]
    return RunFiles(folder, newest, frozenset(steps), step_files)


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


def visible_files(out: Path, table: str = "scores") -> list[str]:
    """The files a reader of ``table`` reads: each row once (see the module docstring)."""
    return [str(path) for run in runs(out, table) for path in run.visible()]


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
