"""A Hub repo's branch listing kept in a results folder (``listings/OWNER_REPO.json``), read and
written for :mod:`inductscan.listing`."""

from __future__ import annotations

import json
import os

from inductscan.errors import OutputError
from inductscan.results.layout import listing_path, write_once


def claim_listing(out: str | os.PathLike, repo: str, record: dict) -> dict:
    """Keep a repo's branch listing in ``OUT/listings/``, unless a listing is there already; return
    the one the folder holds. The first writer wins, as for the settings: shards that plan at the
    same moment all plan from one listing."""
    path = listing_path(out, repo)
    if write_once(path, json.dumps(record, indent=1)):
        return record
    return read_listing(out, repo)


def read_listing(out: str | os.PathLike, repo: str) -> dict | None:
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
