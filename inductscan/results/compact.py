"""Compaction: a run's per-checkpoint files folded into one sorted file per run and table.

A scan writes one file per checkpoint (``TABLE/SUITE/RUN/step-000001000.parquet``): atomic,
kill-safe, and written side by side by shards and Ray workers. A full suite makes thousands of
them, and a reader that opens thousands of footers is slow, so :func:`compact` folds a run's
finished files into one sorted file per run, generation by generation::

    TABLE/SUITE/RUN/compact-000003.json      the steps that generation 3 holds (written first)
    TABLE/SUITE/RUN/compact-000003.parquet   their rows, sorted by step (renamed into place last)

The parquet file's rename is the commit. A reader sees the newest generation whose parquet file
exists plus the per-checkpoint files of steps it does not hold (:class:`inductscan.results.layout.RunFiles`),
so that a crash at any moment loses no row and shows none twice: before the commit the folded files
are still there and the new generation is not; after it, they are hidden by it until the compaction
(or the next one) deletes them with the generations before. A generation holds every step of the
one before it. Compactions of a run take a lock (``fcntl.flock``; local and most shared file
systems) and take a snapshot of its files: a file written meanwhile stays as it is, for the next
compaction.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from inductscan.errors import DamagedFileError, OutputError
from inductscan.results import damaged
from inductscan.results.folder import ResultsFolder
from inductscan.results.layout import (
    GENERATION_FILE,
    TABLES,
    atomic,
    locked,
    read_run,
    require_results_folder,
    run_folder,
    safe,
    unwritable,
    unwritable_reason,
)
from inductscan.results.schema import CURVE_SCHEMA, SORT_KEYS, folder_schema

ROW_GROUP_ROWS = 16_384  # several row groups per run, so that a step range skips most of them


def compact(folder: ResultsFolder | str | os.PathLike, runs: list[tuple[str, str]] | None = None) -> int:
    """Fold the finished per-checkpoint files of every run (or of the given (suite, run)s) into one
    sorted file per run and table; return how many files were folded. Safe at any time, during a
    scan too: a file written meanwhile waits for the next one. With ``runs``, only their folders
    are listed (and the handle lists them again afterwards)."""
    folder = ResultsFolder.of(folder)
    require_results_folder(folder.path)
    folded = 0
    for table in TABLES:  # the token losses' schema is their files' own
        schema = {"scores": folder_schema(folder.path), "icl_curves": CURVE_SCHEMA}.get(table)
        if runs is None:
            listed = folder.runs(table)
        else:
            chosen = [run_folder(folder.path, table, suite, run) for suite, run in dict.fromkeys(runs)]
            listed = [read_run(path) for path in sorted(chosen) if path.is_dir()]
        for run in listed:
            if found := damaged.check(run, table):  # folded into a new file, it would hide its rows
                raise DamagedFileError(found[0].line())
            try:
                folded += compact_run(run.folder, schema, SORT_KEYS[table])
            except OSError as error:
                if not unwritable(error):
                    raise
                raise OutputError(
                    f"cannot write to {run.folder}: {unwritable_reason(run.folder, error)}; compact rewrites a "
                    "run's files in its folder: make it writable (readers read it uncompacted meanwhile)"
                ) from error
    if runs is None:
        folder.refresh()
    else:
        folder.relist_runs([(safe(suite), safe(run)) for suite, run in runs])
    return folded


def compact_run(folder: Path, schema: pa.Schema | None, sort_by: list[str]) -> int:
    """Fold a run folder's per-checkpoint files into a new generation; return how many were folded.

    schema: the table's pyarrow schema (older files missing a column get nulls), or None: the
    files' own.
    """
    with locked(folder):
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
