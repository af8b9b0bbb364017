"""Find a checkpoint's files: through huggingface_hub at its pinned revision, or in a local folder.

Only ``config.json`` and the weights are fetched, never the whole branch: Stanford CRFM branches
also hold DeepSpeed optimizer state (``global_stepN/``) several times the size of the weights.
Safetensors are preferred where the revision has them; a sharded checkpoint is fetched as its
index and the shards it names. Every weight file is hashed (sha256) so that two steps serving the
same weights can be told apart from two that merely look alike.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from inductscan.errors import CheckpointUnavailableError, UnknownRunError
from inductscan.model import shard_files
from inductscan.suites import Run, Suite, local_step_folder

# In order of preference: safetensors (no pickle), then the pickled .bin the old branches hold.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


@dataclass(frozen=True)
class CheckpointRef:
    """One planned checkpoint: a run of a suite at a step."""

    suite: Suite
    run: Run
    step: int

    @property
    def revision(self) -> str:
        if self.suite.source == "local":
            return local_step_folder(self.run, self.step).name
        return self.suite.revision_of(self.step)

    @property
    def tokens(self) -> int:
        return self.step * self.suite.tokens_per_step

    def describe(self) -> str:
        return f"{self.run.name} step {self.step}"


@dataclass(frozen=True)
class CheckpointFiles:
    config: Path
    weights: tuple[Path, ...]
    sha256: str  # of the single weight file; of the shards' names and hashes when sharded


def fetch(ref: CheckpointRef) -> CheckpointFiles:
    """The checkpoint's config and weight files on local disk, downloading what is missing."""
    if ref.suite.source == "local":
        return _local(ref)
    return _hub(ref)


def fetch_config(ref: CheckpointRef) -> Path:
    """Only the checkpoint's ``config.json`` (small), e.g. to build the probe before a scan starts."""
    if ref.suite.source == "local":
        return _local_config(ref)
    return _hub_files(ref, weights=False).config


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
            return CheckpointFiles(config, tuple(files), hash_files(files))
    raise CheckpointUnavailableError(f"{folder} has no weight file (looked for {', '.join(WEIGHT_FILES)})")


def _hub(ref: CheckpointRef) -> CheckpointFiles:
    return _hub_files(ref, weights=True)


def _hub_files(ref: CheckpointRef, *, weights: bool) -> CheckpointFiles:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, OfflineModeIsEnabled

    repo, revision = ref.run.repo, ref.revision

    def download(filename: str) -> Path:
        return Path(hf_hub_download(repo, filename, revision=revision))

    where = f"{repo}@{revision}"
    try:
        config = download("config.json")
        if not weights:
            return CheckpointFiles(config, (), "")
        for name in WEIGHT_FILES:
            try:
                first = download(name)
            except EntryNotFoundError:
                continue
            files = [first]
            if name.endswith(".index.json"):
                files = [download(shard) for shard in shard_files(first)]
            return CheckpointFiles(config, tuple(files), hash_files(files))
    except EntryNotFoundError as error:
        raise CheckpointUnavailableError(f"{where}: file not found: {_first_line(error)}") from error
    except (HfHubHTTPError, OfflineModeIsEnabled, OSError) as error:
        raise CheckpointUnavailableError(f"{where}: {type(error).__name__}: {_first_line(error)}") from error
    raise CheckpointUnavailableError(f"{where} has no weight file (looked for {', '.join(WEIGHT_FILES)})")


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def hash_file(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def hash_files(files: list[Path]) -> str:
    """One sha256 for a checkpoint's weights: the file's own, or, when sharded, one over the shards'."""
    if len(files) == 1:
        return hash_file(files[0])
    listing = "".join(f"{Path(path).name}:{hash_file(path)}\n" for path in files)
    return hashlib.sha256(listing.encode()).hexdigest()
