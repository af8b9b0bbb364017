"""A scan killed with SIGKILL midway and re-run loses nothing and duplicates nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pandas as pd

import inductscan

from .conftest import REPO_ROOT, invoke_cli, make_local_suite

SCAN_ARGS = ["--probe-length", "8", "--probe-batch", "300", "--quiet"]


def finished_files(out):
    return sorted((out / "scores").glob("*/*/step-*.parquet"))


def test_sigkill_midway_then_rerun(tmp_path):
    steps = tuple(range(0, 100, 10))
    folder = make_local_suite(tmp_path / "suite", seeds=(0, 1), steps=steps)
    out = tmp_path / "results"
    process = subprocess.Popen(
        [sys.executable, "-m", "inductscan.cli", "scan", str(folder), "--out", str(out), *SCAN_ARGS],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while len(finished_files(out)) < 3 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    before = inductscan.load_results(out, columns=["scored_at"])
    done = len(before.reset_index()[["run", "step"]].drop_duplicates())
    assert 3 <= done < 20, "the scan should have been killed midway"

    result = invoke_cli("scan", str(folder), "--out", str(out), *SCAN_ARGS)  # the re-run: no fresh process needed
    assert result.returncode == 0, result.stderr
    assert f"{done} already done" in result.stdout

    frame = inductscan.load_results(out).reset_index()
    keys = ["run", "step", "layer", "head"]
    assert not frame.duplicated(keys).any()
    assert len(frame) == 2 * len(steps) * 3 * 4
    assert set(frame.step) == set(steps)
    again = inductscan.load_results(out, columns=["scored_at"]).loc[before.index]
    pd.testing.assert_frame_equal(again, before)  # nothing finished before the kill was scored again
    leftovers = [path for path in out.rglob("*") if path.is_file() and ".tmp-" in path.name]
    assert leftovers == []  # the re-run removed the killed writer's temporary file, if it left one
