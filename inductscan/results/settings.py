"""The settings a results folder's rows were scored with, and the refusals that keep rows made with
other settings from passing for one another.

Every setting that changes a score (the probe, the ICL examples, the dtype, the scoring version,
the users' scores' versions) is recorded with each row (:class:`Settings`). A scan claims its
settings for a suite in ``OUT/settings/SUITE.json`` before it scores (:func:`claim_settings`: the
first scan wins) and is refused when the folder holds the suite's rows made with others
(:func:`refuse_other_settings`); folders compared side by side are refused alike
(:func:`refuse_joined_settings`). Both name the differences in the same words
(:func:`named_differences`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from inductscan.errors import ConfigError, parameter
from inductscan.metrics import SCORING_VERSION
from inductscan.results import sql
from inductscan.results.folder import ResultsFolder
from inductscan.results.layout import safe, settings_path, write_once

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Settings:
    """Everything besides the weights that changes a score, as recorded with each row.

    Rows made with different settings never pass for one another: a scan into a folder that holds
    rows of a suite made with other settings is refused (see :func:`refuse_other_settings`).
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


def settings_used(results: ResultsFolder | str | os.PathLike, suite: str) -> list[Settings]:
    """The distinct settings that a suite's rows in a results folder were scored with.

    Rows written before 0.2 recorded no dtype or scoring version: they were float32 unless the
    user chose otherwise, and version 1; they are read as such.
    """
    folder = ResultsFolder.of(results)
    if not folder.has_rows("scores"):
        return []
    rows = sql.distinct(folder, ["probe", "icl", "dtype", "scoring_version", "custom_scores"], {"suite": suite})
    return sorted(
        {
            Settings(probe, icl, dtype or "float32", version or 1, custom or None)
            for probe, icl, dtype, version, custom in rows
        },
        key=repr,
    )


def claim_settings(out: str | os.PathLike, suite: str, settings: Settings) -> Settings | None:
    """Record the settings a suite is scanned with in ``OUT/settings/SUITE.json``, unless a scan
    did first: then return the settings it recorded. The first scan wins however close together
    they start (shards of a job array start at the same moment, before either has written a row):
    the record is written whole to a temporary file and hard-linked into place, which fails if the
    name exists."""
    path = settings_path(out, suite)
    if write_once(path, json.dumps(dataclasses.asdict(settings), indent=1)):
        return None
    return Settings(**json.loads(path.read_text()))


def release_settings(out: str | os.PathLike, suite: str) -> None:
    """Forget the settings a scan claimed for ``suite`` (see :func:`claim_settings`): for a scan
    that stops before writing any of the suite's rows, whose record no row backs."""
    settings_path(out, suite).unlink(missing_ok=True)


def probes_used(results: ResultsFolder | str | os.PathLike, suite: str) -> set[str]:
    """The probe ids that a suite's rows in a results folder were scored with."""
    return {json.loads(settings.probe)["ids_sha256"][:16] for settings in settings_used(results, suite)}


def refuse_other_settings(results: ResultsFolder | str | os.PathLike, wanted: dict[str, Settings]) -> list[str]:
    """Rows made with other settings (probe, ICL examples, dtype, scoring version) never pass for
    this scan's: refuse, in one line that names what differs and what to do, before anything is
    scored, whether or not planned checkpoints remain. Returns the suites whose settings this scan
    recorded first."""
    folder = ResultsFolder.of(results)
    out = folder.path
    recorded = []
    for suite, settings in sorted(wanted.items()):
        for held in settings_used(folder, suite):
            _refuse_if_other(out, suite, settings, held, f"{out} already holds {suite} scores")
        claimed = claim_settings(out, suite, settings)  # two scans starting at once: the first wins
        if claimed is None:
            recorded.append(suite)
        else:
            where = f"another scan of {suite} into {out} claimed it first (settings/{safe(suite)}.json)"
            _refuse_if_other(out, suite, settings, claimed, where)
    return recorded


