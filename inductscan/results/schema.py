"""The tables' schemas (docs/scores.md): the scores, the ICL curves and the token losses.

This is the only module that knows the columns a results file holds.
"""

from __future__ import annotations

import os

import pyarrow as pa

from inductscan.metrics import CHECKPOINT_METRICS, HEAD_METRICS
from inductscan.results.declarations import recorded_scores

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
TOKEN_LOSS_KEYS = ["suite", "run", "seed", "step", "tokens"]
TOKEN_LOSS_SCHEMA = pa.schema(
    [
        *(SCHEMA.field(name) for name in TOKEN_LOSS_KEYS),
        ("example", pa.int32()),  # the ICL example's row in the stored ids (icl/ICL_ID.json)
        ("position", pa.int32()),  # the predicted token's number in the context, from 1 (so from 2)
        ("loss", pa.float32()),  # nats
    ]
)
# Columns that repeat one long value over a checkpoint's rows (or a whole run's): read as pandas
# categoricals, a few bytes a row instead of a string each.
REPEATED = ("suite", "repo", "run", "revision", "weights_sha256", "probe", "icl", "dtype", "inductscan_version")
SORT_KEYS = {
    "scores": ["step", "layer", "head"],
    "icl_curves": ["step", "position"],
    "token_losses": ["step", "example", "position"],
}


def schema_with(custom: list[str]) -> pa.Schema:
    """The table's schema with a column for each of the users' scores ``custom``, after its own
    (docs/custom_scores.md)."""
    return pa.schema([*SCHEMA, *(pa.field(name, pa.float64()) for name in custom)])


def folder_schema(path: str | os.PathLike) -> pa.Schema:
    """The schema of a results folder's table: the users' scores it records, after the table's own."""
    return schema_with([metric.name for metric in recorded_scores(path)])
