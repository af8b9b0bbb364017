"""One file from the Hub, through huggingface_hub: announced, downloaded, verified.

``announce`` asks the Hub (a HEAD) what a file at a revision is: its size and, for a large
(LFS) file, its sha256, which is also the name of its blob in the cache. ``download`` fetches
it with ``hf_hub_download`` (which resumes a broken transfer from its ``.incomplete`` file, and
so does a retry after a dropped connection) and refuses it unless its size and sha256 are what
was announced; a refused file, or a partial one of the wrong size, is removed from the cache, so
that a retry starts clean and nothing else ever reads it. A file that was already in the cache
is trusted by its content address, as huggingface_hub trusts it: an LFS blob is named by its
sha256 and moved into place only once complete, so its name is its hash and only its size is
checked; ``verify_cached`` hashes it again (0.2 s of a core per 326 MB GPT-2-small file).
Errors are sorted here: a missing revision or file is :class:`CheckpointUnavailableError`; what
a retry may cure (a dropped connection, a 5xx, a read timeout, a refused file) is
:class:`TransientError`; no connection at all (refused, no such host, connect timeout) is
:class:`HubUnreachableError`, retried once at most, since every other file would fail the same way;
offline, a file missing from the cache is :class:`NotCachedError`, not a file the Hub lacks.
"""

from __future__ import annotations

import hashlib
import importlib
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from inductscan.errors import (
    BranchListingError,
    CheckpointError,
    CheckpointUnavailableError,
    ConfigError,
    CorruptCheckpointError,
    DiskFullError,
    HubUnreachableError,
    IntegrityError,
    NotCachedError,
    TransientError,
    no_space,
    parameter,
)

SHA256 = re.compile(r"[0-9a-f]{64}")
RETRY_STATUS = {408, 429, 500, 502, 503, 504}
# A connection failure is retried once, after at most this pause, and only if it came this quickly:
# one that already waited out a connect timeout (HF_HUB_ETAG_TIMEOUT, 10 s) is not waited for again.
UNREACHABLE_PAUSE = 1.0
QUICK_FAILURE = 2.0
Result = TypeVar("Result")


@dataclass(frozen=True)
class Retry:
    """How often to retry a transient failure, waiting ``backoff * 2**k`` seconds before retry k."""

    attempts: int = 4
    backoff: float = 2.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.backoff < 0:
            raise ConfigError(f"retry attempts must be >= 1 and backoff >= 0, got {self.attempts}, {self.backoff}")

    def run(self, action: Callable[[], Result], what: str) -> Result:
        """``action()``, retried on TransientError; a lasting failure becomes a recorded one.

        A :class:`HubUnreachableError` is retried at most once, after ``min(backoff, 1 s)``, and
        only if it came within ``QUICK_FAILURE`` seconds, then raised as it is: with no connection
        the long backoff would only delay the same answer (about 20 h over a Stanford suite).
        """
        retried_connection = False
        for attempt in range(self.attempts):
            started = time.monotonic()
            try:
                return action()
            except HubUnreachableError:
                quick = time.monotonic() - started < QUICK_FAILURE
                if retried_connection or not quick or attempt + 1 == self.attempts:
                    raise
                retried_connection = True
                time.sleep(min(self.backoff, UNREACHABLE_PAUSE))
            except TransientError as error:
                last = error
                if attempt + 1 < self.attempts:
                    time.sleep(self.backoff * 2**attempt)
        lasting = CorruptCheckpointError if isinstance(last, IntegrityError) else CheckpointUnavailableError
        raise lasting(f"{what}: {last} (after {self.attempts} attempts)") from last


@dataclass(frozen=True)
class Announced:
    """What the Hub says of a file before it is fetched."""

    repo: str
    revision: str
    name: str
    size: int | None  # None offline: the cache decides
    sha256: str | None  # an LFS file's; None for small git files and offline

    @property
    def blob(self) -> Path | None:
        """Where the file's bytes live in the huggingface_hub cache, when its sha256 is known."""
        if self.sha256 is None:
            return None
        from huggingface_hub import constants
        from huggingface_hub.file_download import repo_folder_name

        storage = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=self.repo, repo_type="model")
        return storage / "blobs" / self.sha256


@dataclass(frozen=True)
class Downloaded:
    path: Path
    sha256: str
    created: bool  # its blob was not in the cache before this download


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Network errors of whichever HTTP library this huggingface_hub uses."""
    errors: list[type[BaseException]] = [TimeoutError, ConnectionError]
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"), ("requests", "RequestException")):
        try:
            errors.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


def _connect_errors() -> tuple[type[BaseException], ...]:
    """Failures to connect at all (refused, no such host, connect timeout), whichever HTTP library
    this huggingface_hub uses; a connection dropped once open is not one of them."""
    errors: list[type[BaseException]] = [ConnectionRefusedError, socket.gaierror]
    for module in ("httpx2", "httpx"):
        try:
            library = importlib.import_module(module)
        except ImportError:
            continue
        errors += [library.ConnectError, library.ConnectTimeout]
    return tuple(errors)


def _connect_failure(error: BaseException) -> BaseException | None:
    """The connection failure behind ``error``: itself, or what huggingface_hub wrapped in it
    (``raise ... from``). Only causes: an error merely raised while handling a failed connect
    (a resumed download that then broke) is not one."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, _connect_errors()):
            return error
        seen.add(id(error))
        error = error.__cause__
    return None


