"""A scan on a real local Ray cluster: the same table as a local scan, and every
checkpoint scored exactly once even when a worker process is killed mid-scan."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import ray

import inductscan
from inductscan.distributed import RayExecutor, RayOptions
from inductscan.plan import ScanConfig, plan
from inductscan.results.folder import ResultsFolder
from inductscan.runner import run_scan
from inductscan.suites import local_suite
from tests.conftest import make_local_suite, one_ray_cluster_at_a_time

STEPS = (0, 10, 20, 30, 40, 50)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with one_ray_cluster_at_a_time(tmp_path_factory):
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        yield
        ray.shutdown()


def table(folder: Path) -> pd.DataFrame:
    frame = inductscan.load_results(folder).drop(columns=["scored_at"]).reset_index()
    return frame.sort_values(["suite", "run", "step", "layer", "head"]).reset_index(drop=True)


def test_a_ray_scan_gives_the_local_table_and_resumes(cluster, tmp_path):
    suite = local_suite(make_local_suite(tmp_path / "suite", seeds=(0, 1), steps=STEPS[:3]))
    config = ScanConfig(probe_length=8)
    local = run_scan(plan(suite), tmp_path / "local", config, progress=False)
    on_ray = run_scan(plan(suite), tmp_path / "ray", config, progress=False, executor=RayExecutor(RayOptions()))
    assert on_ray.scored == local.scored == 6 and not on_ray.failed
    pd.testing.assert_frame_equal(table(tmp_path / "ray"), table(tmp_path / "local"))
    again = run_scan(plan(suite), tmp_path / "ray", config, progress=False, executor=RayExecutor(RayOptions()))
    assert again.scored == 0 and again.already_done == 6


def ray_workers_running(task: str) -> list[int]:
    """Ray names a worker process after the task it runs (its proctitle, ``ray::NAME``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().startswith(f"ray::{task}".encode()):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def test_a_killed_worker_still_leaves_every_checkpoint_scored_once(cluster, tmp_path):
    suite = local_suite(make_local_suite(tmp_path / "suite", seeds=(0, 1), steps=STEPS))
    config = ScanConfig(probe_length=8, probe_batch=400)  # each task takes a while: time to kill one
    local = run_scan(plan(suite), tmp_path / "local", config, progress=False)
    outcome = {}
    scan = threading.Thread(
        target=lambda: outcome.setdefault(
            "summary",
            run_scan(plan(suite), tmp_path / "ray", config, progress=False, executor=RayExecutor(RayOptions())),
        )
    )
    scan.start()
    killed = None
    deadline = time.monotonic() + 60
    while killed is None and time.monotonic() < deadline and scan.is_alive():
        running = ray_workers_running("checkpoint_task")
        if running:
            os.kill(running[0], signal.SIGKILL)
            killed = running[0]
        time.sleep(0.05)
    scan.join(timeout=300)
    assert killed is not None, "no task was running to kill"
    summary = outcome["summary"]
    assert summary.scored == local.scored == 12 and not summary.failed
    pd.testing.assert_frame_equal(table(tmp_path / "ray"), table(tmp_path / "local"))
    assert sum(len(steps) for steps in ResultsFolder(tmp_path / "ray").done_steps().values()) == 12
