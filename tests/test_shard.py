"""Splitting a scan across independent processes (--shard I/N, a SLURM array) and `inductscan status`."""

from __future__ import annotations

import pandas as pd
import pytest

import inductscan
from inductscan.errors import ConfigError
from inductscan.plan import Shard, plan
from inductscan.suites import local_suite
from tests.conftest import make_local_suite, run_cli

STEPS = (0, 10, 20, 30, 40)


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    return make_local_suite(tmp_path_factory.mktemp("shard") / "suite", seeds=(0, 1), steps=STEPS)


@pytest.mark.parametrize("text", ["4/4", "-1/4", "1", "a/b", "1/0"])
def test_a_bad_shard_is_refused(text):
    with pytest.raises(ConfigError, match="--shard must be I/N"):
        Shard.parse(text)


def test_shards_cover_the_plan_exactly_once_and_interleave(suite):
    refs = plan(local_suite(suite))
    parts = [Shard.parse(f"{index}/3").select(refs) for index in range(3)]
    chosen = [(ref.run.name, ref.step) for part in parts for ref in part]
    assert sorted(chosen) == sorted((ref.run.name, ref.step) for ref in refs) and len(set(chosen)) == len(refs)
    assert [len(part) for part in parts] == [4, 3, 3]
    assert {ref.run.name.split("-")[0] for ref in parts[0]} == {"seed0", "seed1"}  # every part gets steps of every run


def table(folder) -> pd.DataFrame:
    frame = inductscan.load_results(folder).drop(columns=["scored_at"])
    return frame.reset_index().sort_values(["suite", "run", "step", "layer", "head"]).reset_index(drop=True)


def scan(suite, out, *options):
    return run_cli("scan", str(suite), "--out", str(out), "--quiet", "--probe-length", "8", *options)


def test_four_shards_make_the_table_of_one_scan_and_status_follows(suite, tmp_path):
    whole = scan(suite, tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    shared = tmp_path / "shared"
    for index in range(2):
        done = scan(suite, shared, "--shard", f"{index}/4")
        assert done.returncode == 0, done.stderr

    status = run_cli("status", str(shared), "--suite", str(suite))
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
    status = run_cli("status", str(shared), "--suite", str(suite))
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
    status = run_cli("status", str(tmp_path / "out"), "--suite", str(broken), "--list")
    assert status.returncode == 1
    assert "(seed 0): 3 planned, 1 done, 1 failed, 0 skipped, 1 missing" in status.stdout
    assert "  failed steps: 10" in status.stdout and "  missing steps: 20" in status.stdout
