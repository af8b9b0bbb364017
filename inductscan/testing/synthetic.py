"""A results folder of made-up scores with a known phase change, written by the scan's own writer.

:func:`write_synthetic_scan` writes each checkpoint through :func:`inductscan.results.write.write_scores`
(and a failure through :func:`inductscan.results.records.write_failure`), so a reader sees exactly the files a
scan makes; the scores themselves are chosen here, so a test knows every value it reads back. Used
by the report's tests and by ``scripts/bench_report.py`` and ``scripts/report_screenshot.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from inductscan.icl import IclConfig, IclExamples
from inductscan.metrics import HEAD_EFFECTS, HEAD_METRICS
from inductscan.probe import ProbeConfig, TokenSpec, make_probe
from inductscan.results.records import write_failure
from inductscan.results.write import IclResult, write_scores
from inductscan.vocabulary import Outcome

SUITE = "synthetic"
ICL_CONTEXT = 64


def logistic(steps: np.ndarray, midpoint: float, width: float = 0.35) -> np.ndarray:
    """0 .. 1 in log steps, half way at ``midpoint``; step 0 gives 0."""
    with np.errstate(divide="ignore"):
        position = np.log(np.maximum(np.asarray(steps, dtype=float), 1e-12))
    return 1.0 / (1.0 + np.exp(-(position - np.log(midpoint)) / width))


def head_scores(rise: float, layers: int, heads: int, generator: np.random.Generator) -> dict[str, np.ndarray]:
    """Every head score of one checkpoint, (layers, heads) each: low noise everywhere, and the
    induction head (last layer, head 1) and its prefix-matching partner rising with ``rise``."""
    noise = {name: 0.02 + 0.03 * generator.random((layers, heads)) for name in HEAD_METRICS}
    noise["induction"][layers - 1, 1] = 0.02 + 0.7 * rise
    noise["prefix_matching"][layers - 1, 1] = 0.03 + 0.6 * rise
    noise["previous_token"][0, min(2, heads - 1)] = 0.9
    noise["copying"] = generator.uniform(-0.2, 0.2, (layers, heads))
    noise["copying"][layers - 1, 1] = 0.1 + 0.5 * rise
    noise["induction_logit"] = generator.normal(0, 0.1, (layers, heads)) + 3 * rise * (noise["induction"] > 0.3)
    for name in HEAD_EFFECTS:  # empty, as a scan without --head-effects leaves them
        noise[name] = np.full((layers, heads), np.nan)
    return noise


def write_synthetic_scan(
    out: Path,
    *,
    steps: Sequence[int],
    midpoints: dict[int, float],
    layers: int = 2,
    heads: int = 4,
    tokens_per_step: int = 2048,
    icl: bool = True,
    failed_step: int | None = None,
    suite: str = SUITE,
    repo: str = SUITE,
) -> dict[int, dict[str, np.ndarray]]:
    """Write one run per seed in ``midpoints`` (its phase change's midpoint step; None: no change).

    Returns each seed's scores, name -> (steps, layers, heads), as written, under ``suite``. With ``icl``, each
    checkpoint gets an ICL loss curve and score; ``failed_step`` is recorded as a failure of the
    first seed. Each run is ``suite``'s, from the folder (or Hub repo) ``{repo}/seed{seed}``.
    """
    steps = np.asarray(sorted(steps))
    probe = make_probe(ProbeConfig(length=8, batch=2), TokenSpec(0, 96))
    examples = IclExamples(IclConfig("synthetic.parquet", context=ICL_CONTEXT), torch.zeros(2, 64), None, "input_ids")
    early, late = examples.config.positions()
    positions = np.arange(2, ICL_CONTEXT + 1)
    written = {}
    for seed, midpoint in midpoints.items():
        generator = np.random.default_rng(seed)
        rise = logistic(steps, midpoint) if midpoint is not None else np.zeros(len(steps))
        per_step = [head_scores(rise[index], layers, heads, generator) for index in range(len(steps))]
        written[seed] = {name: np.stack([scores[name] for scores in per_step]) for name in HEAD_METRICS}
        for index, step in enumerate(steps):
            identity = {
                "suite": suite,
                "repo": f"{repo}/seed{seed}",
                "run": f"seed{seed}",
                "revision": f"step{step}",
                "seed": seed,
                "step": int(step),
                "tokens": int(step) * tokens_per_step,
            }
            gain = 4.4 * rise[index] + 0.02
            checkpoint = {"loss_first": 5.0, "loss_repeat": 5.0 - gain, "in_context_gain": gain}
            result = None
            if icl:
                curve = 4.0 - 0.1 * np.log(positions) - 0.4 * rise[index] * np.log(positions) / np.log(ICL_CONTEXT)
                score = float(curve[late - 2] - curve[early - 2])
                result = IclResult(examples, score, torch.tensor(curve))
            heads_now = {name: torch.tensor(values) for name, values in per_step[index].items()}
            write_scores(
                out,
                identity,
                heads_now,
                checkpoint,
                weights_sha256=f"{seed:032d}{step:032d}",
                probe=probe,
                dtype="float32",
                icl=result,
            )
    if failed_step is not None:
        seed = next(iter(midpoints))
        identity = {"suite": suite, "repo": f"{repo}/seed{seed}", "run": f"seed{seed}", "revision": "bad"}
        identity |= {"seed": seed, "step": failed_step, "tokens": failed_step * tokens_per_step}
        write_failure(out, identity, kind=Outcome.FAILED, reason="weights are not finite (a synthetic failure)")
    return written
