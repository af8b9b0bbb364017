"""Splitting a scan across independent processes (--shard I/N, a SLURM array) and `inductscan status`."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

import inductscan
from inductscan.cli import main
from inductscan.errors import ConfigError
from inductscan.plan import PlanArguments, Shard, plan
from inductscan.suites import local_suite
from tests.conftest import REPO_ROOT, invoke_cli, make_local_suite

STEPS = (0, 10, 20, 30, 40)


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    return make_local_suite(tmp_path_factory.mktemp("shard") / "suite", seeds=(0, 1), steps=STEPS)


@pytest.mark.parametrize("given", ["4/4", "-1/4", "1", "a/b", "1/0", (3, 2), (0, 1, 2), "0/4/8", 3])
def test_a_bad_shard_is_refused(given):
    with pytest.raises(ConfigError, match=r"^shard must be I/N"):
        Shard.of(given)
    with pytest.raises(ConfigError, match=r"^shard must be I/N"):
        PlanArguments(shard=given).shard_of([])


def test_a_shard_is_a_string_a_pair_or_a_shard():
    assert Shard.of("1/4") == Shard.of((1, 4)) == Shard.of(Shard(1, 4)) == Shard(1, 4)


def test_shards_cover_the_plan_exactly_once_and_interleave(suite):
    refs = plan(local_suite(suite))
    parts = [Shard.of(f"{index}/3").select(refs) for index in range(3)]
    chosen = [(ref.run.name, ref.step) for part in parts for ref in part]
    assert sorted(chosen) == sorted((ref.run.name, ref.step) for ref in refs) and len(set(chosen)) == len(refs)
    assert [len(part) for part in parts] == [4, 3, 3]
    assert {ref.run.name.split("-")[0] for ref in parts[0]} == {"seed0", "seed1"}  # every part gets steps of every run


def table(folder) -> pd.DataFrame:
    frame = inductscan.load_results(folder).drop(columns=["scored_at"])
    return frame.reset_index().sort_values(["suite", "run", "step", "layer", "head"]).reset_index(drop=True)


def scan(suite, out, *options):
    return invoke_cli("scan", str(suite), "--out", str(out), "--quiet", "--probe-length", "8", *options)


def test_four_shards_make_the_table_of_one_scan_and_status_follows(suite, tmp_path):
    whole = scan(suite, tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    shared = tmp_path / "shared"
    for index in range(2):
        done = scan(suite, shared, "--shard", f"{index}/4")
        assert done.returncode == 0, done.stderr

    status = invoke_cli("status", str(shared), "--suite", str(suite))
    assert status.returncode == 1, status.stderr
    lines = status.stdout.splitlines()
    assert lines[-1] == "10 planned, 6 done, 0 failed, 0 skipped, 4 missing"  # shards 0 and 1 hold 3 each
    expected_done = {
        (ref.run.name, ref.step) for index in range(2) for ref in Shard(index, 4).select(plan(local_suite(suite)))
    }
    assert set(zip(table(shared)["run"], table(shared)["step"])) == expected_done

    for index in range(2, 4):
        done = scan(suite, shared, "--shard", f"{index}/4")
        assert done.returncode == 0, done.stderr
    pd.testing.assert_frame_equal(table(shared), table(tmp_path / "whole"))
    status = invoke_cli("status", str(shared), "--suite", str(suite))
    assert (
        status.returncode == 0
        and status.stdout.splitlines()[-1] == "10 planned, 10 done, 0 failed, 0 skipped, 0 missing"
    )


def test_status_names_failed_and_missing_steps(suite, tmp_path):
    broken = tmp_path / "suite"
    make_local_suite(broken, seeds=(0,), steps=(0, 10, 20))
    (broken / "seed0" / "checkpoint-10" / "model.safetensors").write_bytes(b"not weights")
    done = scan(broken, tmp_path / "out", "--steps", "0,10")
    assert done.returncode == 1  # the broken checkpoint is recorded as failed
    status = invoke_cli("status", str(tmp_path / "out"), "--suite", str(broken), "--list")
    assert status.returncode == 1
    assert "(seed 0): 3 planned, 1 done, 1 failed, 0 skipped, 1 missing" in status.stdout
    assert "  failed steps: 10" in status.stdout and "  missing steps: 20" in status.stdout


def test_two_scans_started_at_once_into_one_folder_score_each_checkpoint_once(suite, tmp_path):
    """The same plan twice at the same moment (two job scripts, say): a checkpoint is claimed before
    it is scored, so the two together score the three checkpoints exactly once."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "inductscan.cli", "scan", str(suite), "--out", str(out), "--quiet",
               "--probe-length", "8", "--probe-batch", "40", "--seeds", "1", "--steps", "0,10,20"]  # fmt: skip
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, "cwd": REPO_ROOT}
    started = [subprocess.Popen(command, **pipes) for _ in range(2)]
    finished = [process.communicate(timeout=300) for process in started]
    assert [process.returncode for process in started] == [0, 0], finished
    counts = [re.search(r"(\d+) scored, (\d+) already done", stdout) for stdout, _ in finished]
    assert sum(int(found.group(1)) for found in counts) == 3, finished  # without claims: 6, twice the work
    assert len(inductscan.load_results(out)) == 3 * 3 * 4


def test_a_claimed_checkpoint_is_left_to_its_holder_and_a_dead_holders_claim_to_the_next_scan(suite, tmp_path):
    from inductscan.results.layout import claim
    from inductscan.suites import local_run_name

    out = tmp_path / "out"
    run = local_run_name(suite / "seed0")
    scan = ["scan", str(suite), "--out", str(out), "--quiet", "--probe-length", "8", "--seeds", "0"]
    with claim(out, "local", run, 20) as claimed:  # another scan, scoring step 20 right now
        assert claimed
        held = CliRunner().invoke(main, scan)
    assert held.exit_code == 0, held.output
    assert "4 scored, 0 already done, 0 failed or skipped, 1 being scored by another scan" in held.output
    assert 20 not in set(inductscan.load_results(out).index.get_level_values("step"))
    # a scan killed while it held step 20's claim: its claim file stays, its lock went with it
    killed = subprocess.run([sys.executable, "-c", HOLD_AND_DIE, str(out), run], cwd=REPO_ROOT, timeout=120)
    assert killed.returncode == -signal.SIGKILL
    assert (out / "claims" / "local" / run / "step-000000020.lock").exists()
    resumed = CliRunner().invoke(main, scan)
    assert resumed.exit_code == 0 and "1 scored, 4 already done" in resumed.output, resumed.output
    assert not (out / "claims" / "local" / run / "step-000000020.lock").exists()


HOLD_AND_DIE = """
import os, signal, sys
from inductscan.results.layout import claim
held = claim(sys.argv[1], "local", sys.argv[2], 20)  # kept: a dropped one would be released at once
held.__enter__()
os.kill(os.getpid(), signal.SIGKILL)
"""
