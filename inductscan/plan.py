"""What a scan covers and how it scores: the checkpoints (runs and steps, a shard of them) and the
settings (:class:`ScanConfig`), validated before anything is fetched.
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass, replace
from pathlib import Path

from inductscan import listing
from inductscan.architecture import Architecture
from inductscan.checkpoints import CheckpointRef
from inductscan.errors import ConfigError, UnknownRunError, parameter
from inductscan.hub import Retry
from inductscan.icl import IclConfig
from inductscan.probe import Probe, ProbeConfig, TokenSpec, make_probe
from inductscan.results.selection import integers
from inductscan.suites import Suite, get_suite

DTYPES = ("float32", "float64", "bfloat16", "float16")  # names of torch dtypes: torch is imported only to scan


@dataclass(frozen=True)
class ScanConfig:
    """How to score: probe overrides (None keeps the suite's), compute dtype and device; and how
    to fetch: checkpoints downloaded ahead, the disk budget in bytes, retries of transient faults."""

    probe_length: int | None = None
    probe_repeats: int | None = None
    probe_batch: int | None = None
    probe_seed: int | None = None
    probe_tokens: tuple[int, int] | None = None  # draw ids low <= id < high only (special ids still left out)
    probe_token_ids: tuple[int, ...] | None = None  # draw these ids only (inductscan.probe.read_token_ids reads a file)
    dtype: str = "float32"
    device: str = "cpu"
    prefetch: int = 2
    max_disk: int | None = None
    keep_weights: bool = False
    verify_cached: bool = False  # hash weight files already in the cache too (else trusted by their blob's sha256 name)
    retries: int = 3
    retry_backoff: float = 2.0
    threads: int | None = None  # torch's intra-op threads; None leaves torch's default (one per core)
    layer_by_layer: bool = False  # stream each layer's weights from disk: peak memory ~ one layer + embeddings
    icl: IclConfig | None = None  # the in-context learning score on real text (inductscan.icl)
    token_losses: bool = False  # also store every ICL token's loss (inductscan.results.token_losses); needs icl
    # each head's effect on in_context_gain (and icl_score) when ablated (inductscan.effects)
    head_effects: bool = False
    head_effects_top: int = 8  # heads whose effect is computed exactly, by the largest estimated effect
    # modules to import before the scan, which register users' scores (inductscan/custom_scores.py), besides
    # the entry points of the group inductscan.scores, which every scan loads
    score_modules: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"{parameter('threads')} must be >= 1, got {self.threads}")
        if self.prefetch < 0:
            raise ConfigError(f"{parameter('prefetch')} must be >= 0, got {self.prefetch}")
        if self.max_disk is not None and not isinstance(self.max_disk, int):
            raise ConfigError(f"max_disk is a number of bytes, got {self.max_disk!r}")
        if self.icl is not None and not isinstance(self.icl, IclConfig):
            raise ConfigError(f"icl must be an inductscan.icl.IclConfig, got {type(self.icl).__name__}")
        if self.token_losses and self.icl is None:
            raise ConfigError(
                f"{parameter('token_losses')} stores the losses of the ICL examples: it needs {parameter('icl')}"
            )
        if self.head_effects_top < 1:  # every head's estimate comes with any number of exact ones
            raise ConfigError(f"{parameter('head_effects_top')} must be >= 1, got {self.head_effects_top}")
        if self.head_effects and self.layer_by_layer:
            raise ConfigError(
                f"{parameter('head_effects')} needs the whole model in memory (its ablated passes start inside it): "
                f"scan without {parameter('layer_by_layer')}"
            )
        if self.max_disk is not None and self.max_disk <= 0:
            raise ConfigError(f"{parameter('max_disk')} must be > 0 bytes, got {self.max_disk}")
        if self.max_disk is not None and self.keep_weights:
            raise ConfigError(
                f"{parameter('max_disk')} cannot bound the disk when {parameter('keep_weights')} keeps every "
                "checkpoint; choose one"
            )
        if self.retries < 0 or self.retry_backoff < 0:
            raise ConfigError(
                f"{parameter('retries')} and {parameter('retry_backoff')} must be >= 0, "
                f"got {self.retries}, {self.retry_backoff}"
            )
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        kind, _, index = str(self.device).partition(":")
        if kind not in ("cpu", "cuda", "mps") or (index and not index.isdigit()):
            raise ConfigError(f"device {self.device!r}: inductscan scores on cpu, cuda or mps (cuda:N for one GPU)")
        if kind == "cuda":
            import torch  # only then: reading a table, or the defaults of a scan, needs no torch

            if not torch.cuda.is_available():
                raise ConfigError(
                    f"device {self.device!r} asked for, but this torch sees no CUDA GPU; use {parameter('device')} cpu"
                )
        self.probe_for(ProbeConfig())  # validates the overrides
        self._check_probe_tokens()

    @property
    def retry(self) -> Retry:
        return Retry(attempts=self.retries + 1, backoff=self.retry_backoff)

    def _check_probe_tokens(self) -> None:
        """The ids the probe draws: a range, or a list, or neither (the suite's); checked against a
        vocabulary only once a checkpoint's config is read (:func:`suite_probe`)."""
        if self.probe_tokens is not None and self.probe_token_ids is not None:
            raise ConfigError(
                f"{parameter('probe_tokens')} and {parameter('probe_token_ids')} both choose the probe's "
                "token ids; give one"
            )
        if self.probe_tokens is not None:
            bounds = tuple(self.probe_tokens) if isinstance(self.probe_tokens, (tuple, list)) else ()
            if len(bounds) != 2 or not all(_is_id(bound) for bound in bounds) or bounds[0] >= bounds[1]:
                raise ConfigError(
                    f"{parameter('probe_tokens')} must be LOW:HIGH with 0 <= LOW < HIGH, got {self.probe_tokens!r}"
                )
        if self.probe_token_ids is not None:
            if not isinstance(self.probe_token_ids, (tuple, list)) or not self.probe_token_ids:
                raise ConfigError(f"probe_token_ids must be a non-empty list of ids, got {self.probe_token_ids!r}")
            bad = [token for token in self.probe_token_ids if not _is_id(token)]
            if bad:
                raise ConfigError(f"{parameter('probe_token_ids')}: token ids are integers >= 0, got {bad[0]!r}")

    def token_spec(self, arch: Architecture, bos: int | None) -> TokenSpec | None:
        """The ids chosen with ``probe_tokens`` or ``probe_token_ids`` in ``arch``'s vocabulary, the
        special ids left out, and ``bos``; None when neither is chosen (the suite's ids)."""
        special, vocab = set(arch.special_tokens), arch.vocab_size
        if self.probe_tokens is not None:
            low, high = self.probe_tokens
            if high > vocab:
                raise ConfigError(
                    f"{parameter('probe_tokens')} {low}:{high} exceeds the vocabulary: its ids are 0 <= id < {vocab}"
                )
            return TokenSpec.in_range(low, high, special, bos)
        if self.probe_token_ids is not None:
            outside = sorted({token for token in self.probe_token_ids if token >= vocab})
            if outside:
                shown = ", ".join(map(str, outside[:5])) + (f" and {len(outside) - 5} more" if len(outside) > 5 else "")
                raise ConfigError(
                    f"{parameter('probe_token_ids')} lists ids outside the vocabulary (0 <= id < {vocab}): {shown}"
                )
            return TokenSpec.from_list(tuple(self.probe_token_ids), special, bos)
        return None

    def probe_for(self, default: ProbeConfig) -> ProbeConfig:
        return default.replace(
            length=self.probe_length, repeats=self.probe_repeats, batch=self.probe_batch, seed=self.probe_seed
        )


def plan(
    suite: Suite,
    *,
    seeds: list[int] | None = None,
    steps: list[int] | None = None,
    step_range: tuple[int, int] | None = None,
    every: int | None = None,
) -> list[CheckpointRef]:
    """The checkpoints to scan, run by run in step order.

    ``every`` keeps every Nth of the chosen steps, and always the first and the last, which the
    early and late plateaus of the phase-change timing need. A step the suite does not have is an
    error, except in a run whose branches were listed: there the listing says the Hub lacks it,
    and it is planned, to be recorded as known missing with the branches nearby.
    """
    if every is not None and every < 1:
        raise ConfigError(f"{parameter('every')} must be >= 1, got {every}")
    seeds, steps = _chosen(seeds, "seeds"), _chosen(steps, "steps")
    runs = [suite.run(seed) for seed in seeds] if seeds is not None else list(suite.runs)
    planned = []
    for run in runs:
        available = suite.steps_of(run)
        chosen = list(available)
        if steps is not None:
            for step in steps:
                if step not in available and not run.listed:
                    raise UnknownRunError(f"{run.name} has no step {step}; {_nearby(available, step)}")
            chosen = sorted(set(steps))
        if step_range is not None:
            low, high = step_range
            chosen = [step for step in chosen if low <= step <= high]
        if every is not None and chosen:
            chosen = chosen[::every] + ([chosen[-1]] if (len(chosen) - 1) % every else [])  # the last plateau needs it
        planned.extend(CheckpointRef(suite, run, step) for step in chosen)
    return planned


def _is_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _chosen(values: int | list[int] | None, what: str) -> list[int] | None:
    """None (every one), or a non-empty list; one number stands for a list of it."""
    chosen = integers(values, what)
    if chosen is not None and not chosen:
        raise ConfigError(f"no {what} chosen: give at least one, or None for all")
    return chosen


@dataclass(frozen=True)
class Shard:
    """The ``index``-th of ``count`` interleaved parts of a plan: checkpoints index, index + count, ...

    Interleaved rather than cut into blocks, so that every part gets early and late steps of every
    run alike (late Pythia steps are no slower, but a block cut would give one task all of a run).
    The same plan split the same way on every machine: N processes cover it exactly once.
    """

    index: int
    count: int

    def __post_init__(self) -> None:
        if not (isinstance(self.index, int) and isinstance(self.count, int) and 0 <= self.index < self.count):
            raise ConfigError(f"{parameter('shard')} must be I/N with 0 <= I < N (e.g. 0/4 ... 3/4), got {self}")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @classmethod
    def of(cls, shard: Shard | str | tuple[int, int]) -> Shard:
        """``shard`` as a :class:`Shard`: one already, ``"I/N"`` or ``(I, N)``."""
        if isinstance(shard, Shard):
            return shard
        if isinstance(shard, str):
            index, sep, count = shard.partition("/")
            if sep and index.strip().isdigit() and count.strip().isdigit():
                return cls(int(index), int(count))
        elif isinstance(shard, tuple) and len(shard) == 2:
            return cls(*shard)
        raise ConfigError(f"{parameter('shard')} must be I/N with 0 <= I < N (e.g. 0/4 ... 3/4), got {shard!r}")

    def select(self, refs: list[CheckpointRef]) -> list[CheckpointRef]:
        return refs[self.index :: self.count]


def _nearby(available: tuple[int, ...], step: int) -> str:
    index = bisect.bisect_left(available, step)
    near = available[max(0, index - 2) : index + 2]
    return f"nearest steps: {', '.join(map(str, near))}" if near else "the run has no steps"


def suite_probe(suite: Suite, arch: Architecture, config: ScanConfig) -> Probe:
    """The suite's probe: the ids the scan chose (``probe_tokens``, ``probe_token_ids``), else the
    suite's catalogued token range and BOS, else every non-special id."""
    probe_config = config.probe_for(suite.probe)
    bos = suite.bos_token_id if suite.token_range is not None else arch.bos_token_id
    tokens = config.token_spec(arch, bos)
    if tokens is not None:
        left = tokens.count()
        if left < probe_config.length:
            chosen = parameter("probe_tokens" if tokens.listed is None else "probe_token_ids")
            raise ConfigError(
                f"{chosen} leaves {left} distinct token id(s) (special ids left out) but the probe draws "
                f"{probe_config.length} a repeat: give at least {probe_config.length}, or a smaller "
                f"{parameter('probe_length')}"
            )
    elif suite.token_range is not None:
        low, high = suite.token_range
        if high > arch.vocab_size:
            raise ConfigError(f"the probe's token range [{low}, {high}) exceeds the vocabulary ({arch.vocab_size})")
        tokens = TokenSpec(low, high, bos=suite.bos_token_id)
    else:
        tokens = TokenSpec.all_but_special(arch.vocab_size, set(arch.special_tokens), arch.bos_token_id)
    probe = make_probe(probe_config, tokens)
    probe.check_fits(arch.n_ctx)
    return probe


@dataclass(frozen=True)
class RayOptions:
    """Where and how to run a scan on Ray: the cluster (None: start a local one; "auto": the one
    this machine belongs to; or HOST:PORT) and each task's resources."""

    address: str | None = None
    cpus_per_task: float = 1.0
    gpus_per_task: float = 0.0
    max_retries: int = 3  # of a task whose worker or node died

    def __post_init__(self) -> None:
        if self.cpus_per_task <= 0 or self.gpus_per_task < 0 or self.max_retries < 0:
            raise ConfigError(
                f"{parameter('cpus_per_task')} must be > 0, {parameter('gpus_per_task')} and max_retries >= 0, got "
                f"{self.cpus_per_task}, {self.gpus_per_task}, {self.max_retries}"
            )


def plan_scan(
    source: str,
    arguments: PlanArguments | None = None,
    *,
    results: str | os.PathLike | None = None,
    suite: str | None = None,
    **chosen,
) -> list[CheckpointRef]:
    """The checkpoints of a suite (a catalogued name, ``toy``, or a folder) that a scan covers.

    ``arguments`` (or its fields given by name, ``seeds=[1, 2]``: :class:`PlanArguments`) choose
    the runs and steps; ``suite`` names a folder's suite (default ``local``). A suite whose branches
    are listed (:mod:`inductscan.listing`) reads them from the listing ``results`` keeps, else from
    the Hub (then kept there). Raises :class:`ConfigError` when nothing is left.
    """
    arguments = PlanArguments.of(arguments, **chosen)
    if arguments.tokens_per_step is not None and arguments.tokens_per_step < 0:
        raise ConfigError(f"{parameter('tokens_per_step')} must be >= 0, got {arguments.tokens_per_step}")
    chosen_suite = get_suite(source, tokens_per_step=arguments.tokens_per_step, name=suite)
    seeds = _chosen(arguments.seeds, "seeds")
    chosen_suite = listing.resolve(chosen_suite, None if results is None else Path(results), seeds=seeds)
    refs = plan(chosen_suite, **arguments.steps_of_runs())
    if not refs:
        held = chosen_suite.steps
        shown = f"{held[0]:,} to {held[-1]:,}" if len(held) > 1 else ", ".join(map(str, held)) or "none"
        raise ConfigError(
            f"no checkpoint matches the chosen seeds and steps ({chosen_suite.name} holds {len(held)} step(s), "
            f"{shown}: `inductscan suites {source}` lists them)"
        )
    return arguments.shard_of(refs)


@dataclass(frozen=True)
class PlanArguments:
    """Which checkpoints of a suite a scan (or a status) covers, as Python values; None keeps every
    one. ``seeds`` and ``steps``: lists (one number stands for a list of it); ``step_range``: the
    steps ``(low, high)``, both included; ``every``: every Nth of the chosen steps, and always the
    last; ``tokens_per_step``: a local folder's (default 0, or its manifest's); ``shard``: a
    :class:`Shard`, ``"I/N"`` or ``(I, N)``, the I-th of N interleaved parts of the plan. Checked where the plan
    is made (:func:`plan_scan`), in the order a scan meets them."""

    seeds: int | list[int] | None = None
    steps: int | list[int] | None = None
    step_range: tuple[int, int] | None = None
    every: int | None = None
    tokens_per_step: int | None = None
    shard: Shard | str | tuple[int, int] | None = None

    def __post_init__(self) -> None:
        _chosen(self.seeds, "seeds"), _chosen(self.steps, "steps")  # a list of numbers, or one: else one line

    @classmethod
    def of(cls, arguments: PlanArguments | None = None, **chosen) -> PlanArguments:
        """``arguments`` (default: every checkpoint) with the fields ``chosen`` names replaced."""
        return replace(arguments or cls(), **chosen)

    def steps_of_runs(self) -> dict:
        """The arguments :func:`plan` takes: the runs and the steps of each."""
        return {"seeds": self.seeds, "steps": self.steps, "step_range": self.step_range, "every": self.every}

    def shard_of(self, refs: list[CheckpointRef]) -> list[CheckpointRef]:
        """The part of ``refs`` that ``shard`` keeps (all of them without one)."""
        return Shard.of(self.shard).select(refs) if self.shard is not None else refs


SCAN_DEFAULTS = ScanConfig()
