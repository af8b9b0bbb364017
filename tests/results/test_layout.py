"""Crash safety of the results folder, each failure made to happen at a chosen point, not by luck.

A write that fails half way leaves no file; a temporary file left by a dead writer is removed by
the next scan, one of a live writer is kept; a scan killed between fsync and rename loses and
duplicates nothing (inductscan/results/layout.py ``atomic``, inductscan/results/folder.py ``remove_stale_temporaries``).
"""

from __future__ import annotations

import errno
import json
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

import inductscan
from inductscan.plan import ScanConfig, plan
from inductscan.results.folder import ResultsFolder
from inductscan.runner import run_scan
from inductscan.suites import local_run_name, local_suite
from tests.conftest import REPO_ROOT, make_local_suite

PROBE = ["--probe-length", "8", "--probe-batch", "20"]

WRITE = """
import json, resource, signal, sys
from pathlib import Path
import torch
from inductscan.results.probes import save_probe
from inductscan.results.records import write_failure
from inductscan.results.write import write_scores
from inductscan.probe import ProbeConfig, TokenSpec, make_probe

out, what, limit = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
identity = dict(suite="local", repo="/runs/output", run="output-0123abcd", revision="checkpoint-10", seed=0, step=10,
                tokens=0)
generator = torch.Generator().manual_seed(0)
heads = {name: torch.rand(3, 4, generator=generator, dtype=torch.float64) for name in
         ("induction", "prefix_matching", "duplicate_token", "previous_token", "copying", "induction_logit")}
checkpoint = {"loss_first": 4.5, "loss_repeat": 1.5, "in_context_gain": 3.0}
probe = make_probe(ProbeConfig(length=8, batch=2), TokenSpec(0, 96))
save_probe(out, probe)
if limit:  # writing past `limit` bytes fails with EFBIG, as on a full disk (ignored, SIGXFSZ would kill)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    if what == "scores":
        path = write_scores(out, identity, heads, checkpoint, weights_sha256="0" * 64, probe=probe,
                                  dtype="float32")
    else:
        path = write_failure(out, identity, kind="failed", reason="a reason " * 40)
except OSError as error:
    print(json.dumps({"errno": error.errno}))
else:
    print(json.dumps({"path": str(path), "size": path.stat().st_size}))
"""


