"""The per-token loss side table: with ``scan --token-losses``, the loss of every predicted token of
the ICL examples at every checkpoint.

Layout beside the scores (see :mod:`inductscan.results`)::

    token_losses/SUITE/RUN/step-000001000.parquet   one row per (example, position)
    token_losses/SUITE/RUN/compact-000001.parquet   after compaction, as the scores (inductscan/results/compact.py)

Written like the ICL curve files: to a temporary name, then renamed; and before the checkpoint's
scores file, whose presence marks the checkpoint done, so a done checkpoint of a scan with
``--token-losses`` always has its side file. A scan with ``--token-losses`` counts a checkpoint as
done only when both exist (:class:`Recorded`), so resuming it into a folder scored without the flag
scores the missing side files rather than leaving them out.

Size: ``examples x (context - 1)`` float32 losses per checkpoint, 4 bytes each (16 x 511 x 4 =
32.7 kB with the default ICL settings); a file is about 37 kB with its compressed identity columns
and metadata (zstd, the losses byte-stream-split, no dictionary for them).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from inductscan.errors import OutputError, parameter
from inductscan.results.folder import ResultsFolder, Scored
from inductscan.results.layout import atomic, require_results_folder, token_losses_path
from inductscan.results.probes import stored_icl_ids
from inductscan.results.read import recorded_checkpoints
from inductscan.results.schema import TOKEN_LOSS_KEYS as KEYS
from inductscan.results.schema import TOKEN_LOSS_SCHEMA as SCHEMA
from inductscan.results.selection import Selection
from inductscan.vocabulary import Outcome

if TYPE_CHECKING:
    import torch

    from inductscan.icl import IclExamples

TABLE = "token_losses"
BYTES_PER_LOSS = 4
WRITE_OPTIONS = {
    "use_dictionary": [*KEYS, "example", "position"],
    "use_byte_stream_split": ["loss"],
    "compression": "zstd",
}


def path_of(out: str | os.PathLike, suite: str, run: str, step: int) -> Path:
    return token_losses_path(out, suite, run, step)


class Recorded:
    """The checkpoints a results folder holds both scores and token losses of (compacted or not):
    ``(suite, run, step) in Recorded(folder)``, from the folder's one listing."""

    def __init__(self, folder: ResultsFolder | str | os.PathLike) -> None:
        folder = ResultsFolder.of(folder)
        self._scored, self._losses = Scored(folder), Scored(folder, TABLE)

    def __contains__(self, checkpoint: tuple[str, str, int]) -> bool:
        return checkpoint in self._scored and checkpoint in self._losses


def size_per_checkpoint(examples: int, context: int) -> int:
    """Bytes of losses a checkpoint adds: ``examples x (context - 1)`` float32 values."""
    return examples * (context - 1) * BYTES_PER_LOSS


def write(out: str | os.PathLike, identity: dict, losses: torch.Tensor, examples: IclExamples) -> Path:
    """Write one checkpoint's per-token losses, (examples, context - 1), atomically.

    identity: suite, run, seed, step, tokens (and more, ignored). Entry ``[e, p - 1]`` is the loss of
    predicting the token at index ``p`` of example ``e``: position (token number) ``p + 1``.
    """
    import numpy as np

    values = losses.detach().float().cpu().numpy()  # (examples, context - 1)
    count, width = values.shape
    columns = {name: pa.array([identity[name]] * (count * width), SCHEMA.field(name).type) for name in KEYS}
    columns["example"] = pa.array(np.repeat(np.arange(count, dtype=np.int32), width))
    columns["position"] = pa.array(np.tile(np.arange(2, width + 2, dtype=np.int32), count))
    columns["loss"] = pa.array(values.reshape(-1))
    table = pa.Table.from_pydict(columns, schema=SCHEMA)
    table = table.replace_schema_metadata({b"inductscan.icl": examples.record_json().encode()})
    path = path_of(out, identity["suite"], identity["run"], identity["step"])
    with atomic(path) as temporary:  # float losses do not repeat: a dictionary would double them
        pq.write_table(table, temporary, **WRITE_OPTIONS)
    return path


def _files(path: ResultsFolder | str | os.PathLike) -> list[str]:
    return ResultsFolder.of(path).visible_files(TABLE)  # each row once, compacted or not


def load_token_losses(path: str | os.PathLike, **filters) -> pd.DataFrame:
    """The per-token losses of a results folder scanned with ``--token-losses``: one row per
    (suite, run, seed, step, example, position), ``loss`` in nats (float32), ``position`` the
    predicted token's number in the context (from 2, as in :func:`inductscan.load_icl_curves`).

    Filters as for :func:`inductscan.load_results`, on these columns, e.g.
    ``load_token_losses("results/", seed=[0, 1], step=slice(1000, None))``.
    """
    require_results_folder(path)
    files = _files(path)
    if not files:
        raise OutputError(
            f"no token losses in {path}: scan with {parameter('icl')} and {parameter('token_losses')} to store them"
        )
    expression = Selection.from_filters(filters).expression(SCHEMA)
    frame = ds.dataset(files, schema=SCHEMA, format="parquet").to_table(filter=expression).to_pandas()
    return frame.sort_values(["suite", "run", "step", "example", "position"]).reset_index(drop=True)


def seeds_held(path: str | os.PathLike, suite: str | None = None) -> list[int]:
    """The seeds that a results folder's token losses hold (of ``suite``, if given), read from the
    seed column alone."""
    require_results_folder(path)
    files = _files(path)
    if not files:
        return []
    where = None if suite is None else ds.field("suite") == suite
    table = ds.dataset(files, schema=SCHEMA, format="parquet").to_table(columns=["seed"], filter=where)
    return sorted(set(table.column("seed").unique().to_pylist()))


def missing(path: str | os.PathLike) -> pd.DataFrame:
    """The scored checkpoints of a results folder without token losses (scored by a scan without
    ``--token-losses``): one row per (suite, run, seed, step). Rescan them with the flag to add them."""
    folder = ResultsFolder.of(path)
    recorded = recorded_checkpoints(folder)
    scored = recorded[recorded["kind"] == Outcome.SCORED]
    recorded = Recorded(folder)
    have = [(row.suite, row.run, row.step) in recorded for row in scored.itertuples()]
    return scored[[not held for held in have]][["suite", "run", "seed", "step"]].reset_index(drop=True)


def icl_ids(path: str | os.PathLike) -> pd.DataFrame | None:
    """The ICL examples' token ids as stored with the token losses, as a frame indexed by
    (example, position) with column ``token``: the predicted token's id. None if not found."""
    files = _files(path)
    if not files:
        return None
    metadata = pq.read_schema(files[0]).metadata or {}
    record = metadata.get(b"inductscan.icl")
    if record is None:
        return None
    ids = stored_icl_ids(path, json.loads(record)["ids_sha256"][:16])
    if ids is None:
        return None
    rows = [(example, number, token) for example, row in enumerate(ids) for number, token in enumerate(row, start=1)]
    frame = pd.DataFrame(rows, columns=["example", "position", "token"])
    return frame.set_index(["example", "position"])
