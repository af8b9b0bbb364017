"""Writing a checkpoint's rows: its scores, its ICL curve, its probe's and ICL examples' records.

Each file is written whole to a temporary name and renamed into place
(:func:`inductscan.results.layout.atomic`); the scores file last, since its presence marks the
checkpoint done.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from inductscan.metrics import EXACT_EFFECTS, HEAD_METRICS, SCORING_VERSION
from inductscan.results.layout import atomic, curve_path, failure_path, score_path
from inductscan.results.probes import save_icl, save_probe
from inductscan.results.schema import CURVE_SCHEMA, schema_with

if TYPE_CHECKING:  # the readers need no torch: `import inductscan` stays light
    import torch

    from inductscan.icl import IclExamples
    from inductscan.probe import Probe


def package_version() -> str:
    try:
        return version("inductscan")
    except PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class IclResult:
    """One checkpoint's ICL score and its mean loss per token position (tokens 2..context)."""

    examples: IclExamples
    score: float
    curve: torch.Tensor  # (context - 1,)


def custom_record(custom: dict[str, str] | None) -> str | None:
    """The ``custom_scores`` setting of a row: the users' scores' versions as JSON, None without any."""
    return json.dumps(custom, sort_keys=True) if custom else None


def write_scores(
    out: str | os.PathLike,
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
    setting that changes a score goes with each row (see :class:`inductscan.results.settings.Settings`).
    With ``icl``, its loss curve is written first, so that a checkpoint whose scores file exists
    has its curve too. custom: the users' scores in ``heads`` and ``checkpoint`` and their versions
    (name: version).
    """
    n_layers, n_heads = next(iter(heads.values())).shape
    rows = n_layers * n_heads
    columns = {name: [identity[name]] * rows for name in ("suite", "repo", "run", "revision", "seed", "step", "tokens")}
    columns |= {
        "layer": [layer for layer in range(n_layers) for _ in range(n_heads)],
        "head": list(range(n_heads)) * n_layers,
    }
    columns |= {name: values.reshape(-1).tolist() for name, values in heads.items()}
    for name in EXACT_EFFECTS:  # a head outside the top has no value: null, which SQL's max and count skip
        if name in heads:
            columns[name] = [None if math.isnan(value) else value for value in columns[name]]
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
    with atomic(path) as temporary:
        pq.write_table(table, temporary)
    failure_path(out, identity["suite"], identity["run"], identity["step"]).unlink(missing_ok=True)
    return path


def _write_curve(out: str | os.PathLike, identity: dict, icl: IclResult) -> None:
    positions = len(icl.curve)
    columns = {name: [identity[name]] * positions for name in ("suite", "run", "seed", "step", "tokens")}
    columns |= {"position": list(range(2, positions + 2)), "loss": icl.curve.tolist()}
    table = pa.Table.from_pydict(columns, schema=CURVE_SCHEMA)
    table = table.replace_schema_metadata({b"inductscan.icl": icl.examples.record_json().encode()})
    with atomic(curve_path(out, identity["suite"], identity["run"], identity["step"])) as temporary:
        pq.write_table(table, temporary)