def write_in_child(out: Path, what: str, *, limit: int = 0) -> dict:
    """write_scores (3 x 4 heads) or write_failure in a fresh process whose files may
    grow to ``limit`` bytes (0: any); the file written and its size, or the errno of the failure."""
    result = subprocess.run(
        [sys.executable, "-c", WRITE, str(out), what, str(limit)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def files_under(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


def read(path: Path, what: str):
    """The file's content, less the time it was written."""
    if what == "scores":
        return pq.read_table(path).drop(["scored_at"])
    return {key: value for key, value in json.loads(Path(path).read_text()).items() if key != "at"}


# Scores through pyarrow (whose write_table also deletes its output on failure), a failure record
# through a plain text write (only inductscan.results.layout.atomic cleans up after it).
@pytest.mark.parametrize("what", ["scores", "failure"])
def test_a_write_that_fails_half_way_leaves_no_file(tmp_path, what):
    whole = write_in_child(tmp_path / "whole", what)
    table = "scores/" if what == "scores" else "failures/"
    before = files_under(tmp_path / "whole")  # the probe and the file written
    written = str(Path(whole["path"]).relative_to(tmp_path / "whole"))
    assert [name for name in before if name.startswith(table)] == [written]

    failed = write_in_child(tmp_path / "out", what, limit=whole["size"] // 2)

    assert failed == {"errno": errno.EFBIG}  # the temporary file reached half its size, then the write failed
    assert files_under(tmp_path / "out") == [name for name in before if not name.startswith(table)]
    again = write_in_child(tmp_path / "out", what)  # with room again, the same write succeeds
    assert read(again["path"], what) == read(whole["path"], what)


def dead_pid() -> int:
    """The id of a process that has exited and been reaped (Linux hands out ids in increasing order)."""
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    pid = int(child.stdout)
    assert not Path(f"/proc/{pid}").exists()
    return pid


def temporary(folder: Path, name: str, host: str, pid: int, content: bytes) -> Path:
    """A temporary file as inductscan.results.layout.atomic names it: .NAME.tmp-HOST-PID-XXXXXXXX."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".{name}.tmp-{host}-{pid}-0badf00d"
    path.write_bytes(content)
    return path


def test_the_next_scan_removes_temporaries_of_dead_writers_and_keeps_live_ones(tmp_path):
    suite = make_local_suite(tmp_path / "suite", seeds=(0,), steps=(0, 10, 20, 30))
    out = tmp_path / "results"
    config = ScanConfig(probe_length=8, probe_batch=20)
    refs = plan(local_suite(suite))
    run_scan(refs[:1], out, config, progress=False)
    run = local_run_name(suite / "seed0")
    scores, failures = out / "scores" / "local" / run, out / "failures" / "local" / run
    half = Path(ResultsFolder(out).visible_files()[0]).read_bytes()[:1000]  # a writer killed half way left this
    host, dead = socket.gethostname(), dead_pid()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        stale = [
            temporary(scores, "step-000000010.parquet", host, dead, half),
            temporary(failures, "step-000000020.json", host, dead, b'{"kind": '),
        ]
        # a live writer's, and one of another host, whose process ids mean nothing here
        kept = [
            temporary(scores, "step-000000020.parquet", host, live.pid, half),
            temporary(scores, "step-000000030.parquet", "another-host", dead, half),
        ]
        summary = run_scan(refs, out, config, progress=False)
        assert (summary.scored, summary.already_done, summary.failed) == (3, 1, [])
        assert [path.exists() for path in stale] == [False, False]
        assert [path.exists() for path in kept] == [True, True]
    finally:
        live.kill()
        live.wait()
    frame = inductscan.load_results(out).reset_index()
    assert frame.groupby("step").size().to_dict() == {0: 12, 10: 12, 20: 12, 30: 12}  # temporaries are never read


KILL_AT_RENAME = """
import os, runpy, signal, sys

kill_at, log = int(sys.argv[1]), sys.argv[2]
real_replace, renamed = os.replace, []

def replace(source, destination, *args, **kwargs):
    destination = os.fspath(destination)
    if os.sep + "scores" + os.sep in destination and os.path.basename(destination).startswith("step-"):
        if len(renamed) + 1 == kill_at:  # its temporary file is written and fsynced; the rename never happens
            os.kill(os.getpid(), signal.SIGKILL)
        renamed.append(destination)
        real_replace(source, destination, *args, **kwargs)
        with open(log, "a") as file:
            file.write(os.path.basename(destination) + "\\n")
        return None
    return real_replace(source, destination, *args, **kwargs)

os.replace = replace
sys.argv = ["inductscan", *sys.argv[3:]]
runpy.run_module("inductscan.cli", run_name="__main__", alter_sys=True)
"""


def scan_killed_at_rename(kill_at: int, log: Path, *args: str) -> subprocess.CompletedProcess:
    """The real CLI scan, SIGKILLed as it is about to rename its ``kill_at``-th scores file into
    place (0: never); each scores file renamed is noted in ``log``."""
    return subprocess.run(
        [sys.executable, "-c", KILL_AT_RENAME, str(kill_at), str(log), "scan", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
        check=False,
    )


def test_a_scan_killed_between_fsync_and_rename_loses_and_duplicates_nothing(tmp_path):
    steps = (0, 10, 20, 30, 40)
    suite = make_local_suite(tmp_path / "suite", seeds=(0,), steps=steps)
    out = tmp_path / "results"
    scores = out / "scores" / "local" / local_run_name(suite / "seed0")
    names = [f"step-{step:09d}.parquet" for step in steps]

    killed = scan_killed_at_rename(3, tmp_path / "killed.log", str(suite), "--out", str(out), "--quiet", *PROBE)

    assert killed.returncode == -9, killed.stderr
    assert (tmp_path / "killed.log").read_text().split() == names[:2]
    assert sorted(path.name for path in scores.glob("step-*")) == names[:2]
    left = list(scores.glob(".*"))  # the third checkpoint's complete temporary file, never renamed
    assert [path.name.split(".tmp-")[0] for path in left] == ["." + names[2]]
    assert set(pq.read_table(left[0]).column("step").to_pylist()) == {20}
    assert sorted(set(inductscan.load_results(out).reset_index().step)) == [0, 10]  # it is not read as a result
    finished = inductscan.load_results(out, columns=["scored_at"])

    rerun = scan_killed_at_rename(0, tmp_path / "rerun.log", str(suite), "--out", str(out), "--quiet", *PROBE)

    assert rerun.returncode == 0, rerun.stderr
    assert "3 scored, 2 already done" in rerun.stdout
    assert (tmp_path / "rerun.log").read_text().split() == names[2:]  # exactly the checkpoints without a file
    again = inductscan.load_results(out, columns=["scored_at"], step=[0, 10])  # compacted since, not rescored
    pd.testing.assert_frame_equal(again, finished)
    frame = inductscan.load_results(out).reset_index()
    assert frame.groupby("step").size().to_dict() == {step: 3 * 4 for step in steps}  # each checkpoint once
    assert not frame.duplicated(["run", "step", "layer", "head"]).any()
    assert [path.name for path in out.rglob("*") if ".tmp-" in path.name] == []