def _unreachable(where: str, failure: BaseException, offline_way: str | None = None) -> HubUnreachableError:
    """The one-line error for a Hub that cannot be reached, with the way to work offline
    (``offline_way``, where it is not the checkpoints in the cache alone)."""
    from huggingface_hub import constants

    offline_way = (
        offline_way or f"set HF_HUB_OFFLINE=1 with the checkpoints already in the cache ({constants.HF_HUB_CACHE})"
    )
    return HubUnreachableError(
        f"{where}: cannot reach the Hub at {constants.ENDPOINT} ({_first_line(failure)}); "
        f"to work offline, {offline_way}"
    )


def require_reachable(where: str, timeout: float = 10.0) -> None:
    """Raise :class:`HubUnreachableError` at once unless the Hub's endpoint accepts a connection
    (or the Hub is off by HF_HUB_OFFLINE): for libraries that retry for half a minute before they
    give up, such as ``datasets.load_dataset``."""
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    if _offline():
        return
    endpoint = urlsplit(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
    except OSError as error:
        raise _unreachable(where, error) from error


def not_cached(subject: str, verb: str = "is") -> NotCachedError:
    """Offline, ``subject`` (``repo@revision/file``, say) missing from the cache, which is named."""
    from huggingface_hub import constants

    cache = constants.HF_HUB_CACHE
    return NotCachedError(f"{subject} {verb} not in the local cache (HF_HUB_OFFLINE is set; cache: {cache})")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def offline() -> bool:
    """HF_HUB_OFFLINE is set: only the local cache (and cached branch listings) may answer."""
    return _offline()


def list_branches(repo: str) -> list[tuple[str, str]]:
    """The repo's branches as (name, commit) pairs, from the Hub's refs endpoint.

    huggingface_hub's module-level ``list_repo_refs`` keeps the endpoint it saw at import, so an
    ``HfApi`` is made here with the endpoint of now. No connection at all is
    :class:`HubUnreachableError`; a repo the Hub does not have, or any other failure, is one
    :class:`BranchListingError` line.
    """
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    where = f"listing the branches of {repo}"
    try:
        refs = HfApi(endpoint=constants.ENDPOINT).list_repo_refs(repo)
    except Exception as error:  # sorted here; anything else is raised as it is
        failure = _connect_failure(error)
        if failure is not None:
            offline_way = (
                "run the same command once with the Hub reachable: the suite's steps come from this listing, which "
                "is kept in the results folder; then HF_HUB_OFFLINE=1 works with the checkpoints in the cache"
            )
            raise _unreachable(where, failure, offline_way) from error
        if isinstance(error, RepositoryNotFoundError):
            raise BranchListingError(f"{where}: the Hub has no such repository, or it is private or gated") from error
        if isinstance(error, (HfHubHTTPError, *_transport_errors())):
            raise BranchListingError(f"{where}: {_first_line(error)}; try again later") from error
        raise
    return [(branch.name, branch.target_commit) for branch in refs.branches]


def _classify(error: BaseException, where: str) -> CheckpointError | None:
    """The inductscan error for a huggingface_hub failure; None for 'no such file' (try another)."""
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    failure = _connect_failure(error)
    if failure is not None:  # bare from a HEAD; in a LocalEntryNotFoundError from hf_hub_download
        return _unreachable(where, failure)
    if isinstance(error, RemoteEntryNotFoundError):
        return None
    if isinstance(error, RevisionNotFoundError):
        return CheckpointUnavailableError(f"{where}: the Hub has no such revision (RevisionNotFoundError, 404)")
    if isinstance(error, RepositoryNotFoundError):
        return CheckpointUnavailableError(f"{where}: the Hub has no such repository, or it is private or gated")
    if isinstance(error, (LocalEntryNotFoundError, OfflineModeIsEnabled)) and _offline():
        return not_cached(where)
    if isinstance(error, LocalEntryNotFoundError):  # online: the HEAD failed, other than by connecting
        return TransientError(f"{where}: {_first_line(error.__cause__ or error)}")
    if isinstance(error, HfHubHTTPError):
        status = error.response.status_code if error.response is not None else None
        kind = TransientError if status in RETRY_STATUS else CheckpointUnavailableError
        return kind(f"{where}: {_first_line(error)}")
    if no_space(error):  # the cache's disk: every later download would fail alike
        from huggingface_hub import constants

        raise DiskFullError(
            f"no space left downloading {where} into the Hugging Face cache ({constants.HF_HUB_CACHE}): free "
            f"some space (or bound the downloads with {parameter('max_disk')}), then re-run the same command to resume",
            error.errno,
        ) from error
    if isinstance(error, OSError) and "Consistency check" in str(error):  # huggingface_hub's size check
        return IntegrityError(f"{where}: refused: {_first_line(error)}")
    if isinstance(error, _transport_errors()):
        return TransientError(f"{where}: {_first_line(error)}")
    raise error


def _metadata(repo: str, revision: str, name: str):
    """The Hub's answer to a HEAD of the file (``HfFileMetadata``), or None if the revision lacks it.

    One request, never retried by huggingface_hub, so that a Hub that cannot be reached says so at once.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    try:
        return get_hf_file_metadata(hf_hub_url(repo, name, revision=revision))
    except Exception as error:  # sorted by _classify; anything else is raised as it is
        sorted_error = _classify(error, f"{repo}@{revision}/{name}")
        if sorted_error is None:
            return None
        raise sorted_error from error


def _cached(repo: str, revision: str, name: str):
    """The file's path in the local cache; huggingface_hub's ``_CACHED_NO_EXIST`` if the cache
    records that the revision lacks it; None if the cache does not know."""
    from huggingface_hub import try_to_load_from_cache

    return try_to_load_from_cache(repo, name, revision=revision)


def announce(repo: str, revision: str, name: str) -> Announced | None:
    """The file's size and sha256 as the Hub announces them; None if the revision has no such file.

    Offline, the cache answers: a file it lacks raises :class:`NotCachedError` unless it records
    that the revision has no such file (then None, as online).
    """
    if _offline():
        from huggingface_hub import _CACHED_NO_EXIST

        cached = _cached(repo, revision, name)
        if cached is _CACHED_NO_EXIST:
            return None
        if cached is None:
            raise not_cached(f"{repo}@{revision}/{name}")
        return Announced(repo, revision, name, None, None)
    metadata = _metadata(repo, revision, name)
    if metadata is None:
        return None
    etag = (metadata.etag or "").strip('"')
    return Announced(repo, revision, name, metadata.size, etag if SHA256.fullmatch(etag) else None)


def content_address(path: Path) -> str | None:
    """The sha256 a cached file's blob is named by (an LFS file's); None for a git file or a plain path."""
    name = Path(path).resolve().name
    return name if SHA256.fullmatch(name) else None


def hash_file(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def download(file: Announced, *, verify_cached: bool = False) -> Downloaded | None:
    """The file on local disk, verified against its announcement; None if the revision lacks it.

    A file this call downloads is hashed; one already in the cache under its sha256 (offline,
    every file comes from the cache) is hashed only with ``verify_cached``. A file not in the
    cache is first asked for with one HEAD of our own: ``hf_hub_download`` retries a failed HEAD
    for 23 s before it gives up, so this is how a Hub that went away since the announcement is
    told at once.
    """
    from huggingface_hub import hf_hub_download

    where = f"{file.repo}@{file.revision}/{file.name}"
    blob = file.blob
    existed = _offline() or (blob is not None and blob.is_file())
    if not _offline() and not isinstance(_cached(file.repo, file.revision, file.name), str):
        if _metadata(file.repo, file.revision, file.name) is None:
            return None
    try:
        path = Path(hf_hub_download(file.repo, file.name, revision=file.revision))
    except Exception as error:  # sorted by _classify; anything else is raised as it is
        sorted_error = _classify(error, where)
        if isinstance(sorted_error, IntegrityError) and blob is not None:  # wrong bytes: restart clean;
            blob.with_name(blob.name + ".incomplete").unlink(missing_ok=True)  # else the retry resumes
        if sorted_error is None:
            return None
        raise sorted_error from error
    size = path.stat().st_size
    address = content_address(path)
    expected, source = (file.sha256, "the Hub announced") if file.sha256 else (address, "its cache blob is named")
    trusted = existed and not verify_cached and expected is not None and expected == address
    digest = expected if trusted else hash_file(path)
    problem = None
    if file.size is not None and size != file.size:
        problem = f"{size} bytes where the Hub announced {file.size}"
    elif expected is not None and digest != expected:
        problem = f"sha256 {digest[:12]}... where {source} {expected[:12]}..."
    if problem:
        remove_cached(path)
        raise IntegrityError(f"{where}: refused: {problem}")
    return Downloaded(path, digest, created=blob is not None and not existed)


def remove_cached(path: Path) -> None:
    """Remove a file from the huggingface_hub cache: its snapshot link and the blob it points to."""
    path = Path(path)
    blob = path.resolve() if path.is_symlink() else None
    path.unlink(missing_ok=True)
    if blob is not None:
        blob.unlink(missing_ok=True)
