"""The in-context learning score on real text (Olsson et al. 2022), through ``datasets``.

``icl_score`` = mean loss of predicting the ``late``-th token of a context minus the mean loss of
predicting its ``early``-th, tokens numbered from 1. A context is an example's first ``context``
tokens exactly as tokenised, nothing prepended. With the paper's 512-token contexts the two are
token 500 and token 50; they scale with the context: ``early = floor(50 * context / 512)``,
``late = floor(500 * context / 512)`` (64 -> 6 and 62). Negative means the model uses far context:
about -0.4 nats after the induction-head phase change, above -0.15 before.

The examples are chosen once per scan (a seeded shuffle, the first ``examples`` long enough) and
tokenised once, so every checkpoint sees the same tokens; their ids are stored with the results.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

from inductscan.errors import ConfigError, parameter

REFERENCE_CONTEXT, REFERENCE_EARLY, REFERENCE_LATE = 512, 50, 500
DATA_SUFFIXES = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".txt": "text", ".csv": "csv"}
DEFINITION = (
    "icl_score = mean loss (nats) of predicting token {late} of a {context}-token context minus that of "
    "predicting token {early} (tokens numbered from 1; contexts are examples' first {context} tokens as "
    "tokenised, nothing prepended; Olsson et al. 2022 use 512, 500 and 50, scaled here with the context)"
)


@dataclass(frozen=True)
class IclConfig:
    """What the user chooses: the dataset, its split and column, how many examples, how long."""

    dataset: str
    split: str = "train"
    column: str | None = None  # None: input_ids if the dataset has it, else text
    examples: int = 16
    context: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        if self.examples < 1:
            raise ConfigError(f"{parameter('icl.examples')} must be >= 1, got {self.examples}")
        if self.positions()[0] < 2:
            raise ConfigError(
                f"{parameter('icl.context')} must be >= 21 (its early token, "
                f"50/512 of it, needs one before), got {self.context}"
            )

    def positions(self) -> tuple[int, int]:
        """The early and late token numbers (from 1) whose losses the score compares."""
        return (REFERENCE_EARLY * self.context // REFERENCE_CONTEXT, REFERENCE_LATE * self.context // REFERENCE_CONTEXT)


@dataclass(frozen=True)
class IclExamples:
    """The scan's fixed ICL tokens (examples, context) and where they came from."""

    config: IclConfig
    ids: torch.Tensor
    tokenizer: str | None  # where the tokenizer came from; None for a pre-tokenised column
    column: str

    def record(self) -> dict:
        early, late = self.config.positions()
        return {
            **asdict(self.config),
            "column": self.column,
            "tokenizer": self.tokenizer,
            "early": early,
            "late": late,
            "definition": definition(self.config),
            "ids_sha256": self.ids_sha256,
        }

    @cached_property
    def ids_sha256(self) -> str:
        return hashlib.sha256(self.ids.numpy().tobytes()).hexdigest()

    def record_json(self) -> str:
        return json.dumps(self.record(), sort_keys=True)

    def identifier(self) -> str:
        return self.ids_sha256[:16]


def definition(config: IclConfig) -> str:
    early, late = config.positions()
    return DEFINITION.format(early=early, late=late, context=config.context)


def load_examples(config: IclConfig, tokenizer_source: tuple[str, str | None] | None) -> IclExamples:
    """Load the dataset, pick and tokenise the examples; one clear error for each bad input.

    ``tokenizer_source`` is (repo or folder, revision): where the checkpoints' tokenizer lives.
    """
    import torch

    dataset = _load_dataset(config)
    column = config.column or ("input_ids" if "input_ids" in dataset.column_names else "text")
    if column not in dataset.column_names:
        raise ConfigError(
            f"{config.dataset} ({config.split}) has no column {column!r}; its columns are "
            f"{', '.join(dataset.column_names)}; choose one with {parameter('icl.column')}"
        )
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(config.seed)).tolist()
    first = dataset[order[0]][column] if order else None
    pretokenised = isinstance(first, list)
    tokenizer, source = (None, None) if pretokenised else _tokenizer(config, column, first, tokenizer_source)
    chosen: list[list[int]] = []
    for index in order:
        value = dataset[index][column]
        ids = list(value) if pretokenised else tokenizer(value, add_special_tokens=False)["input_ids"]
        if len(ids) >= config.context:
            chosen.append(_token_ids(ids[: config.context], config, column) if pretokenised else ids[: config.context])
            if len(chosen) == config.examples:
                break
    if len(chosen) < config.examples:
        raise ConfigError(
            f"only {len(chosen)} of the {len(dataset)} examples of {config.dataset} have at least "
            f"{config.context} tokens, and {parameter('icl.examples')} asks for {config.examples}; use a shorter "
            f"{parameter('icl.context')}, fewer {parameter('icl.examples')}, or longer texts"
        )
    return IclExamples(config, torch.tensor(chosen, dtype=torch.int64), source, column)


def looks_like_path(name: str) -> bool:
    """Whether ``name`` can only mean a local file or folder, never a Hub dataset id.

    A Hub id is ``name`` or ``owner/name``, without a data-file suffix; a name with a suffix of
    ``DATA_SUFFIXES``, with a leading ``.``, ``~`` or separator, or with more than one separator
    (``a/b/c``) is a path. ``data/texts`` stays ambiguous: it is read as a Hub id, unless such a
    folder exists.
    """
    parts = name.replace(os.sep, "/").split("/")
    suffixed = Path(name).suffix.lower() in DATA_SUFFIXES
    return suffixed or name.startswith((".", "~", os.sep)) or len(parts) > 2 or "" in parts