def release_unbacked_settings(results: ResultsFolder | str | os.PathLike, suites: list[str]) -> None:
    """A scan that stops with an error before writing any row of a suite whose settings it recorded
    lets the record go: the next scan, its settings mended (a user's score fixed and its version
    raised, say), is then not refused by settings no row was scored with."""
    folder = ResultsFolder.of(results)
    folder.refresh()  # the scan wrote since the folder was listed
    for suite in suites:
        if not settings_used(folder, suite):
            release_settings(folder.path, suite)


def named_differences(
    differences: list[tuple[str, object, object]], theirs: str, mine: str, shown: Callable[[object], str] | None = None
) -> str:
    """The settings that differ, in one phrase: each ``(setting, mine, theirs)`` of
    :meth:`Settings.differences` as "setting THEIRS where-theirs, MINE where-mine"; ``shown``
    spells a value (default: None as "none")."""
    shown = shown or _shown
    return "; ".join(f"{name} {shown(held)} {theirs}, {shown(made)} {mine}" for name, made, held in differences)


def refuse_joined_settings(paths: Sequence[str | os.PathLike], frames: list[pd.DataFrame]) -> None:
    """One suite's rows in two folders made with other settings (probe, ICL examples, dtype,
    scoring version) would join into one curve as if comparable: refuse, naming what differs. A
    score of the user's own that the joined rows do not read keeps no folders apart."""
    held: dict[str, tuple] = {}
    for path, frame in zip(paths, frames):
        for suite in frame.index.get_level_values("suite").unique():
            for settings in settings_used(path, suite):
                if suite not in held:
                    held[suite] = (path, settings)
                    continue
                first_path, first = held[suite]
                differences = [
                    (name, mine, theirs)
                    for name, mine, theirs in settings.differences(first)
                    if not name.startswith("score ") or name.split()[1] in frame.columns
                ]
                if differences:
                    named = named_differences(differences, f"in {first_path}", f"in {path}", shown=str)
                    raise ConfigError(
                        f"{suite} was scored with other settings in {first_path} and {path} ({named}): "
                        "its curves cannot be joined; compare folders scanned alike"
                    )


def _refuse_if_other(out: os.PathLike, suite: str, settings: Settings, held: Settings, what: str) -> None:
    differences = settings.differences(held)
    if not differences:
        return
    named = named_differences(differences, "there", "here")
    fixes = list(dict.fromkeys(_fix(name, theirs, json.loads(held.probe)) for name, _, theirs in differences))
    raise ConfigError(
        f"{what}, made with other settings ({named}): scan with {' and '.join(fixes)}, "
        f"or into another {parameter('out')}"
    )


PROBE_TOKEN_SETTINGS = ("probe token_low", "probe token_high", "probe excluded", "probe token_list_sha256")


def _fix(setting: str, held, held_probe: dict) -> str:
    """What to pass to scan as the rows in the folder were scanned (``held_probe``: their probe's record)."""
    if setting == "ICL dataset":
        return (
            f"no {parameter('icl')} (they are without the ICL score)" if held is None else f"{parameter('icl')} {held}"
        )
    if setting in PROBE_TOKEN_SETTINGS and "token_list_sha256" in held_probe:
        return f"the same {parameter('probe_token_ids')} as before (their sha256 is the folder's)"
    if setting in PROBE_TOKEN_SETTINGS:
        return (
            f"{parameter('probe_tokens')} {held_probe['token_low']}:{held_probe['token_high']} as before "
            "(or, without it, checkpoints of the folder's vocabulary)"
        )
    if setting == "probe bos":
        return "checkpoints of the folder's vocabulary (these have another one: a local folder's probe draws from it)"
    if setting.startswith("probe "):
        return f"the same {parameter('probe_*')} settings as before"
    if setting.startswith("ICL "):
        return f"the same ICL settings as before ({parameter('icl')} and the ICL options)"
    if setting == "dtype":
        return f"{parameter('dtype')} {held}"
    if setting.startswith("score "):
        name = setting.split()[1]
        if held is None:
            return f"no score {name} (leave out what registers it)"
        return f"score {name} version {held}, as the folder's rows were scored (its module or plugin at that version)"
    return f"inductscan's scoring version {held} (its rows cannot be extended by this version)"


def _shown(value) -> str:
    return "none" if value is None else str(value)
