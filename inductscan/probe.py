"""The probe: repeated random tokens, and where its copies sit.

Each of ``batch`` sequences is ``[BOS] + r * repeats`` with ``r`` of ``length`` tokens drawn
uniformly from the allowed ids (Olsson et al. 2022, "In-context Learning and Induction Heads":
25 random tokens repeated 4 times, 10 sequences), from an explicit ``torch.Generator(seed)``.
See docs/scores.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

from inductscan.errors import ConfigError, ProbeTooLongError, parameter


@dataclass(frozen=True)
class ProbeConfig:
    """What the user chooses about the probe; validated on construction."""

    length: int = 25
    repeats: int = 4
    batch: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        for name, minimum in (("length", 2), ("repeats", 2), ("batch", 1), ("seed", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ConfigError(f"{parameter('probe_' + name)} must be an integer >= {minimum}, got {value!r}")

    def replace(self, **changes: int | None) -> ProbeConfig:
        """A copy with the given fields changed; ``None`` values keep the current field."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


@dataclass(frozen=True)
class TokenSpec:
    """Which ids the probe may draw, and its BOS (part of the suite entry, and recorded).

    Every id in ``[low, high)``, or, when ``listed`` is given (``--probe-tokens-file``), only those
    ids (sorted, distinct; ``low`` and ``high`` then bound them); ``excluded`` ids are left out.
    """

    low: int
    high: int
    excluded: tuple[int, ...] = ()
    bos: int | None = None
    listed: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.low < self.high:
            raise ConfigError(f"token range [{self.low}, {self.high}) is empty or negative")

    @classmethod
    def all_but_special(cls, vocab_size: int, special: set[int], bos: int | None) -> TokenSpec:
        """Every id of the vocabulary except the special ones (local folders, the toy suite)."""
        return cls.in_range(0, vocab_size, special, bos)

    @classmethod
    def in_range(cls, low: int, high: int, special: set[int], bos: int | None) -> TokenSpec:
        """Every id in ``[low, high)`` except the special ones (``--probe-tokens LOW:HIGH``)."""
        return cls(low, high, tuple(sorted(t for t in special if low <= t < high)), bos)

    @classmethod
    def from_list(cls, ids: tuple[int, ...], special: set[int], bos: int | None) -> TokenSpec:
        """Only the listed ids, except the special ones (``--probe-tokens-file``)."""
        listed = tuple(sorted(set(ids)))
        if not listed:
            raise ConfigError("the probe's list of token ids is empty")
        return cls(listed[0], listed[-1] + 1, tuple(sorted(set(listed) & special)), bos, listed)

    def count(self) -> int:
        """How many distinct ids the probe may draw."""
        return len(set(range(self.low, self.high) if self.listed is None else self.listed) - set(self.excluded))

    def allowed(self) -> torch.Tensor:
        """The ids the probe draws from, as a 1-d int64 tensor."""
        import torch

        ids = torch.arange(self.low, self.high) if self.listed is None else torch.tensor(self.listed)
        if self.excluded:
            ids = ids[~torch.isin(ids, torch.tensor(self.excluded))]
        if ids.numel() == 0:
            raise ConfigError(f"no token id left to draw in [{self.low}, {self.high})")
        return ids

    def record(self) -> dict:
        """How the ids were chosen, as recorded: a list of ids by its sha256 (see :func:`listed_sha256`),
        a key that probes drawn from a range never had, so that folders scanned before lists read alike."""
        record = {"token_low": self.low, "token_high": self.high, "excluded": list(self.excluded), "bos": self.bos}
        if self.listed is not None:
            record["token_list_sha256"] = listed_sha256(self.listed)
        return record


def listed_sha256(ids: tuple[int, ...]) -> str:
    """The sha256 of a list of token ids written sorted, distinct, one a line: what
    ``sort -n -u ids.txt | sha256sum`` prints for a file of one id a line. Order, repeats and
    spacing in the file do not change the probe, nor this."""
    return hashlib.sha256("".join(f"{token}\n" for token in sorted(set(ids))).encode()).hexdigest()


def read_token_ids(path: str | os.PathLike) -> tuple[int, ...]:
    """The token ids in a text file, one a line or separated by any whitespace (``--probe-tokens-file``)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ConfigError(f"{parameter('probe_token_ids')} {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{parameter('probe_token_ids')} {path} cannot be read: {error}") from error
    ids = []
    for number, line in enumerate(text.splitlines(), start=1):
        for word in line.split():
            try:
                ids.append(int(word))
            except ValueError:
                raise ConfigError(
                    f"{parameter('probe_token_ids')} {path}, line {number}: {word!r} is not a token id (an integer)"
                ) from None
    if not ids:
        raise ConfigError(f"{parameter('probe_token_ids')} {path} lists no token id")
    return tuple(ids)


@dataclass(frozen=True)
class Layout:
    """Where the probe's tokens and copies sit; everything the scores need to know about it."""

    length: int
    repeats: int
    has_bos: bool

    @property
    def offset(self) -> int:
        """The first probe position: 1 with BOS, 0 without."""
        return 1 if self.has_bos else 0

    @property
    def n_positions(self) -> int:
        return self.offset + self.length * self.repeats

    def induction_positions(self) -> range:
        """Query positions in repeats 2..R, which have an earlier copy of their token."""
        return range(self.offset + self.length, self.n_positions)


@dataclass(frozen=True)
class Probe:
    """The probe's tokens with everything needed to reproduce and record them."""

    config: ProbeConfig
    tokens: TokenSpec
    ids: torch.Tensor  # (batch, position) int64

    @property
    def layout(self) -> Layout:
        return Layout(self.config.length, self.config.repeats, self.tokens.bos is not None)

    def record(self) -> dict:
        """The probe's parameters, as stored with every result."""
        return {
            **dataclasses.asdict(self.config),
            **self.tokens.record(),
            "ids_sha256": hashlib.sha256(self.ids.numpy().tobytes()).hexdigest(),
        }

    def record_json(self) -> str:
        return json.dumps(self.record(), sort_keys=True)

    def check_fits(self, n_ctx: int) -> None:
        """Raise if the probe is longer than the model's context (both lengths named)."""
        if self.layout.n_positions > n_ctx:
            raise ProbeTooLongError(
                f"the probe has {self.layout.n_positions} positions "
                f"({'1 BOS + ' if self.tokens.bos is not None else ''}"
                f"{self.config.length} x {self.config.repeats}) but the model's context is {n_ctx}; "
                f"use a smaller {parameter('probe_length')} or {parameter('probe_repeats')}"
            )


def make_probe(config: ProbeConfig, tokens: TokenSpec) -> Probe:
    """Draw the probe from ``torch.Generator`` seeded with ``config.seed`` (never the global RNG)."""
    import torch

    generator = torch.Generator().manual_seed(config.seed)
    allowed = tokens.allowed()
    draws = torch.randint(len(allowed), (config.batch, config.length), generator=generator)
    segment = allowed[draws]  # (batch, length)
    ids = segment.repeat(1, config.repeats)  # (batch, length * repeats)
    if tokens.bos is not None:
        ids = torch.cat([torch.full((config.batch, 1), tokens.bos, dtype=torch.int64), ids], dim=1)
    return Probe(config, tokens, ids)
