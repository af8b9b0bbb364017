"""The results table (schema in docs/scores.md): one parquet file per checkpoint, written atomically.

Layout of a results folder::

    scores/SUITE/RUN/step-000001000.parquet    one row per (layer, head)
    scores/SUITE/RUN/compact-000001.parquet    after `inductscan compact` (and a scan): many steps'
                                               rows, sorted (see inductscan/tables.py)
    icl_curves/SUITE/RUN/step-000001000.parquet  with --icl-dataset: mean loss per token position
    failures/SUITE/RUN/step-000001000.json     why a checkpoint was not scored (removed on success)
    probes/PROBE_ID.json                       a probe's parameters and token ids
    icl/ICL_ID.json                            the ICL examples' settings and token ids
    settings/SUITE.json                        the settings the folder's first scan of a suite claimed
    custom_scores/NAME.json                    a user's score the table has a column of: its declaration
    listings/OWNER_REPO.json                   a repo's branches as listed once (inductscan.listing)
    claims/SUITE/RUN/step-000001000.lock       held (fcntl.flock) while a scan scores the checkpoint
    notes/SUITE/RUN.json                       head scores a run has no value for, and why (not a failure)

Every file is written to a dot-prefixed temporary name in its folder and renamed into place, so
a scan killed at any moment leaves no half-written file where a reader looks (pyarrow's dataset
reader skips dot-prefixed names), and a re-run scores exactly the checkpoints without a file.
Readers see the compacted files plus the newer per-checkpoint ones (:mod:`inductscan.tables`),
and read only the columns they need. This is the only module that knows the schema.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from inductscan import hazards, sql, tables
from inductscan.errors import ConfigError, DamagedFileError, DiskFullError, OutputError, no_space
from inductscan.metrics import CHECKPOINT_METRICS, HEAD_METRICS, SCORING_VERSION, Metric

if TYPE_CHECKING:  # the readers need no torch: `import inductscan` stays light
    import torch

    from inductscan.icl import IclExamples
    from inductscan.probe import Probe

# Unique in any folder: a folder may hold several suites whose seed numbers coincide (pythia-160m and
# pythia-160m-deduped are both seed 1234), and a run's name is unique within its suite (a local
# run's name carries a hash of its folder's path, see inductscan.suites.local_suite).
INDEX = ["suite", "run", "seed", "step", "layer", "head"]
SCHEMA = pa.schema(
    [
        ("suite", pa.string()),
        ("repo", pa.string()),
        ("run", pa.string()),
        ("revision", pa.string()),
        ("seed", pa.int64()),
        ("step", pa.int64()),
        ("tokens", pa.int64()),
        ("layer", pa.int32()),
        ("head", pa.int32()),
        *((name, pa.float64()) for name in HEAD_METRICS + CHECKPOINT_METRICS),  # inductscan/metrics.py
        ("weights_sha256", pa.string()),
        ("probe", pa.string()),
        ("icl", pa.string()),  # the ICL settings (inductscan.icl), null without --icl-dataset
        ("dtype", pa.string()),  # the compute dtype; null in folders written before 0.2 (float32 then)
        ("scoring_version", pa.int32()),  # inductscan.metrics.SCORING_VERSION; null before 0.2 (version 1)
        ("custom_scores", pa.string()),  # users' scores' versions (JSON, name: version); null without any
        ("scored_at", pa.timestamp("us", tz="UTC")),
        ("inductscan_version", pa.string()),
    ]
)
CURVE_SCHEMA = pa.schema(
    [
        *(SCHEMA.field(name) for name in ("suite", "run", "seed", "step", "tokens")),
        ("position", pa.int32()),  # the predicted token's number in the context, from 1 (so from 2)
        ("loss", pa.float64()),  # mean over the ICL examples, nats
    ]
)
TEMP_MARK = ".tmp-"


def schema_with(custom: list[str]) -> pa.Schema:
    """The table's schema with a column for each of the users' scores ``custom``, after its own
    (docs/custom_scores.md)."""
    return pa.schema([*SCHEMA, *(pa.field(name, pa.float64()) for name in custom)])


def folder_schema(path: str | os.PathLike) -> pa.Schema:
    """The schema of a results folder's table: the users' scores it records, after the table's own."""
    return schema_with([metric.name for metric in tables.recorded_scores(path)])


