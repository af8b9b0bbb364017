"""The public Python API: what the command line calls, one function a command.

    import inductscan
    summary = inductscan.scan("toy", out="results/", config=inductscan.ScanConfig(probe_length=20))
    frame = inductscan.load_results("results/", seed=0)
    best = inductscan.query("results/", best=True)
    timing = inductscan.find_phase_changes(frame)
    report = inductscan.status("results/")

This module holds :func:`scan`; each other command's function lives with its subject, and
``inductscan`` exposes them all (inductscan/__init__.py):

    inductscan scan      scan                       inductscan status    status
    inductscan query     query (and --sql: sql)     inductscan compact   compact
    inductscan phases    phase_changes              inductscan plot      plot (kinds: plot_kinds)
    inductscan pattern   save_head_pattern          inductscan report    write_report
    inductscan compare   compare_seeds              inductscan toy-suite toy.build_toy_suite
    inductscan suites    suite_info.catalog_lines

Every argument is a Python value (a list of seeds, a ``(low, high)`` step range); parsing text is
the command line's job (:mod:`inductscan.cli`), and so is naming a parameter by its flag: an
error names the parameter a Python caller passed (``threads must be >= 1``).
"""

from __future__ import annotations

import os
from pathlib import Path

from inductscan.distributed import RayExecutor
from inductscan.errors import ConfigError
from inductscan.plan import PlanArguments, RayOptions, ScanConfig, plan_scan
from inductscan.runner import LocalExecutor, ScanSummary, run_scan


def scan(
    source: str,
    out: str | os.PathLike = "results",
    *,
    arguments: PlanArguments | None = None,
    suite: str | None = None,
    config: ScanConfig | None = None,
    ray: RayOptions | None = None,
    progress: bool = True,
    **chosen,
) -> ScanSummary:
    """Score every attention head of the planned checkpoints of ``source`` into ``out``.

    source: a catalogued suite (``inductscan suites``), ``toy``, or a folder of Hugging Face
    checkpoints; ``suite`` names a folder's suite (default ``local``), so that local models of
    different sizes share a results folder and compare as catalogued suites do. ``arguments``, or
    its fields by name (``seeds=[0, 1]``, ``steps``, ``step_range``, ``every``,
    ``tokens_per_step``, ``shard``: :class:`~inductscan.plan.PlanArguments`), choose the
    checkpoints; ``config`` the settings (probe, dtype, device, downloads); ``ray`` runs it on a Ray
    cluster. A re-run resumes. Returns the summary: scored, already done, failed or skipped (with
    reasons).
    """
    if config is not None and not isinstance(config, ScanConfig):
        raise ConfigError(f"config must be an inductscan.ScanConfig, got {type(config).__name__}")
    refs = plan_scan(source, PlanArguments.of(arguments, **chosen), results=out, suite=suite)
    executor = LocalExecutor() if ray is None else RayExecutor(ray)
    return run_scan(refs, Path(out), config or ScanConfig(), progress=progress, executor=executor)
