"""Find a checkpoint's files: through huggingface_hub at its pinned revision, or in a local folder.

Only ``config.json`` and the weights are fetched, never the whole branch: Stanford CRFM branches
also hold DeepSpeed optimizer state (``global_stepN/``) several times the size of the weights.
Safetensors are preferred where the revision has them; a sharded checkpoint is fetched as its
index and the shards it names. A Hub fetch is two steps, so that a pipeline can budget disk
between them: ``locate`` (the files and their announced sizes) and ``fetch_planned`` (download
and verify, see :mod:`inductscan.hub`). Every weight file has its sha256 (hashed, or a cached
blob's content address) so that two steps serving the same weights can be told apart from two
that merely look alike.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from inductscan.errors import CheckpointUnavailableError, CorruptCheckpointError, NotCachedError, UnknownRunError
from inductscan.hazards import Hazard, known_missing
from inductscan.hub import Announced, Downloaded, Retry, announce, download, not_cached
from inductscan.idle import IdleWork
from inductscan.suites import Run, Suite, local_step_folder

# In order of preference: safetensors (no pickle), then the pickled .bin the old branches hold.
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


@dataclass(frozen=True)
class CheckpointRef:
    """One planned checkpoint: a run of a suite at a step."""

    suite: Suite
    run: Run
    step: int

    @property
    def repo(self) -> str:
        """The Hub repo of this checkpoint: the run's (TinyLlama's checkpoints are repos of their own)."""
        return self.run.repo_of(self.step)

    @property
    def revision(self) -> str:
        """Its Hub branch (a listed run's from the listing; :class:`CheckpointUnavailableError`
        naming the branches nearby if the listing has none), or its local step folder's name."""
        if self.suite.source == "local":
            return local_step_folder(self.run, self.step).name
        if self.run.listed:
            return self.run.listed_revision(self.step)
        return self.suite.revision_of(self.step)

    @property
    def tokens(self) -> int:
        return self.suite.tokens_of(self.run, self.step)

    def describe(self) -> str:
        return f"{self.run.name} step {self.step}"

    @property
    def missing_upstream(self) -> Hazard | None:
        """Why this Hub branch is known to be missing upstream: its repo's listing lacks it, or the
        packaged table lists it; else None."""
        if self.suite.source == "local":
            return None
        if self.run.listed and self.step not in self.run.steps:
            return Hazard(self.repo, "", "missing", "not among the repo's listed branches", self.run.listing or "")
        return known_missing(self.repo, self.revision)


@dataclass(frozen=True)
class CheckpointFiles:
    config: Path
    weights: tuple[Path, ...]
    digest: WeightsDigest  # of the single weight file; of the shards' names and hashes when sharded
    downloaded: tuple[Path, ...] = ()  # weight files whose cache blobs this fetch created: removable once scored

    @property
    def sha256(self) -> str:
        """The weights' sha256; a local folder's may still be in the making (see :class:`WeightsDigest`)."""
        return self.digest.result()


class WeightsDigest:
    """The sha256 of a checkpoint's weights: known (a Hub file, verified as it was fetched), or made
    from a local folder's files in the machine's idle time (:mod:`inductscan.idle`), in 8 MB steps,
    while the checkpoints before it are scored; :meth:`result` finishes it. The file is read once
    for it, into the page cache, where the load finds it. A file that cannot be read is a
    :class:`CheckpointUnavailableError` (recorded, the scan goes on)."""

    def __init__(self, known: str | None = None, files: list[Path] | None = None):
        self._known = known
        self._files = [Path(path) for path in files or ()]
        self._work = [IdleWork(_FileHash(path).steps()) for path in self._files] if known is None else []

    def result(self) -> str:
        if self._known is None:
            try:
                digests = [work.result()[-1] for work in self._work]
            except OSError as error:
                raise CheckpointUnavailableError(f"cannot read {error.filename or self._files[0]}: {error}") from error
            if len(digests) == 1:
                self._known = digests[0]
            else:
                self._known = combined_sha256([(path.name, digest) for path, digest in zip(self._files, digests)])
        return self._known


HASH_CHUNK = 8 << 20  # bytes hashed per step: 12 ms of a core, the longest a caller taking over waits