def declare_scores(out: Path, declared: list[Metric]) -> None:
    """Record in the folder the declaration of each user's score that a scan computes
    (``OUT/custom_scores/NAME.json``), so that reading the folder needs none of the user's code.
    The latest scan's declaration is kept; each row records the version it was scored with."""
    for metric in declared:
        path = tables.declaration_path(out, metric.name)
        text = json.dumps(dataclasses.asdict(metric), indent=1)
        if path.is_file() and path.read_text() == text:
            continue
        with _atomic(path) as temporary:
            temporary.write_text(text)


def package_version() -> str:
    try:
        return version("inductscan")
    except PackageNotFoundError:
        return "unknown"


def _file_stem(step: int) -> str:
    return f"step-{step:09d}"


def _safe(name: str) -> str:
    return name.replace(os.sep, "_").replace("/", "_")


def _checkpoint_file(out: Path, table: str, suite: str, run: str, step: int, suffix: str) -> Path:
    return Path(out) / table / _safe(suite) / _safe(run) / f"{_file_stem(step)}{suffix}"


def listing_path(out: Path, repo: str) -> Path:
    """Where a results folder keeps a Hub repo's branch listing (read and written by inductscan.listing)."""
    return Path(out) / "listings" / f"{_safe(repo)}.json"


def score_path(out: Path, suite: str, run: str, step: int) -> Path:
    return _checkpoint_file(out, "scores", suite, run, step, ".parquet")


def curve_path(out: Path, suite: str, run: str, step: int) -> Path:
    return _checkpoint_file(out, "icl_curves", suite, run, step, ".parquet")


def failure_path(out: Path, suite: str, run: str, step: int) -> Path:
    return _checkpoint_file(out, "failures", suite, run, step, ".json")


@contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it into place.

    A disk that fills up (or a quota, a file-size limit) while the file is written is a
    :class:`DiskFullError` naming the file: nothing half-written is left where a reader looks,
    and a re-run resumes once there is room."""
    temporary = path.parent / f".{path.name}{TEMP_MARK}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
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


def check_writable(out: Path) -> None:
    """Fail early, with one clear line, if the results folder cannot be written."""
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
        with _atomic(Path(out) / ".write-check") as temporary:
            temporary.write_bytes(b"ok")
        (Path(out) / ".write-check").unlink(missing_ok=True)  # two scans starting at once: either removes it
    except OSError as error:
        raise OutputError(
            f"cannot write results to {out}: {unwritable_reason(out, error)}; choose another --out"
        ) from error


def unwritable_reason(path: Path, error: OSError) -> str:
    """Why ``path`` (a folder to make, or a file's folder) could not be written, for a person."""
    existing = next((parent for parent in (Path(path), *Path(path).parents) if parent.exists()), None)
    if existing is not None and not existing.is_dir() and existing != Path(path):
        return f"{existing} is a file, not a folder"
    return str(error.strerror or error)


def remove_stale_temporaries(out: Path) -> int:
    """Delete temporary files that a killed writer on this host left behind; return how many."""
    host = socket.gethostname()
    removed = 0
    for path in Path(out).glob(f"*/**/.*{TEMP_MARK}{host}-*"):
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


def is_done(out: Path, suite: str, run: str, step: int, table: str = "scores") -> bool:
    """Whether the folder holds the checkpoint's rows of ``table``, from one listing of its run's
    folder (:func:`inductscan.tables.read_run` lists again if a compaction moved them meanwhile)."""
    folder = Path(out) / table / _safe(suite) / _safe(run)
    return folder.is_dir() and step in tables.read_run(folder).steps()


@contextmanager
def claim(out: Path, suite: str, run: str, step: int) -> Iterator[bool]:
    """Hold a checkpoint while this process scores it: yields True if no other scan holds it, else
    False (another scan into the same folder is scoring it now). Two scans started at once into one
    folder so never score one checkpoint twice.

    The claim is an exclusive ``fcntl.flock`` on ``OUT/claims/SUITE/RUN/step-N.lock``, which the
    kernel drops when its process ends, however it ends: the claim of a scan that was killed never
    blocks a resume. The holder must check that the checkpoint is not done before it scores it
    (the scan that held it a moment ago may have finished it)."""
    path = _checkpoint_file(out, "claims", suite, run, step, ".lock")
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


class Scored:
    """The checkpoints a results folder holds scores of, compacted or not, from one listing of
    each run's folder: ``(suite, run, step) in Scored(out)``. A scan's start-up asks once."""

    def __init__(self, out: Path | None, table: str = "scores", *, steps: dict | None = None) -> None:
        """``steps``: instead of a folder's listing, the steps by (suite folder, run folder), as
        :func:`inductscan.tables.done_steps` keys them (e.g. those of damaged files)."""
        self._steps = tables.done_steps(Path(out), table) if steps is None else steps

    def __contains__(self, checkpoint: tuple[str, str, int]) -> bool:
        suite, run, step = checkpoint
        return step in self._steps.get((_safe(suite), _safe(run)), ())


SORT_KEYS = {
    "scores": ["step", "layer", "head"],
    "icl_curves": ["step", "position"],
    "token_losses": ["step", "example", "position"],  # inductscan/token_losses.py
}


def compact(out: str | os.PathLike, runs: list[tuple[str, str]] | None = None) -> int:
    """Fold the finished per-checkpoint files of every run (or of the given (suite, run)s) into one
    sorted file per run and table (see :mod:`inductscan.tables`); return how many files were
    folded. Safe at any time, during a scan too: a file written meanwhile waits for the next one."""
    require_results_folder(out)
    chosen = None if runs is None else {(_safe(suite), _safe(run)) for suite, run in runs}
    folded = 0
    for table in tables.TABLES:  # the token losses' schema is their files' own
        schema = {"scores": folder_schema(out), "icl_curves": CURVE_SCHEMA}.get(table)
        for run in tables.runs(Path(out), table):
            if chosen is None or (run.folder.parent.name, run.folder.name) in chosen:
                if damaged := tables.check(run, table):  # folded into a new file, it would hide its rows
                    raise DamagedFileError(damaged[0].line())
                folded += tables.compact_run(run.folder, schema, SORT_KEYS[table], _atomic)
    return folded


def set_aside_damaged(out: str | os.PathLike) -> list[tables.Damaged]:
    """Move every file of the folder's tables that cannot be read as its table's into
    ``OUT/damaged/`` (see :func:`inductscan.tables.set_aside`): their checkpoints are then not
    done, and the scan scores them again. Returns what was set aside."""
    found = []
    for table in tables.TABLES:
        damaged = tables.damaged(Path(out), table)
        tables.set_aside(Path(out), table, damaged)
        found += damaged
    return found


def write_scores(
    out: Path,
    identity: dict,
    heads: dict[str, torch.Tensor],
    checkpoint: dict[str, float],
    *,
    weights_sha256: str,
    probe: Probe,
    dtype: str,
    icl: IclResult | None = None,
    custom: dict[str, str] | None = None,
) -> Path:
    """Write one checkpoint's rows, one per (layer, head), and clear any earlier failure record.

    identity: suite, repo, run, revision, seed, step, tokens. heads: name -> (layer, head). Every
    setting that changes a score goes with each row (see :class:`Settings`). With ``icl``, its
    loss curve is written first, so that a checkpoint whose scores file exists has its curve too.
    custom: the users' scores in ``heads`` and ``checkpoint`` and their versions (name: version).
    """
    n_layers, n_heads = next(iter(heads.values())).shape
    rows = n_layers * n_heads
    columns = {name: [identity[name]] * rows for name in ("suite", "repo", "run", "revision", "seed", "step", "tokens")}
    columns |= {
        "layer": [layer for layer in range(n_layers) for _ in range(n_heads)],
        "head": list(range(n_heads)) * n_layers,
    }
    columns |= {name: values.reshape(-1).tolist() for name, values in heads.items()}
    columns |= {name: [None] * rows for name in HEAD_METRICS if name not in heads}  # unscored: see write_run_note
    columns |= {name: [value] * rows for name, value in checkpoint.items()}
    columns |= {
        "icl_score": [icl.score if icl else None] * rows,
        "icl": [icl.examples.record_json() if icl else None] * rows,
        "weights_sha256": [weights_sha256] * rows,
        "probe": [probe.record_json()] * rows,
        "dtype": [dtype] * rows,
        "scoring_version": [SCORING_VERSION] * rows,
        "custom_scores": [custom_record(custom)] * rows,
        "scored_at": [datetime.now(timezone.utc)] * rows,
        "inductscan_version": [package_version()] * rows,
    }
    schema = schema_with(sorted(custom or {}))
    table = pa.Table.from_pydict({field.name: columns[field.name] for field in schema}, schema=schema)
    save_probe(out, probe)
    if icl is not None:
        save_icl(out, icl.examples)
        table = table.replace_schema_metadata({b"inductscan.icl_score": icl.examples.record()["definition"].encode()})
        _write_curve(out, identity, icl)
    path = score_path(out, identity["suite"], identity["run"], identity["step"])
    with _atomic(path) as temporary:
        pq.write_table(table, temporary)
    failure_path(out, identity["suite"], identity["run"], identity["step"]).unlink(missing_ok=True)
    return path


def custom_record(custom: dict[str, str] | None) -> str | None:
    """The ``custom_scores`` setting of a row: the users' scores' versions as JSON, None without any."""
    return json.dumps(custom, sort_keys=True) if custom else None


@dataclass(frozen=True)
class IclResult:
    """One checkpoint's ICL score and its mean loss per token position (tokens 2..context)."""

    examples: IclExamples
    score: float
    curve: torch.Tensor  # (context - 1,)


def _write_curve(out: Path, identity: dict, icl: IclResult) -> None:
    positions = len(icl.curve)
    columns = {name: [identity[name]] * positions for name in ("suite", "run", "seed", "step", "tokens")}
    columns |= {"position": list(range(2, positions + 2)), "loss": icl.curve.tolist()}
    table = pa.Table.from_pydict(columns, schema=CURVE_SCHEMA)
    table = table.replace_schema_metadata({b"inductscan.icl": icl.examples.record_json().encode()})
    with _atomic(curve_path(out, identity["suite"], identity["run"], identity["step"])) as temporary:
        pq.write_table(table, temporary)


def save_icl(out: Path, examples: IclExamples) -> None:
    _save_ids_once(Path(out) / "icl" / f"{examples.identifier()}.json", "icl", examples.record(), examples.ids)


def _save_ids_once(path: Path, key: str, record: dict, ids: torch.Tensor) -> None:
    """A probe's or the ICL examples' record and token ids, written once: the name is their hash."""
    if path.is_file():
        return
    with _atomic(path) as temporary:
        temporary.write_text(json.dumps({key: record, "ids": ids.tolist()}))


def load_icl_curves(path: str | os.PathLike, **filters) -> pd.DataFrame:
    """The ICL loss-per-position curves: one row per (suite, run, seed, step, position), with
    ``loss`` the mean loss of predicting that token over the examples. Filters as for
    :func:`load_results`, on the curve columns."""
    files = tables.visible_files(Path(path), "icl_curves")
    if not files:
        raise OutputError(f"no ICL curves in {path}: scan with --icl-dataset to make them")
    expression = _filter_expression(filters, CURVE_SCHEMA)
    frame = ds.dataset(files, schema=CURVE_SCHEMA, format="parquet").to_table(filter=expression).to_pandas()
    return frame.sort_values(["suite", "run", "step", "position"]).reset_index(drop=True)


def note_path(out: Path, suite: str, run: str) -> Path:
    return Path(out) / "notes" / _safe(suite) / f"{_safe(run)}.json"


def write_run_note(out: Path, identity: dict, unscored: dict[str, str]) -> None:
    """Record, once per run, which head scores its rows leave empty and why (a run scanned through
    transformers' own model has no weight-based scores): ``notes/SUITE/RUN.json``. Not a failure."""
    path = note_path(out, identity["suite"], identity["run"])
    if path.is_file() and json.loads(path.read_text()).get("unscored") == unscored:
        return
    record = {name: identity[name] for name in ("suite", "run", "repo")} | {"unscored": unscored}
    with _atomic(path) as temporary:
        temporary.write_text(json.dumps(record, indent=1))


def run_notes(out: Path, runs: list[tuple[str, str]] | None = None) -> dict[tuple[str, str], dict[str, str]]:
    """(suite, run) -> {score: why it is empty}, for the runs given (None: every run with a note)."""
    records = [json.loads(path.read_text()) for path in sorted(Path(out).glob("notes/*/*.json"))]
    notes = {(record["suite"], record["run"]): record["unscored"] for record in records}
    return notes if runs is None else {run: notes[run] for run in runs if run in notes}


def write_failure(out: Path, identity: dict, *, kind: str, reason: str) -> Path:
    """Record why a checkpoint was not scored (kind: 'failed' or 'skipped')."""
    record = {**identity, "kind": kind, "reason": reason, "at": datetime.now(timezone.utc).isoformat()}
    path = failure_path(out, identity["suite"], identity["run"], identity["step"])
    with _atomic(path) as temporary:
        temporary.write_text(json.dumps(record, indent=1))
    return path


def load_failures(path: Path) -> pd.DataFrame:
    """Every recorded failure and skip of a results folder."""
    require_results_folder(path)
    records = [_failure_record(file) for file in sorted(Path(path).glob("failures/*/*/step-*.json"))]
    return pd.DataFrame.from_records(
        records, columns=["suite", "repo", "run", "revision", "seed", "step", "tokens", "kind", "reason", "at"]
    )


def _failure_record(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DamagedFileError(
            f"{path} is damaged (a failure record that cannot be read: {error}); delete it, and a scan "
            "tries its checkpoint again"
        ) from error


def probe_id(probe: Probe) -> str:
    return probe.record()["ids_sha256"][:16]


def save_probe(out: Path, probe: Probe) -> None:
    _save_ids_once(Path(out) / "probes" / f"{probe_id(probe)}.json", "probe", probe.record(), probe.ids)


def _dataset(path: Path, schema: pa.Schema) -> ds.Dataset:
    require_results_folder(path)
    return ds.dataset(tables.visible_files(Path(path), "scores"), schema=schema, format="parquet")


def _read(path: Path, schema: pa.Schema, **arguments) -> pa.Table:
    """The scores table (of the folder's ``schema``, :func:`folder_schema`) read with
    ``to_table(**arguments)``, listed again if a compaction that ran meanwhile removed a file this
    reader had listed."""
    return tables.relisted(lambda: _dataset(path, schema).to_table(**arguments), tables.removed)


def _filter_expression(filters: dict, schema: pa.Schema = SCHEMA) -> ds.Expression | None:
    expression = None
    for name, wanted in filters.items():
        if name not in schema.names:
            raise ConfigError(f"cannot filter on {name!r}; columns are {', '.join(schema.names)}")
        field = ds.field(name)
        if isinstance(wanted, slice):
            parts = [field >= wanted.start] if wanted.start is not None else []
            parts += [field <= wanted.stop] if wanted.stop is not None else []
            if not parts:
                continue
            term = parts[0] if len(parts) == 1 else parts[0] & parts[1]
        elif isinstance(wanted, (list, tuple, set, frozenset, range)):
            term = field.isin(list(wanted))
        else:
            term = field == wanted
        expression = term if expression is None else expression & term
    return expression


def require_results_folder(path: str | os.PathLike) -> None:
    """Raise :class:`OutputError` unless ``path`` is a folder."""
    if not Path(path).is_dir():
        raise OutputError(f"no results folder at {path}" + (": it is a file" if Path(path).exists() else ""))


def require_results(path: str | os.PathLike) -> None:
    """Raise :class:`OutputError` unless ``path`` is a results folder with scored checkpoints."""
    require_results_folder(path)
    if not tables.has_rows(Path(path), "scores"):
        raise OutputError(
            f"{path} holds no scored checkpoints (nothing under {Path(path) / 'scores'}); scan into it first"
        )


def recorded_checkpoints(path: str | os.PathLike, *, skip_damaged: bool = False) -> pd.DataFrame:
    """Every checkpoint a results folder holds scores or a failure record of: one row per
    (suite, run, step) with its seed, repo and ``kind`` ("scored", or the failure's kind); with
    ``skip_damaged``, of the files that can be read (else a damaged one raises, naming it)."""
    columns = ["suite", "run", "seed", "repo", "step"]
    scored = pd.DataFrame(columns=columns)
    if tables.has_rows(Path(path), "scores"):
        rows = sql.distinct(path, columns, skip_damaged=skip_damaged)
        scored = pd.DataFrame.from_records(rows, columns=columns)
    failures = load_failures(Path(path))[columns + ["kind"]]
    both = pd.concat([scored.assign(kind="scored"), failures], ignore_index=True)
    return both.drop_duplicates(["suite", "run", "step"]).sort_values(["suite", "run", "step"]).reset_index(drop=True)


DERIVED = {"same_weights_as": ["weights_sha256"], "hazard": ["repo", "revision", "weights_sha256"]}
# Columns that repeat one long value over a checkpoint's rows (or a whole run's): read as pandas
# categoricals, a few bytes a row instead of a string each.
REPEATED = ("suite", "repo", "run", "revision", "weights_sha256", "probe", "icl", "dtype", "inductscan_version")


def load_results(path: str | os.PathLike, *, columns: list[str] | None = None, **filters) -> pd.DataFrame:
    """The scan table as a DataFrame indexed by (suite, run, seed, step, layer, head), unique.

    Each keyword filters a column and is pushed down to the parquet reader: a value keeps rows
    equal to it, a list (or range) keeps rows in it, ``slice(low, high)`` keeps
    ``low <= value <= high`` (either end may be None). ``columns`` reads only those columns
    besides the index (default: all); a full suite's table is large, and a question that needs
    one score reads one. Example::

        load_results("results/", seed=21, layer=5, step=slice(1000, 5000), columns=["tokens", "induction"])

    A filter that matches nothing gives an empty frame with the same columns and index. Two
    columns are derived as the table is read: ``same_weights_as`` flags a step whose weights are
    identical (same sha256) to another loaded step of its run: it holds the earliest such other
    step, else <NA>; ``hazard`` names a known fault of the checkpoint's Hub branch from the
    packaged table (see :mod:`inductscan.hazards`), else <NA>. Columns that repeat one value
    over many rows (``probe``, ``repo``, ``weights_sha256``, ...) are categoricals.
    """
    # its users' scores are timed, plotted and reported like the package's own: the folder's schema
    schema = schema_with(tables.learn_scores(path))
    wanted = (
        list(schema.names) + list(DERIVED) if columns is None else [columns] if isinstance(columns, str) else columns
    )
    unknown = [name for name in wanted if name not in schema.names and name not in DERIVED]
    if unknown:
        raise ConfigError(
            f"unknown column(s) {', '.join(unknown)}; columns are {', '.join(schema.names + list(DERIVED))}"
        )
    needed = {name for name in wanted if name in schema.names}
    if any(name in DERIVED for name in wanted):  # derive() adds both, the hazard from the same weights
        needed |= {source for sources in DERIVED.values() for source in sources}
    read = [name for name in schema.names if name in needed or name in INDEX]
    table = _read(Path(path), schema, columns=read, filter=_filter_expression(filters, schema))
    frame = _categorical(table if table.num_rows else schema.empty_table().select(read))
    if "same_weights_as" in wanted or "hazard" in wanted:
        frame = derive(frame)
    shown = [name for name in wanted if name not in INDEX]
    return frame.set_index(INDEX).sort_index()[shown]


def derive(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (with suite, run, step, repo, revision and weights_sha256 columns) with the two
    derived columns of :func:`load_results` added, among its own rows."""
    frame = frame.assign(same_weights_as=_same_weights_as(frame))
    return frame.assign(hazard=_hazards(frame))


def _categorical(table: pa.Table) -> pd.DataFrame:
    """The table as pandas, its repeated string columns dictionary-encoded (categoricals)."""
    for name in REPEATED:
        if name in table.column_names and name not in INDEX:
            index = table.column_names.index(name)
            table = table.set_column(index, name, table.column(name).dictionary_encode())
    return table.to_pandas()


def _hazards(frame: pd.DataFrame) -> pd.Series:
    """Each row's wrong-weights hazard: a listed revision, or a wildcard entry where another step
    of the run serves the same weights."""
    flagged = pd.Series(pd.NA, index=frame.index, dtype="string")
    for (repo, revision), rows in frame.groupby(["repo", "revision"]).groups.items():
        for hazard in hazards.hazards_of(repo, revision, "wrong_weights"):
            where = rows if hazard.exact else rows[frame.loc[rows, "same_weights_as"].notna().to_numpy()]
            flagged[where] = hazard.describe()
    return flagged


def _same_weights_as(frame: pd.DataFrame) -> pd.Series:
    """For each row, the earliest other step of its (suite, run) with the same weights_sha256."""
    keys = ["suite", "run", "weights_sha256"]
    if frame.empty:  # pandas cannot join empty string columns stored by pyarrow
        return pd.Series(pd.NA, index=frame.index, dtype="Int64")
    steps = frame[keys + ["step"]].drop_duplicates().sort_values("step")
    steps["rank"] = steps.groupby(keys).cumcount()
    first = steps[steps["rank"] == 0].set_index(keys)["step"].rename("first")
    second = steps[steps["rank"] == 1].set_index(keys)["step"].rename("second")
    both = frame[keys + ["step"]].join(first, on=keys).join(second, on=keys)
    other = both["first"].where(both["step"] != both["first"], both["second"])
    return other.astype("Int64")


@dataclass(frozen=True)
class SameWeights:
    """Steps of one run whose weight files have the same sha256."""

    suite: str
    run: str
    sha256: str
    steps: tuple[int, ...]


def same_weights(path: Path, runs: list[tuple[str, str]]) -> list[SameWeights]:
    """The groups of steps, in the given (suite, run)s, that serve identical weights."""
    if not runs or not (Path(path) / "scores").is_dir():
        return []
    suites = sorted({suite for suite, _ in runs})
    columns = ["suite", "run", "step", "weights_sha256"]
    frame = pd.DataFrame.from_records(sql.distinct(path, columns, {"suite": suites}), columns=columns)
    wanted = set(runs)
    frame = frame[[run in wanted for run in zip(frame["suite"], frame["run"])]]
    groups = []
    for (suite, run, sha256), group in frame.groupby(["suite", "run", "weights_sha256"]):
        if len(group) > 1:
            groups.append(SameWeights(suite, run, sha256, tuple(sorted(group["step"]))))
    return groups


@dataclass(frozen=True)
class Settings:
    """Everything besides the weights that changes a score, as recorded with each row.

    Rows made with different settings never pass for one another: a scan into a folder that holds
    rows of a suite made with other settings is refused (see :func:`inductscan.runner.prepare_scan`).
    """

    probe: str  # the probe's record (JSON: its parameters and the sha256 of its token ids)
    icl: str | None  # the ICL examples' record (JSON), None without --icl-dataset
    dtype: str
    scoring_version: int = SCORING_VERSION
    custom_scores: str | None = None  # the users' scores' versions (see custom_record), None without any

    def differences(self, other: Settings) -> list[tuple[str, object, object]]:
        """(setting, this value, the other's value) for each setting that differs."""
        found = _record_differences("probe ", json.loads(self.probe), json.loads(other.probe))
        mine, theirs = (json.loads(record) if record else None for record in (self.icl, other.icl))
        if (mine is None) != (theirs is None):
            found.append(("ICL dataset", mine and mine["dataset"], theirs and theirs["dataset"]))
        elif mine is not None and mine["ids_sha256"] != theirs["ids_sha256"]:  # the same tokens: the same
            found += _record_differences("ICL ", mine, theirs)  # score, whichever spelling of the file's path
        found += [
            (name, getattr(self, name), getattr(other, name))
            for name in ("dtype", "scoring_version")
            if getattr(self, name) != getattr(other, name)
        ]
        mine, theirs = (json.loads(record) if record else {} for record in (self.custom_scores, other.custom_scores))
        found += [
            (f"score {name} version", mine.get(name), theirs.get(name))
            for name in sorted(set(mine) | set(theirs))
            if mine.get(name) != theirs.get(name)
        ]
        return found


def _record_differences(prefix: str, mine: dict, theirs: dict) -> list[tuple[str, object, object]]:
    """The fields of two records that differ; the ids' hash only when no parameter explains it."""
    keys = [key for key in sorted(set(mine) | set(theirs)) if key not in ("ids_sha256", "definition")]
    found = [(prefix + key, mine.get(key), theirs.get(key)) for key in keys if mine.get(key) != theirs.get(key)]
    if not found and mine.get("ids_sha256") != theirs.get("ids_sha256"):
        found.append(
            (prefix + "token ids (sha256)", mine.get("ids_sha256", "")[:16], theirs.get("ids_sha256", "")[:16])
        )
    return found


def settings_used(path: Path, suite: str) -> list[Settings]:
    """The distinct settings that a suite's rows in a results folder were scored with.

    Rows written before 0.2 recorded no dtype or scoring version: they were float32 unless the
    user chose otherwise, and version 1; they are read as such.
    """
    if not tables.has_rows(Path(path), "scores"):
        return []
    rows = sql.distinct(path, ["probe", "icl", "dtype", "scoring_version", "custom_scores"], {"suite": suite})
    return sorted(
        {
            Settings(probe, icl, dtype or "float32", version or 1, custom or None)
            for probe, icl, dtype, version, custom in rows
        },
        key=repr,
    )


def claim_settings(out: Path, suite: str, settings: Settings) -> Settings | None:
    """Record the settings a suite is scanned with in ``OUT/settings/SUITE.json``, unless a scan
    did first: then return the settings it recorded. The first scan wins however close together
    they start (shards of a job array start at the same moment, before either has written a row):
    the record is written whole to a temporary file and hard-linked into place, which fails if the
    name exists."""
    path = Path(out) / "settings" / f"{_safe(suite)}.json"
    if _write_once(path, json.dumps(dataclasses.asdict(settings), indent=1)):
        return None
    return Settings(**json.loads(path.read_text()))


def release_settings(out: Path, suite: str) -> None:
    """Forget the settings a scan claimed for ``suite`` (see :func:`claim_settings`): for a scan
    that stops before writing any of the suite's rows, whose record no row backs."""
    (Path(out) / "settings" / f"{_safe(suite)}.json").unlink(missing_ok=True)


def _write_once(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` whole, unless the file exists: written to a temporary file and
    hard-linked into place, which fails if the name exists. False if another writer was first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.name}{TEMP_MARK}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        temporary.write_text(text)
        os.link(temporary, path)
    except FileExistsError:
        return False
    finally:
        temporary.unlink(missing_ok=True)
    return True


def claim_listing(out: Path, repo: str, record: dict) -> dict:
    """Keep a repo's branch listing in ``OUT/listings/``, unless a listing is there already; return
    the one the folder holds. The first writer wins, as for the settings: shards that plan at the
    same moment all plan from one listing."""
    path = listing_path(out, repo)
    if _write_once(path, json.dumps(record, indent=1)):
        return record
    return read_listing(out, repo)


def read_listing(out: Path, repo: str) -> dict | None:
    """The listing of ``repo`` the results folder keeps, or None. A file that is not a listing is an
    :class:`OutputError` naming it."""
    path = listing_path(out, repo)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise OutputError(f"cannot read the branch listing {path}: {error}; delete it to list again") from error
    if not isinstance(record, dict) or not isinstance(record.get("branches"), list):
        raise OutputError(f"{path} is not a branch listing (no branches); delete it to list again")
    return record


def probes_used(path: Path, suite: str) -> set[str]:
    """The probe ids that a suite's rows in a results folder were scored with."""
    return {json.loads(settings.probe)["ids_sha256"][:16] for settings in settings_used(path, suite)}


def load_probe(path: str | os.PathLike, *, suite: str | None = None) -> torch.Tensor:
    """The probe's token ids, (batch, position), as stored with the results.

    A folder scanned with one probe needs no argument; one holding suites scanned with different
    probes (different BOS or token range) needs ``suite``.
    """
    probes = {file.stem: file for file in sorted((Path(path) / "probes").glob("*.json"))}
    if suite is not None:
        used = probes_used(Path(path), suite)
        probes = {key: file for key, file in probes.items() if key in used}
    if len(probes) != 1:
        where = f" for suite {suite!r}" if suite else ""
        found = "none" if not probes else f"{len(probes)} ({', '.join(probes)})"
        hint = "" if suite or not probes else "; pass suite=... to choose"
        raise OutputError(f"expected one probe in {path}{where}, found {found}{hint}")
    import torch

    stored = json.loads(next(iter(probes.values())).read_text())
    return torch.tensor(stored["ids"], dtype=torch.int64)
