"""The handle of a results folder: the folder listed once, and what a command asks of the listing.

A command opens one :class:`ResultsFolder` and passes it down (sqlite-utils' ``Database(path)``):
which run folders each table has and which files a reader reads, which checkpoints are done, which
files are damaged, which temporaries a killed writer left. The first question lists the folder, in
one walk of its tree; every later one is answered from that listing. A handle that has written, or
that another process's compaction overtook, lists again what it must: :meth:`relist_runs` the runs
a scan wrote (no other folder), :meth:`refresh` everything.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from inductscan.errors import DamagedFileError
from inductscan.results import damaged as damaged_files
from inductscan.results.layout import TABLES, TEMP_MARK, Damaged, RunFiles, read_run, run_folder, safe

T = TypeVar("T")


class ResultsFolder:
    """A results folder, listed at most once for as long as nothing asks it to list again."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._runs: dict[str, dict[tuple[str, str], RunFiles]] | None = None  # table -> (suite, run) folders
        self._temporaries: list[Path] = []
        self._remembered: dict[object, object] = {}  # what was made from this listing (remembered)

    @classmethod
    def of(cls, where: ResultsFolder | str | os.PathLike) -> ResultsFolder:
        """``where`` if it is a handle already, else a new handle of the path."""
        return where if isinstance(where, ResultsFolder) else cls(where)

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"ResultsFolder({str(self.path)!r})"

    def _listing(self) -> dict[str, dict[tuple[str, str], RunFiles]]:
        """One walk of the folder's tree: each table's run folders (``TABLE/SUITE/RUN``, read as a
        reader sees them, a symbolic link to a folder followed as the folder) and this host's
        temporaries (below the top level, down to the run folders, where every writer writes)."""
        if self._runs is not None:
            return self._runs
        runs: dict[str, dict[tuple[str, str], RunFiles]] = {table: {} for table in TABLES}
        temporaries = []
        mark = f"{TEMP_MARK}{socket.gethostname()}-"
        for top, folders, files in os.walk(self.path, followlinks=True):
            parts = Path(top).relative_to(self.path).parts
            folders[:] = sorted(folders) if len(parts) < 3 else []  # no deeper: a cycle of links ends here
            if len(parts) == 3 and parts[0] in TABLES and not any(part.startswith(".") for part in parts[1:]):
                run = read_run(Path(top), files)
                runs[parts[0]][run.key] = run
            if parts:
                temporaries += [Path(top) / name for name in files if name.startswith(".") and mark in name]
        self._runs, self._temporaries = runs, temporaries
        return runs

    def refresh(self) -> None:
        """Forget the listing: the next question lists the folder again."""
        self._runs = None
        self._remembered.clear()

    def relist_runs(self, runs: list[tuple[str, str]]) -> None:
        """List again the folders of the given (suite, run)s in every table (those a scan wrote),
        and no other folder."""
        self.relist_run_folders({run_folder(self.path, table, *run) for table in TABLES for run in runs})

    def relist_run_folders(self, folders: set[Path]) -> None:
        if self._runs is None:
            return  # nothing listed yet: the first question lists it all
        self._remembered.clear()
        for folder in folders:
            table = folder.parent.parent.name
            key = (folder.parent.name, folder.name)
            if folder.is_dir():
                self._runs[table][key] = read_run(folder)
            else:
                self._runs[table].pop(key, None)

    def remembered(self, key: object, make: Callable[[], T]) -> T:
        """``make()``, made once from this listing (e.g. DuckDB's views over the listed files,
        inductscan.results.sql) and made again after the folder is listed again."""
        if key not in self._remembered:
            self._remembered[key] = make()
        return self._remembered[key]

    def runs(self, table: str = "scores", chosen: list[tuple[str, str]] | None = None) -> list[RunFiles]:
        """Every run folder of a table (``TABLE/SUITE/RUN``), sorted; of the (suite folder, run
        folder)s ``chosen`` only, if given."""
        listed = self._listing()[table]
        return [listed[key] for key in sorted(listed) if chosen is None or key in chosen]

    def visible_files(
        self, table: str = "scores", *, skip_damaged: bool = False, chosen: list[tuple[str, str]] | None = None
    ) -> list[str]:
        """The files a reader of ``table`` reads: each row once (see
        inductscan/results/compact.py). A file that is not sound
        (:func:`inductscan.results.damaged.check`) raises :class:`DamagedFileError` naming it, or
        with ``skip_damaged`` is left out."""
        files, damaged = [], []
        for run in self.runs(table, chosen):
            found = damaged_files.check(run, table)
            unsound = {path for problem in found for path in problem.paths}
            files += [str(path) for path in run.visible() if path not in unsound]
            damaged += found
        if damaged and not skip_damaged:
            raise DamagedFileError(damaged[0].line() + (f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else ""))
        return files

    def damaged(self, table: str = "scores") -> list[Damaged]:
        """Every file of ``table`` that is not sound (see :func:`inductscan.results.damaged.check`)."""
        return [problem for run in self.runs(table) for problem in damaged_files.check(run, table)]

    def has_rows(self, table: str = "scores") -> bool:
        """Whether the table holds any checkpoint."""
        return any(run.step_files or run.generation is not None for run in self.runs(table))

    def done_steps(self, table: str = "scores") -> dict[tuple[str, str], set[int]]:
        """The steps each (suite folder, run folder) holds rows of, compacted or not."""
        return {run.key: run.steps() for run in self.runs(table)}

    def temporaries(self) -> list[Path]:
        """The temporary files of writers of this host, as listed (see :func:`remove_stale_temporaries`)."""
        self._listing()
        return list(self._temporaries)


def remove_stale_temporaries(folder: ResultsFolder) -> int:
    """Delete temporary files that a killed writer on this host left behind; return how many."""
    host = socket.gethostname()
    removed = 0
    for path in folder.temporaries():
        pid = int(path.name.split(f"{TEMP_MARK}{host}-")[1].split("-")[0])
        if not _alive(pid):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_done(out: str | os.PathLike, suite: str, run: str, step: int, table: str = "scores") -> bool:
    """Whether the folder holds the checkpoint's rows of ``table`` now, from one listing of its run's
    folder (not the handle's: a scan asks as it goes)."""
    folder = run_folder(out, table, suite, run)
    return folder.is_dir() and step in read_run(folder).steps()


class Scored:
    """The checkpoints a results folder holds rows of in ``table``, compacted or not:
    ``(suite, run, step) in Scored(folder)``. A scan's start-up asks once."""

    def __init__(self, folder: ResultsFolder | None, table: str = "scores", *, steps: dict | None = None) -> None:
        """``steps``: instead of a folder's listing, the steps by (suite folder, run folder), as
        :meth:`ResultsFolder.done_steps` keys them (e.g. those of damaged files)."""
        self._steps = folder.done_steps(table) if steps is None else steps

    def __contains__(self, checkpoint: tuple[str, str, int]) -> bool:
        suite, run, step = checkpoint
        return step in self._steps.get((safe(suite), safe(run)), ())
