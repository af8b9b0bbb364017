"""Two seeds' per-token log-probabilities at one step, as ``inductscan compare`` shows them: read
from a folder scanned with ``--token-losses``, the outlier tokens named by their ids.

    comparison = inductscan.compare_seeds("results/", seeds=[21, 49], top=20)
    comparison.scatter.correlation, comparison.outliers
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pandas as pd

from inductscan.compare import SeedScatter, require_seeds, seed_scatter
from inductscan.errors import ConfigError, parameter
from inductscan.results import sql
from inductscan.results.selection import selection
from inductscan.results.token_losses import icl_ids, load_token_losses, missing, seeds_held


def token_losses_of(results: str | os.PathLike, warnings: list[str], **filters) -> pd.DataFrame:
    """The token losses of a results folder; where scored checkpoints have none, a line on
    ``warnings`` says so."""
    losses = load_token_losses(results, **filters)
    lacking = missing(results)
    if len(lacking):
        warnings.append(
            f"warning: {len(lacking)} scored checkpoint(s) of {results} have no token losses (scanned without "
            "--token-losses); a scan with --token-losses adds them"
        )
    return losses


@dataclass(frozen=True)
class SeedComparison:
    """The scatter of the two seeds (None: no token losses match the selection), its ``outliers``
    (the tokens furthest apart, with their ids where the folder keeps them) and ``warnings``."""

    scatter: SeedScatter | None
    outliers: pd.DataFrame | None
    warnings: list[str] = field(default_factory=list)

    def header(self) -> str:
        first, second = self.scatter.labels
        return (
            f"{first} vs {second} at step {self.scatter.step}: Pearson r = {self.scatter.correlation:.4f} over "
            f"{len(self.scatter.points)} tokens; the {len(self.outliers)} furthest apart:"
        )


def require_held_seeds(results: str | os.PathLike, seeds: int | list[int] | None, suite: str | None) -> None:
    """Name the ``seeds`` (None: every one) whose token losses ``results`` does not hold, beside
    those it holds (of ``suite``, if one), rather than read them as none."""
    if seeds is not None:
        require_seeds([seeds] if isinstance(seeds, int) else seeds, seeds_held(results, suite))


def compare_seeds(
    results: str | os.PathLike,
    *,
    seeds: list[int] | tuple[int, int] | None = None,
    suite: str | None = None,
    step: int | None = None,
    top: int = 10,
) -> SeedComparison:
    """Two seeds' (default: the first two) per-token log-probabilities at ``step`` (default: the
    last both have): their correlation and the ``top`` tokens they disagree on most (largest
    |log p(seed A) - log p(seed B)|), named by example, position and token id, from a scan with
    token losses (docs/scores.md)."""
    if seeds is not None and not (
        isinstance(seeds, (list, tuple)) and len(seeds) == 2 and all(isinstance(seed, int) for seed in seeds)
    ):
        raise ConfigError(f"{parameter('seeds')}: expected two seeds, got {seeds!r}")
    if seeds is not None and seeds[0] == seeds[1]:
        raise ConfigError(f"{parameter('seeds')}: expected two different seeds, got {list(seeds)}")
    if step is not None and not isinstance(step, int):
        raise ConfigError(f"{parameter('step')} must be an integer, got {step!r}")
    if not isinstance(top, int) or top < 1:
        raise ConfigError(f"{parameter('top')} must be >= 1, got {top!r}")
    sql.require_held(results, selection(suite=suite))
    require_held_seeds(results, seeds, suite)
    warnings: list[str] = []
    seeds = list(seeds) if seeds is not None else None
    losses = token_losses_of(results, warnings, **selection(suite=suite, seed=seeds))  # a missing step is named below
    if losses.empty:
        return SeedComparison(None, None, warnings)
    scatter = seed_scatter(losses, seeds=tuple(seeds) if seeds else None, step=step)
    outliers = scatter.outliers(top)
    ids = icl_ids(results)
    if ids is not None:
        where = list(zip(outliers["example"], outliers["position"]))
        outliers.insert(2, "token", ids["token"].reindex(where).to_numpy())
    first, second = scatter.labels
    outliers = outliers.rename(columns={"logprob_a": f"logprob {first}", "logprob_b": f"logprob {second}"})
    return SeedComparison(scatter, outliers, warnings)
