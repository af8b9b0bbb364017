"""Plan a scan (which runs and steps) and run it: fetch, score and store each checkpoint.

A checkpoint that cannot be scored is recorded with its reason and the scan goes on; one already
in the results folder is skipped, so a killed scan resumes where it stopped.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from inductscan import store
from inductscan.architecture import Architecture, convert, read_architecture
from inductscan.checkpoints import CheckpointRef, fetch, fetch_config
from inductscan.errors import (
    CheckpointError,
    CheckpointUnavailableError,
    ConfigError,
    CorruptCheckpointError,
    UnknownRunError,
    UnsupportedArchitectureError,
)
from inductscan.measure import score_weights
from inductscan.model import read_state_dict
from inductscan.probe import Probe, ProbeConfig, TokenSpec, make_probe
from inductscan.suites import Suite

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class ScanConfig:
    """How to score: probe overrides (None keeps the suite's), compute dtype and device."""

    probe_length: int | None = None
    probe_repeats: int | None = None
    probe_batch: int | None = None
    probe_seed: int | None = None
    dtype: str = "float32"
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        try:
            device = torch.device(self.device)
        except RuntimeError as error:
            raise ConfigError(f"unknown device {self.device!r}: {error}") from error
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {self.device!r} asked for, but this torch sees no CUDA GPU; use --device cpu")
        self.probe_for(ProbeConfig())  # validates the overrides

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
    """The checkpoints to scan, run by run in step order."""
    if every is not None and every < 1:
        raise ConfigError(f"--every must be >= 1, got {every}")
    runs = [suite.run(seed) for seed in seeds] if seeds else list(suite.runs)
    planned = []
    for run in runs:
        available = suite.steps_of(run)
        chosen = list(available)
        if steps is not None:
            for step in steps:
                if step not in available:
                    raise UnknownRunError(f"{run.name} has no step {step}; {_nearby(available, step)}")
            chosen = sorted(set(steps))
        if step_range is not None:
            low, high = step_range
            chosen = [step for step in chosen if low <= step <= high]
        if every is not None:
            chosen = chosen[::every]
        planned.extend(CheckpointRef(suite, run, step) for step in chosen)
    return planned


def _nearby(available: tuple[int, ...], step: int) -> str:
    index = bisect.bisect_left(available, step)
    near = available[max(0, index - 2) : index + 2]
    return f"nearest steps: {', '.join(map(str, near))}" if near else "the run has no steps"


def suite_probe(suite: Suite, arch: Architecture, config: ScanConfig) -> Probe:
    """The suite's probe: its catalogued token range and BOS, else every non-special id."""
    if suite.token_range is not None:
        low, high = suite.token_range
        if high > arch.vocab_size:
            raise ConfigError(f"the probe's token range [{low}, {high}) exceeds the vocabulary ({arch.vocab_size})")
        tokens = TokenSpec(low, high, bos=suite.bos_token_id)
    else:
        tokens = TokenSpec.all_but_special(arch.vocab_size, set(arch.special_tokens), arch.bos_token_id)
    probe = make_probe(config.probe_for(suite.probe), tokens)
    probe.check_fits(arch.n_ctx)
    return probe


@dataclass
class ScanSummary:
    planned: int = 0
    scored: int = 0
    already_done: int = 0
    failed: list[tuple[CheckpointRef, str]] = field(default_factory=list)
    seconds: float = 0.0

    def line(self, out: Path) -> str:
        text = (
            f"{self.planned} checkpoints in {self.seconds:.1f} s: {self.scored} scored, "
            f"{self.already_done} already done, {len(self.failed)} failed or skipped; results in {out}"
        )
        if self.failed:
            text += f" (reasons in {Path(out) / 'failures'})"
        return text


def identity(ref: CheckpointRef, revision: str) -> dict:
    return {
        "suite": ref.suite.name, "repo": ref.run.repo, "run": ref.run.name, "revision": revision,
        "seed": ref.run.seed, "step": ref.step, "tokens": ref.tokens,
    }  # fmt: skip


def prepare_probes(refs: list[CheckpointRef], config: ScanConfig) -> dict[str, Probe]:
    """Each suite's probe, from the first of its checkpoints whose config can be read.

    Made before the scan starts so that a probe that cannot fit fails at once, in one line.
    """
    probes: dict[str, Probe] = {}
    for ref in refs:
        if ref.suite.name in probes:
            continue
        try:
            arch = read_architecture(fetch_config(ref))
        except (CheckpointError, UnsupportedArchitectureError):
            continue  # this checkpoint's own scan will record why; try the suite's next one
        probes[ref.suite.name] = suite_probe(ref.suite, arch, config)
    return probes


def score_checkpoint(ref: CheckpointRef, out: Path, config: ScanConfig, probes: dict[str, Probe]) -> None:
    """Fetch, score and store one checkpoint."""
    files = fetch(ref)
    arch = read_architecture(files.config)
    if ref.suite.name not in probes:
        probes[ref.suite.name] = suite_probe(ref.suite, arch, config)
    probe = probes[ref.suite.name]
    if int(probe.ids.max()) >= arch.vocab_size:
        raise UnsupportedArchitectureError(f"vocabulary of {arch.vocab_size} is smaller than the suite's probe needs")
    weights = convert(arch, read_state_dict(list(files.weights)), DTYPES[config.dtype], config.device)
    try:
        scored = score_weights(weights, probe)
    except RuntimeError as error:  # e.g. a weight whose shape disagrees with the config
        raise CorruptCheckpointError(f"the forward pass failed: {error}") from error
    store.write_scores(out, identity(ref, ref.revision), scored.heads, scored.checkpoint,
                       weights_sha256=files.sha256, probe=probe)  # fmt: skip


def run_scan(refs: list[CheckpointRef], out: Path, config: ScanConfig, *, progress: bool = True) -> ScanSummary:
    """Score every planned checkpoint not yet in ``out``; record the ones that fail and go on."""
    out = Path(out)
    store.check_writable(out)
    store.remove_stale_temporaries(out)
    summary = ScanSummary(planned=len(refs))
    started = time.perf_counter()
    done = [store.is_done(out, ref.suite.name, ref.run.name, ref.step) for ref in refs]
    probes = prepare_probes([ref for ref, finished in zip(refs, done) if not finished], config)
    for suite, probe in probes.items():
        used = store.probes_used(out, suite)
        if used and store.probe_id(probe) not in used:
            raise ConfigError(
                f"{out} already holds {suite} scores made with another probe ({', '.join(sorted(used))}); "
                "scan with the same --probe-* settings or into another --out"
            )
    bar = tqdm(zip(refs, done), total=len(refs), unit="ckpt", disable=not progress, dynamic_ncols=True)
    for ref, finished in bar:
        if finished:
            summary.already_done += 1
            continue
        bar.set_postfix_str(ref.describe(), refresh=False)  # redrawn at tqdm's own pace, not per checkpoint
        try:
            score_checkpoint(ref, out, config, probes)
            summary.scored += 1
        except (CheckpointError, UnsupportedArchitectureError) as error:
            kind = "skipped" if isinstance(error, CheckpointUnavailableError) else "failed"
            store.write_failure(out, identity(ref, _revision_or_step(ref)), kind=kind, reason=str(error))
            summary.failed.append((ref, str(error)))
            bar.write(f"{kind}: {ref.describe()}: {error}")
    bar.close()
    summary.seconds = time.perf_counter() - started
    return summary


def _revision_or_step(ref: CheckpointRef) -> str:
    try:
        return ref.revision
    except UnknownRunError:
        return str(ref.step)