class _FileHash:
    """One file's sha256 in steps of ``HASH_CHUNK`` bytes, each step after the one before; the last
    step's result is the hex digest."""

    def __init__(self, path: Path):
        self.path, self.hasher, self.handle = path, hashlib.sha256(), None

    def steps(self) -> list:
        size = self.path.stat().st_size if self.path.is_file() else 0
        return [self._chunk] * (size // HASH_CHUNK) + [self._rest]

    def _chunk(self) -> None:
        if self.handle is None:
            self.handle = open(self.path, "rb")  # closed by the last step
        self.hasher.update(self.handle.read(HASH_CHUNK))

    def _rest(self) -> str:
        if self.handle is None:
            self.handle = open(self.path, "rb")
        with self.handle:
            while chunk := self.handle.read(HASH_CHUNK):
                self.hasher.update(chunk)
        return self.hasher.hexdigest()


@dataclass(frozen=True)
class FetchPlan:
    """What fetching a checkpoint takes: a Hub checkpoint's files as announced (config first)."""

    ref: CheckpointRef
    files: tuple[Announced, ...] = ()

    @property
    def size(self) -> int:
        """Bytes the fetch may add to the disk: the announced files whose blobs are not there yet."""
        return sum(file.size or 0 for file in self.files if file.blob is None or not file.blob.is_file())

    @property
    def blobs(self) -> tuple[Path, ...]:
        return tuple(file.blob for file in self.files if file.blob is not None)


def locate(ref: CheckpointRef, retry: Retry = Retry()) -> FetchPlan:
    """Which files the checkpoint needs and how large they are, before any weight is downloaded.

    Asks the Hub for ``config.json`` and the first weight file in ``WEIGHT_FILES`` order that the
    revision has (a sharded one's index is downloaded here, small, to name its shards). Offline,
    the cache answers, and a checkpoint it lacks is a :class:`NotCachedError` (recorded as failed),
    not a revision without weights; with no connection, a :class:`HubUnreachableError` within
    seconds (see :meth:`Retry.run`).
    """
    if ref.suite.source == "local":
        return FetchPlan(ref)
    repo, revision = ref.repo, ref.revision
    where = f"{repo}@{revision}"

    def announced(name: str) -> Announced | None:
        return retry.run(lambda: announce(repo, revision, name), where)

    config = _announced_config(ref, retry)
    uncached = []  # offline: weight files the cache does not have (the revision may well have them)
    for name in WEIGHT_FILES:
        try:
            first = announced(name)
        except NotCachedError:
            uncached.append(name)
            continue
        if first is None:
            continue
        if not name.endswith(".index.json"):
            return FetchPlan(ref, (config, first))
        index = _download(first, retry)
        shards = [announced(shard) for shard in shard_files(index.path)]
        missing = [shard for shard, found in zip(shard_files(index.path), shards) if found is None]
        if missing:
            raise CheckpointUnavailableError(f"{where}: shards named by {name} are missing: {', '.join(missing)}")
        return FetchPlan(ref, (config, *shards))
    if uncached:
        raise not_cached(f"{where}: its weights ({', '.join(uncached)})", "are")
    raise CheckpointUnavailableError(f"{where} has no weight file (looked for {', '.join(WEIGHT_FILES)})")


def _download(file: Announced, retry: Retry, verify_cached: bool = False) -> Downloaded:
    where = f"{file.repo}@{file.revision}"
    found = retry.run(lambda: download(file, verify_cached=verify_cached), where)
    if found is None:
        raise CheckpointUnavailableError(f"{where}: {file.name} disappeared between announcement and download")
    return found


def fetch_planned(plan: FetchPlan, retry: Retry = Retry(), *, verify_cached: bool = False) -> CheckpointFiles:
    """Download (or find in the cache) every file of a plan, each verified (a cached one by its blob's
    name unless ``verify_cached``, see :func:`inductscan.hub.download`); a local one is read in place."""
    if plan.ref.suite.source == "local":
        return _local(plan.ref)
    config, *weights = [_download(file, retry, verify_cached) for file in plan.files]
    digest = (
        weights[0].sha256 if len(weights) == 1 else combined_sha256([(file.path.name, file.sha256) for file in weights])
    )
    downloaded = tuple(file.path for file in weights if file.created)  # config.json is small: kept
    return CheckpointFiles(config.path, tuple(file.path for file in weights), WeightsDigest(digest), downloaded)


def _announced_config(ref: CheckpointRef, retry: Retry) -> Announced:
    where = f"{ref.repo}@{ref.revision}"
    config = retry.run(lambda: announce(ref.repo, ref.revision, "config.json"), where)
    if config is None:
        raise CheckpointUnavailableError(f"{where} has no config.json")
    return config


def fetch_config(ref: CheckpointRef, retry: Retry = Retry()) -> Path:
    """Only the checkpoint's ``config.json`` (small), e.g. to build the probe before a scan starts."""
    if ref.suite.source == "local":
        return _local_config(ref)
    return _download(_announced_config(ref, retry), retry).path


def _local_config(ref: CheckpointRef) -> Path:
    try:
        folder = local_step_folder(ref.run, ref.step)
    except UnknownRunError as error:
        raise CheckpointUnavailableError(str(error)) from error
    config = folder / "config.json"
    if not config.is_file():
        raise CheckpointUnavailableError(f"{folder} has no config.json")
    return config


def _local(ref: CheckpointRef) -> CheckpointFiles:
    config, files = local_files(ref)
    return CheckpointFiles(config, tuple(files), WeightsDigest(files=files))


def local_files(ref: CheckpointRef) -> tuple[Path, list[Path]]:
    """A local checkpoint's ``config.json`` and weight files (its shards, when sharded), unread."""
    config = _local_config(ref)
    folder = config.parent
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            files = [folder / name]
            if name.endswith(".index.json"):
                files = [folder / shard for shard in shard_files(folder / name)]
                missing = [str(path) for path in files if not path.is_file()]
                if missing:
                    raise CheckpointUnavailableError(f"shards named by {folder / name} are missing: {missing}")
            return config, files
    raise CheckpointUnavailableError(f"{folder} has no weight file (looked for {', '.join(WEIGHT_FILES)})")


def shard_files(index_path: Path) -> list[str]:
    """The shard file names that a ``*.index.json`` names, in order."""
    try:
        weight_map = json.loads(Path(index_path).read_text())["weight_map"]
    except (OSError, KeyError, json.JSONDecodeError) as error:
        raise CorruptCheckpointError(f"cannot read the shard index {index_path}: {error}") from error
    return sorted(set(weight_map.values()))


def combined_sha256(named_hashes: list[tuple[str, str]]) -> str:
    """One sha256 over a sharded checkpoint's shards: of their names and hashes, in order."""
    return hashlib.sha256("".join(f"{name}:{digest}\n" for name, digest in named_hashes).encode()).hexdigest()


def hash_files(files: list[Path]) -> str:
    """One sha256 for a checkpoint's weights: the file's own, or, when sharded, one over the shards'
    (each shard hashed in its own thread, see :class:`WeightsDigest`)."""
    return WeightsDigest(files=files).result()
