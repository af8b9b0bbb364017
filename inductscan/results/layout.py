"""Where each file of a results folder lives, the one atomic writer, and a run folder's listing.

Every path of the layout (see :mod:`inductscan.results`) is built here; a run folder of a table
(``TABLE/SUITE/RUN``) is read as a reader must see it (:class:`RunFiles`): its per-checkpoint
files and its newest committed compaction (inductscan/results/compact.py). No pandas, no pyarrow:
the commands that list a folder import nothing heavy.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from inductscan.errors import DiskFullError, OutputError, no_space, parameter

T = TypeVar("T")

TEMP_MARK = ".tmp-"
TABLES = ("scores", "icl_curves", "token_losses")
STEP_FILE = re.compile(r"^step-(\d+)\.parquet$")
GENERATION_FILE = re.compile(r"^compact-(\d+)\.(json|parquet)$")
DAMAGED_FOLDER = "damaged"  # OUT/damaged/TABLE/SUITE/RUN/: where a scan sets damaged files aside
ADVICE = (  # what a damaged file's line says to do
    ": its checkpoints cannot be read; a scan into the folder sets it aside (into OUT/damaged/) and scores them again"
)
UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)  # permissions, an immutable file, a read-only file system
LISTINGS = 8  # a compaction commits and deletes in a few milliseconds: a handful of listings outlast it


def safe(name: str) -> str:
    """A suite's, run's or repo's name as one folder or file name."""
    return name.replace(os.sep, "_").replace("/", "_")


def file_stem(step: int) -> str:
    return f"step-{step:09d}"


def checkpoint_file(out: str | os.PathLike, table: str, suite: str, run: str, step: int, suffix: str) -> Path:
    """``OUT/TABLE/SUITE/RUN/step-N{suffix}``: one checkpoint's file of a table (or its claim, failure)."""
    return Path(out) / table / safe(suite) / safe(run) / f"{file_stem(step)}{suffix}"


def score_path(out: str | os.PathLike, suite: str, run: str, step: int) -> Path:
    return checkpoint_file(out, "scores", suite, run, step, ".parquet")


def curve_path(out: str | os.PathLike, suite: str, run: str, step: int) -> Path:
    return checkpoint_file(out, "icl_curves", suite, run, step, ".parquet")


def token_losses_path(out: str | os.PathLike, suite: str, run: str, step: int) -> Path:
    return checkpoint_file(out, "token_losses", suite, run, step, ".parquet")


def failure_path(out: str | os.PathLike, suite: str, run: str, step: int) -> Path:
    return checkpoint_file(out, "failures", suite, run, step, ".json")


def claim_path(out: str | os.PathLike, suite: str, run: str, step: int) -> Path:
    return checkpoint_file(out, "claims", suite, run, step, ".lock")


def note_path(out: str | os.PathLike, suite: str, run: str) -> Path:
    return Path(out) / "notes" / safe(suite) / f"{safe(run)}.json"


def listing_path(out: str | os.PathLike, repo: str) -> Path:
    """Where a results folder keeps a Hub repo's branch listing (read and written by inductscan.listing)."""
    return Path(out) / "listings" / f"{safe(repo)}.json"


def settings_path(out: str | os.PathLike, suite: str) -> Path:
    return Path(out) / "settings" / f"{safe(suite)}.json"


def declaration_path(out: str | os.PathLike, name: str) -> Path:
    """Where a results folder records a user's score that its scores table has a column of."""
    return Path(out) / "custom_scores" / f"{name}.json"


def probe_path(out: str | os.PathLike, identifier: str) -> Path:
    return Path(out) / "probes" / f"{identifier}.json"


def icl_path(out: str | os.PathLike, identifier: str) -> Path:
    return Path(out) / "icl" / f"{identifier}.json"


def temporary_beside(path: Path) -> Path:
    """A dot-prefixed temporary name beside ``path``, naming this host and process (so that a scan
    finds what a killed writer of its host left: inductscan.results.folder)."""
    return path.parent / f".{path.name}{TEMP_MARK}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@contextmanager