def _load_dataset(config: IclConfig):
    path = Path(config.dataset).expanduser()
    if looks_like_path(config.dataset) and not path.exists():  # else datasets would ask the Hub for it, with retries
        raise ConfigError(f"no such file: {config.dataset}")
    if not path.exists():  # a Hub dataset: a Hub that cannot be reached is said at once, not after retries
        from inductscan.hub import require_reachable

        require_reachable(f"ICL dataset {config.dataset}")
    import datasets

    datasets.disable_progress_bars()
    quiet = logging.getLogger("datasets")  # its readers log a bad file's error too: said once, below
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        if path.is_file():
            kind = DATA_SUFFIXES.get(path.suffix)
            if kind is None:
                raise ConfigError(f"cannot tell the format of {path}: name it {', '.join(DATA_SUFFIXES)}")
            if kind != "parquet":  # text: datasets would fail on a bad byte without saying where
                require_utf8(path)
            loaded = datasets.load_dataset(kind, data_files={config.split: str(path)}, split=config.split)
        else:
            loaded = datasets.load_dataset(str(path) if path.exists() else config.dataset, split=config.split)
    except ConfigError:
        raise
    except Exception as error:  # datasets raises many kinds: missing dataset, split, offline, bad file
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(
            f"cannot load the ICL dataset {config.dataset!r} (split {config.split!r}): {message}"
        ) from error
    finally:
        quiet.setLevel(level)
    if isinstance(loaded, datasets.IterableDataset):
        raise ConfigError(f"{config.dataset} loaded as a stream; inductscan needs a map-style dataset")
    return loaded


def require_utf8(path: Path, chunk_size: int = 1 << 20) -> None:
    """Raise :class:`ConfigError` naming the first byte of ``path`` that is not valid UTF-8 (its
    offset from 0, and its line), read in chunks so that a large file is never held whole."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, lines = 0, 1  # bytes handed to the decoder so far; the line they end on
    with open(path, "rb") as stream:
        while True:
            chunk = stream.read(chunk_size)
            pending = len(decoder.getstate()[0])  # bytes of a character cut by the last chunk's end
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as error:
                start = offset - pending + error.start  # error.object is the pending bytes, then chunk
                bad = error.object[error.start]
                line = lines + error.object[: error.start].count(b"\n")  # the pending bytes hold none
                raise ConfigError(
                    f"{path} is not valid UTF-8: byte {start:,} (line {line}) is 0x{bad:02x} ({error.reason}); "
                    "save the file as UTF-8"
                ) from error
            if not chunk:
                return
            offset += len(chunk)
            lines += chunk.count(b"\n")


def _tokenizer(config: IclConfig, column: str, first, source: tuple[str, str | None] | None):
    if not isinstance(first, str):
        raise ConfigError(
            f"column {column!r} of {config.dataset} holds {type(first).__name__}, not text or a list of token ids"
        )
    if source is None:
        raise ConfigError("no checkpoint to take a tokenizer from")
    from transformers import AutoTokenizer

    where, revision = source
    label = f"{where}@{revision}" if revision else where
    missing = ConfigError(
        f"{label} has no tokenizer files to tokenise {config.dataset!r} with; "
        "give a dataset with a pre-tokenised input_ids column instead"
    )
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, revision=revision)
    except Exception as error:  # transformers raises OSError, ValueError, TypeError... for a missing tokenizer
        raise missing from error
    # Without files, transformers 5 builds an empty tokenizer for the model type instead of failing.
    if len(tokenizer.get_vocab()) <= len(set(tokenizer.all_special_tokens)):
        raise missing
    return tokenizer, label


def _token_ids(ids: list, config: IclConfig, column: str) -> list[int]:
    """``ids`` if every one is a token id (a whole number from 0), else one line naming the first that is not:
    a float or a negative id would otherwise be cast and scored as some other token."""
    for value in ids:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(
                f"{config.dataset}'s column {column!r} holds {value!r} where a token id belongs: "
                "token ids are whole numbers from 0 (a list of them per row)"
            )
    return ids


def check_fits(examples: IclExamples, n_ctx: int, vocab_size: int) -> None:
    if examples.config.context > n_ctx:
        raise ConfigError(
            f"{parameter('icl.context')} {examples.config.context} is longer than the model's context ({n_ctx})"
        )
    if int(examples.ids.max()) >= vocab_size:
        raise ConfigError(f"the ICL tokens reach id {int(examples.ids.max())}, beyond the vocabulary ({vocab_size})")


def score(token_losses: torch.Tensor, config: IclConfig) -> tuple[float, torch.Tensor]:
    """``icl_score`` and the per-position mean loss, from each example's per-token losses.

    token_losses (examples, context - 1): entry ``p - 1`` is the loss of predicting the token at
    index ``p``, i.e. token number ``p + 1``. Returns the score and the mean loss of tokens
    2..context, (context - 1,) float64.
    """
    curve = token_losses.double().mean(dim=0)
    early, late = config.positions()
    return (curve[late - 2] - curve[early - 2]).item(), curve
