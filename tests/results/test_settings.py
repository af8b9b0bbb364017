"""The settings a folder's rows were scored with (inductscan/results/settings.py): a scan with other
settings is refused naming what differs, whether the rows are written or only claimed, and the
first claim of a suite wins however close together two scans start."""

from __future__ import annotations

import json
import subprocess
import sys

import inductscan
from inductscan.results.settings import Settings, claim_settings, named_differences
from tests.conftest import REPO_ROOT, make_local_suite, one_line, scan, trainer_run


def test_changed_settings_on_finished_steps_are_refused_naming_the_setting(runner, tmp_path):
    run = trainer_run(tmp_path / "output", 1)
    out = tmp_path / "results"
    assert scan(runner, run, out).exit_code == 0
    before = inductscan.load_results(out)
    assert set(before.dtype) == {"float32"} and set(before.scoring_version) == {1}

    # every step is done: before, these printed "already done" and kept the old scores
    one_line(
        scan(runner, run, out, "--probe-length", "9"), 2, "other settings", "probe length 8 there, 9 here", "--probe-*"
    )
    one_line(scan(runner, run, out, "--probe-seed", "3"), 2, "probe seed 0 there, 3 here")
    one_line(scan(runner, run, out, "--dtype", "bfloat16"), 2, "dtype float32 there, bfloat16 here", "--dtype")
    after = inductscan.load_results(out)
    assert after.drop(columns="scored_at").equals(before.drop(columns="scored_at"))
    assert "0 scored, 2 already done" in scan(runner, run, out).output  # the same settings resume


def test_two_scans_started_at_once_with_other_settings_never_mix_them(tmp_path):
    """Shards of a job array start together, before either has written a row: the first to claim
    the folder's settings for the suite wins, the other is refused, and every row has one probe."""
    folder = make_local_suite(tmp_path / "suite", seeds=(0,), steps=(0, 10, 20, 30))
    out = tmp_path / "out"
    commands = [
        [sys.executable, "-m", "inductscan.cli", "scan", str(folder), "--out", str(out), "--quiet",
         "--shard", f"{index}/2", "--probe-length", str(length)]
        for index, length in enumerate((8, 9))
    ]  # fmt: skip
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    started = [subprocess.Popen(command, cwd=REPO_ROOT, **pipes) for command in commands]
    finished = [process.communicate(timeout=300) for process in started]
    codes = sorted(process.returncode for process in started)
    assert codes == [0, 2], finished
    refused = next(err for process, (_, err) in zip(started, finished) if process.returncode == 2)
    assert "claimed it first" in refused or "already holds" in refused
    probes = {json.loads(record)["length"] for record in inductscan.load_results(out)["probe"].unique()}
    assert len(probes) == 1


def test_a_second_claim_of_a_suite_gets_the_first_ones_settings(tmp_path):
    first = Settings('{"length": 8}', None, "float32")
    second = Settings('{"length": 9}', None, "float32")
    assert claim_settings(tmp_path, "local", first) is None
    assert claim_settings(tmp_path, "local", second) == first
    assert claim_settings(tmp_path, "local", first) == first
    assert [path.name for path in (tmp_path / "settings").iterdir()] == ["local.json"]


def test_the_differences_are_named_in_one_phrase():
    differences = Settings('{"length": 9}', None, "bfloat16").differences(Settings('{"length": 8}', None, "float32"))
    assert differences == [("probe length", 9, 8), ("dtype", "bfloat16", "float32")]
    assert (
        named_differences(differences, "there", "here")
        == "probe length 8 there, 9 here; dtype float32 there, bfloat16 here"
    )
    icl = [("ICL dataset", None, "a.txt")]
    assert named_differences(icl, "in A", "in B") == "ICL dataset a.txt in A, none in B"
    assert named_differences(icl, "in A", "in B", shown=str) == "ICL dataset a.txt in A, None in B"
