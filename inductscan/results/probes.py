"""The probe's and the ICL examples' records kept in a results folder (``probes/PROBE_ID.json``,
``icl/ICL_ID.json``): their parameters and token ids, written once (the name is their hash)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from inductscan.errors import DamagedFileError, OutputError
from inductscan.results.layout import atomic, icl_path, probe_path
from inductscan.results.settings import probes_used

if TYPE_CHECKING:
    import torch

    from inductscan.icl import IclExamples
    from inductscan.probe import Probe


def probe_id(probe: Probe) -> str:
    return probe.record()["ids_sha256"][:16]


def save_probe(out: str | os.PathLike, probe: Probe) -> None:
    _save_ids_once(probe_path(out, probe_id(probe)), "probe", probe.record(), probe.ids)


def save_icl(out: str | os.PathLike, examples: IclExamples) -> None:
    _save_ids_once(icl_path(out, examples.identifier()), "icl", examples.record(), examples.ids)


def _save_ids_once(path: Path, key: str, record: dict, ids: torch.Tensor) -> None:
    """A probe's or the ICL examples' record and token ids, written once: the name is their hash."""
    if path.is_file():
        return
    with atomic(path) as temporary:
        temporary.write_text(json.dumps({key: record, "ids": ids.tolist()}))


def stored_icl_ids(out: str | os.PathLike, identifier: str) -> list[list[int]] | None:
    """The ICL examples' token ids the folder keeps under ``identifier`` (their hash), or None."""
    path = icl_path(out, identifier)
    return _stored_ids(path, "the ICL examples'") if path.is_file() else None


def _stored_ids(path: Path, whose: str) -> list[list[int]]:
    """The token ids a record of the folder keeps (``whose``: "the probe's"), or
    :class:`DamagedFileError` naming the file: no scan into the folder writes it again (it is
    written once, when the first checkpoint is scored with them)."""
    try:
        ids = json.loads(path.read_text())["ids"]
    except (ValueError, KeyError, TypeError) as error:  # not JSON (nor UTF-8), or not the record's
        reason = f"it holds no {error}" if isinstance(error, KeyError) else str(error)
        raise DamagedFileError(
            f"{path} is damaged ({reason}): {whose} token ids cannot be read; restore it from a copy of the "
            "folder, or scan into a new folder with the same settings, which writes it again"
        ) from error
    return ids


def load_probe(path: str | os.PathLike, *, suite: str | None = None) -> torch.Tensor:
    """The probe's token ids, (batch, position), as stored with the results.

    A folder scanned with one probe needs no argument; one holding suites scanned with different
    probes (different BOS or token range) needs ``suite``.
    """
    probes = {file.stem: file for file in sorted(probe_path(path, "*").parent.glob("*.json"))}
    if suite is not None:
        used = probes_used(Path(path), suite)
        probes = {key: file for key, file in probes.items() if key in used}
    if len(probes) != 1:
        where = f" for suite {suite!r}" if suite else ""
        found = "none" if not probes else f"{len(probes)} ({', '.join(probes)})"
        hint = "" if suite or not probes else "; pass suite=... to choose"
        raise OutputError(f"expected one probe in {path}{where}, found {found}{hint}")
    import torch

    return torch.tensor(_stored_ids(next(iter(probes.values())), "the probe's"), dtype=torch.int64)
