"""Reading the tables of a results folder with pyarrow: the scores as a DataFrame with its derived
columns, the ICL curves, the checkpoints a folder records, and the steps that serve identical weights.

Readers see the compacted files plus the newer per-checkpoint ones (inductscan/results/compact.py)
and read only the columns they need; a selection is pushed down to the parquet reader
(:meth:`inductscan.results.selection.Selection.expression`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from inductscan import hazards
from inductscan.errors import ConfigError, OutputError, parameter
from inductscan.results import sql
from inductscan.results.declarations import learn_scores
from inductscan.results.folder import ResultsFolder
from inductscan.results.layout import no_scores, relisted, removed, require_results_folder, safe
from inductscan.results.records import load_failures
from inductscan.results.schema import CURVE_SCHEMA, INDEX, REPEATED, schema_with
from inductscan.results.selection import Selection
from inductscan.vocabulary import DERIVED, Outcome


def load_results(
    path: ResultsFolder | str | os.PathLike, *, columns: list[str] | None = None, **filters
) -> pd.DataFrame:
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
    folder = ResultsFolder.of(path)
    schema = schema_with(learn_scores(folder.path))
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
    expression = Selection.from_filters(filters).expression(schema)
    table = _read(folder, schema, columns=read, filter=expression)
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


def same_weights(path: ResultsFolder | str | os.PathLike, runs: list[tuple[str, str]]) -> list[SameWeights]:
    """The groups of steps, in the given (suite, run)s, that serve identical weights (read from
    their folders alone)."""
    folder = ResultsFolder.of(path)
    if not runs or not (folder.path / "scores").is_dir():
        return []
    suites = sorted({suite for suite, _ in runs})
    columns = ["suite", "run", "step", "weights_sha256"]
    chosen = sorted({(safe(suite), safe(run)) for suite, run in runs})
    rows = sql.distinct(folder, columns, {"suite": suites}, runs=chosen)
    frame = pd.DataFrame.from_records(rows, columns=columns)
    wanted = set(runs)
    frame = frame[[run in wanted for run in zip(frame["suite"], frame["run"])]]
    groups = []
    for (suite, run, sha256), group in frame.groupby(["suite", "run", "weights_sha256"]):
        if len(group) > 1:
            groups.append(SameWeights(suite, run, sha256, tuple(sorted(group["step"]))))
    return groups


def load_icl_curves(path: ResultsFolder | str | os.PathLike, **filters) -> pd.DataFrame:
    """The ICL loss-per-position curves: one row per (suite, run, seed, step, position), with
    ``loss`` the mean loss of predicting that token over the examples. Filters as for
    :func:`load_results`, on the curve columns."""
    files = ResultsFolder.of(path).visible_files("icl_curves")
    if not files:
        raise OutputError(f"no ICL curves in {path}: scan with {parameter('icl')} to make them")
    expression = Selection.from_filters(filters).expression(CURVE_SCHEMA)
    frame = ds.dataset(files, schema=CURVE_SCHEMA, format="parquet").to_table(filter=expression).to_pandas()
    return frame.sort_values(["suite", "run", "step", "position"]).reset_index(drop=True)


def require_results(path: ResultsFolder | str | os.PathLike) -> None:
    """Raise :class:`OutputError` unless ``path`` is a results folder with scored checkpoints."""
    folder = ResultsFolder.of(path)
    require_results_folder(folder.path)
    if not folder.has_rows("scores"):
        raise OutputError(no_scores(path))


def recorded_checkpoints(path: ResultsFolder | str | os.PathLike, *, skip_damaged: bool = False) -> pd.DataFrame:
    """Every checkpoint a results folder holds scores or a failure record of: one row per
    (suite, run, step) with its seed, repo and ``kind`` (:class:`~inductscan.vocabulary.Outcome`:
    "scored", or the failure's kind); with ``skip_damaged``, of the files that can be read (else a
    damaged one raises, naming it)."""
    columns = ["suite", "run", "seed", "repo", "step"]
    scored = pd.DataFrame(columns=columns)
    folder = ResultsFolder.of(path)
    if folder.has_rows("scores"):
        rows = sql.distinct(folder, columns, skip_damaged=skip_damaged)
        scored = pd.DataFrame.from_records(rows, columns=columns)
    failures = load_failures(folder.path)[columns + ["kind"]]
    both = pd.concat([scored.assign(kind=Outcome.SCORED.value), failures], ignore_index=True)
    return both.drop_duplicates(["suite", "run", "step"]).sort_values(["suite", "run", "step"]).reset_index(drop=True)


def _dataset(folder: ResultsFolder, schema: pa.Schema) -> ds.Dataset:
    require_results_folder(folder.path)
    return ds.dataset(folder.visible_files("scores"), schema=schema, format="parquet")


def _read(folder: ResultsFolder, schema: pa.Schema, **arguments) -> pa.Table:
    """The scores table (of the folder's schema, :func:`inductscan.results.schema.folder_schema`)
    read with ``to_table(**arguments)``, listed again if a compaction that ran meanwhile removed a
    file this reader had listed."""
    return relisted(lambda: _dataset(folder, schema).to_table(**arguments), removed, folder.refresh)