def atomic(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it into place.

    A disk that fills up (or a quota, a file-size limit) while the file is written is a
    :class:`DiskFullError` naming the file: nothing half-written is left where a reader looks,
    and a re-run resumes once there is room."""
    temporary = temporary_beside(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield temporary
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:
        if no_space(error):
            raise DiskFullError(
                f"no space left writing {path} ({error.strerror or os.strerror(error.errno)}): free some space, "
                "then re-run the same command to resume (what was written before is kept)",
                error.errno,
            ) from error
        raise
    finally:
        temporary.unlink(missing_ok=True)


def write_once(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` whole, unless the file exists: written to a temporary file and
    hard-linked into place, which fails if the name exists. False if another writer was first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_beside(path)
    try:
        temporary.write_text(text)
        os.link(temporary, path)
    except FileExistsError:
        return False
    finally:
        temporary.unlink(missing_ok=True)
    return True


def check_writable(out: str | os.PathLike) -> None:
    """Fail early, with one clear line, if the results folder cannot be written."""
    if Path(out).exists() and not Path(out).is_dir():
        raise OutputError(
            f"cannot write results to {out}: it is a file, not a folder; choose another {parameter('out')}"
        )
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
        with atomic(Path(out) / ".write-check") as temporary:
            temporary.write_bytes(b"ok")
        (Path(out) / ".write-check").unlink(missing_ok=True)  # two scans starting at once: either removes it
    except OSError as error:
        raise OutputError(
            f"cannot write results to {out}: {unwritable_reason(out, error)}; choose another {parameter('out')}"
        ) from error


def unwritable(error: OSError) -> bool:
    """Whether ``error`` is the operating system refusing to write: permissions, an immutable
    file (``chattr +i``) or a read-only file system (a full disk is :func:`no_space`)."""
    return error.errno in UNWRITABLE and not isinstance(error, DiskFullError)


def unwritable_reason(path: str | os.PathLike, error: OSError) -> str:
    """Why ``path`` (a folder to make, or a file's folder) could not be written, for a person."""
    existing = next((parent for parent in (Path(path), *Path(path).parents) if parent.exists()), None)
    if existing is not None and not existing.is_dir() and existing != Path(path):
        return f"{existing} is a file, not a folder"
    return str(error.strerror or error)


def refuse_a_missing_folder(output: Path, what: str) -> None:
    """A file the user names (``what``: "the plot", "the report") goes into a folder that exists:
    one made silently for a mistyped path would hide the mistake. The refusal names the missing
    folder, or the file that stands in its way."""
    if output.parent.is_dir():
        return
    blocker = next((parent for parent in output.parents if parent.exists()), None)
    if blocker is not None and not blocker.is_dir():
        reason = f"{blocker} is a file, not a folder; choose another {parameter('output')}"
    else:
        reason = f"the folder {output.parent} does not exist; create it, or choose another {parameter('output')}"
    raise OutputError(f"cannot write {what} to {output}: {reason}")


def no_scores(path: str | os.PathLike) -> str:
    """The line for a folder with no scored checkpoint; for one of a results folder's own tables
    (``results/scores``), the folder to give instead."""
    path = Path(path)
    if path.name in TABLES and (path.parent / "scores").is_dir():
        return f"{path} is the {path.name} table of the results folder {path.parent}: give {path.parent}"
    return f"{path} holds no scored checkpoints (nothing under {path / 'scores'}); scan into it first"


def require_results_folder(path: str | os.PathLike) -> None:
    """Raise :class:`OutputError` unless ``path`` is a folder."""
    if not Path(path).is_dir():
        raise OutputError(f"no results folder at {path}" + (": it is a file" if Path(path).exists() else ""))


@contextmanager
def claim(out: str | os.PathLike, suite: str, run: str, step: int) -> Iterator[bool]:
    """Hold a checkpoint while this process scores it: yields True if no other scan holds it, else
    False (another scan into the same folder is scoring it now). Two scans started at once into one
    folder so never score one checkpoint twice.

    The claim is an exclusive ``fcntl.flock`` on ``OUT/claims/SUITE/RUN/step-N.lock``, which the
    kernel drops when its process ends, however it ends: the claim of a scan that was killed never
    blocks a resume. The holder must check that the checkpoint is not done before it scores it
    (the scan that held it a moment ago may have finished it)."""
    path = claim_path(out, suite, run, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            path.unlink(missing_ok=True)  # before the lock goes: a later claimant makes a new file
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold a run folder's compaction lock (``fcntl.flock``; local and most shared file systems)."""
    with open(folder / ".compact.lock", "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


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
        """(suite folder, run folder) of the table, as :meth:`ResultsFolder.done_steps` keys them."""
        return self.paths[0].parent.parent.name, self.paths[0].parent.name

    def line(self) -> str:
        return f"{self.paths[0]} {self.problem}"


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

    @property
    def key(self) -> tuple[str, str]:
        """(suite folder, run folder)."""
        return self.folder.parent.name, self.folder.name

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


def read_run(folder: Path, names: list[str] | None = None) -> RunFiles:
    """One listing of a run folder (``names``: its entries, when the caller listed it already): its
    per-checkpoint files and its newest committed generation whose steps list can be read (one that
    cannot is in ``unreadable``). A compaction that removes the generation listed before its steps
    list is read makes the folder be listed again."""
    if names is not None:
        try:
            return _read_run_once(folder, names)
        except FileNotFoundError:
            pass  # a compaction ran since the caller listed it
    return relisted(lambda: _read_run_once(folder), removed)


def removed(error: Exception) -> bool:
    """Whether a read failed on a file that a compaction removed since the folder was listed."""
    return isinstance(error, FileNotFoundError)


def relisted(read: Callable[[], T], gone: Callable[[Exception], bool], again: Callable[[], None] = lambda: None) -> T:
    """``read()``, again (up to :data:`LISTINGS` times in all) while it fails on a file that is
    gone (``gone(error)``): a compaction folded it meanwhile, and a new listing finds its rows
    (``again()`` forgets the listing a handle holds, before each new try)."""
    for attempt in range(LISTINGS - 1):
        try:
            return read()
        except Exception as error:
            if not gone(error):
                raise
        time.sleep(0.02 * (attempt + 1))  # let a compaction that is deleting what it folded finish
        again()
    return read()


def _read_run_once(folder: Path, names: list[str] | None = None) -> RunFiles:
    if names is None:
        with os.scandir(folder) as entries:
            names = [entry.name for entry in entries]
    step_files, generations = {}, {}
    for name in names:
        if match := STEP_FILE.match(name):
            step_files[int(match.group(1))] = folder / name
        elif match := GENERATION_FILE.match(name):
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


def run_folder(out: str | os.PathLike, table: str, suite: str, run: str) -> Path:
    """``OUT/TABLE/SUITE/RUN``: a run's folder of a table."""
    return Path(out) / table / safe(suite) / safe(run)
