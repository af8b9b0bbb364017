"""How a run is named where several are shown (a plot's legend and title, a comparison's columns):
``seed 21``, ``stanford-gpt2-small seed 21`` or ``seed1-57111506 seed 1``, spelled here alone."""

from __future__ import annotations

from collections.abc import Iterable


def run_label(suite: str, run: str, seed: int, *, with_suite: bool = False, with_run: bool = False) -> str:
    """``seed SEED``, after the suite's name and the run's where they tell it from the others shown."""
    named = [suite] if with_suite else []
    return " ".join([*named, *([run] if with_run else []), f"seed {seed}"])


def run_labels(identities: Iterable[tuple]) -> dict[tuple, str]:
    """A short label for each run (suite, run, seed) that tells it from the others shown: its seed
    where seeds differ, else with its suite, else with its run's name (two local runs of one seed)."""
    identities = list(dict.fromkeys(tuple(identity) for identity in identities))
    seeds = [seed for _, _, seed in identities]
    suite_seeds = [(suite, seed) for suite, _, seed in identities]
    several_suites = len({suite for suite, _, _ in identities}) > 1
    labels = {}
    for suite, run, seed in identities:
        if len(set(suite_seeds)) < len(suite_seeds):
            labels[(suite, run, seed)] = run_label(suite, run, seed, with_suite=several_suites, with_run=True)
        else:
            with_suite = len(set(seeds)) < len(seeds) or several_suites
            labels[(suite, run, seed)] = run_label(suite, run, seed, with_suite=with_suite)
    return labels
