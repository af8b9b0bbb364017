"""Compaction of a results folder (inductscan/results/compact.py): each row seen once, whatever happens.

A reader sees the newest committed generation plus the per-checkpoint files it does not hold.
Every intermediate state a crash can leave is built by hand and read; then compaction is killed
with SIGKILL at many moments, and run beside a writer and beside another compaction.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import torch

import inductscan
from inductscan.metrics import HEAD_METRICS
from inductscan.probe import ProbeConfig, TokenSpec, make_probe
from inductscan.results import sql
from inductscan.results.compact import compact
from inductscan.results.damaged import set_aside_damaged
from inductscan.results.folder import ResultsFolder, is_done
from inductscan.results.layout import read_run
from inductscan.results.write import write_scores
from tests.conftest import REPO_ROOT

PROBE = make_probe(ProbeConfig(length=8, batch=2), TokenSpec(0, 96))
RUNS = (("suite-a", "run-1", 1), ("suite-a", "run-2", 2), ("suite-b", "run-1", 1))  # run-1 twice: two suites


def write_checkpoints(out: Path, steps, runs=RUNS, *, layers: int = 2, heads: int = 3) -> None:
    """Real per-checkpoint files through the project's writer, with random scores."""
    generator = torch.Generator().manual_seed(sum(steps))
    for suite, run, seed in runs:
        for step in steps:
            identity = dict(suite=suite, repo=f"org/{run}", run=run, revision=f"step{step}", seed=seed, step=step,
                            tokens=step * 100)  # fmt: skip
            scores = {name: torch.rand(layers, heads, generator=generator, dtype=torch.float64)
                      for name in HEAD_METRICS}  # fmt: skip
            checkpoint = {"loss_first": 5.0, "loss_repeat": 4.0, "in_context_gain": 1.0}
            write_scores(out, identity, scores, checkpoint, weights_sha256=f"{step:064d}", probe=PROBE,
                               dtype="float32")  # fmt: skip


def files(out: Path) -> list[str]:
    return sorted(str(path.relative_to(out)) for path in (out / "scores").rglob("*.parquet"))


def plain(frame: pd.DataFrame) -> pd.DataFrame:
    """Categoricals as strings: frames concatenated from several loads have other categories."""
    kinds = {name: object for name, dtype in frame.dtypes.items() if isinstance(dtype, pd.CategoricalDtype)}
    return frame.astype(kinds | {name: object for name in frame.columns if pd.api.types.is_string_dtype(frame[name])})


def assert_same_rows(out: Path, expected: pd.DataFrame) -> None:
    loaded = inductscan.load_results(out).drop(columns=["scored_at"])
    assert loaded.index.is_unique
    pd.testing.assert_frame_equal(plain(loaded), plain(expected))


@pytest.fixture
def written(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    out = tmp_path / "out"
    write_checkpoints(out, [0, 10, 20, 40])
    return out, inductscan.load_results(out).drop(columns=["scored_at"])


def test_compaction_keeps_every_row_once_and_leaves_one_file_a_run(written):
    out, before = written
    assert len(files(out)) == 12
    assert compact(out) == 12
    assert files(out) == [f"scores/{suite}/{run}/compact-000001.parquet" for suite, run, _ in sorted(RUNS)]
    assert_same_rows(out, before)
    assert compact(out) == 0  # nothing new: nothing rewritten
    assert files(out) == [f"scores/{suite}/{run}/compact-000001.parquet" for suite, run, _ in sorted(RUNS)]


def test_readers_see_the_compacted_rows_and_newer_checkpoints(written):
    out, _ = written
    compact(out)
    write_checkpoints(out, [80])  # a scan goes on after compaction
    loaded = inductscan.load_results(out)
    assert loaded.index.is_unique
    assert sorted(loaded.reset_index()["step"].unique()) == [0, 10, 20, 40, 80]
    assert is_done(out, "suite-a", "run-1", 80)
    assert is_done(out, "suite-a", "run-1", 10) and not is_done(out, "suite-a", "run-1", 30)
    compact(out)  # generation 2 holds all five steps; generation 1 is gone
    run = read_run(out / "scores" / "suite-a" / "run-1")
    assert run.generation == 2 and run.compacted_steps == {0, 10, 20, 40, 80} and run.step_files == {}
    generation = sorted(path.name for path in run.folder.glob("compact-*"))
    assert generation == ["compact-000002.json", "compact-000002.parquet"]
    assert len(inductscan.load_results(out)) == len(loaded)


def test_every_state_a_crash_can_leave_reads_each_row_once(written):
    out, before = written
    folder = out / "scores" / "suite-a" / "run-1"
    compacted = out.parent / "compacted"
    compacted.mkdir()
    compact(out)
    generation = {name: (folder / name).read_bytes() for name in ("compact-000001.json", "compact-000001.parquet")}
    write_checkpoints(out.parent / "again", [0, 10, 20, 40])  # the same per-checkpoint files, to put back
    originals = sorted((out.parent / "again" / "scores" / "suite-a" / "run-1").glob("step-*"))

    def put_back_step_files():
        for path in originals:
            (folder / path.name).write_bytes(path.read_bytes())

    # 1. killed after the steps list was written, before the parquet file's rename (the commit)
    (folder / "compact-000001.parquet").unlink()
    put_back_step_files()
    assert_same_rows(out, before)
    # 2. killed after the commit, before the folded files were deleted
    (folder / "compact-000001.parquet").write_bytes(generation["compact-000001.parquet"])
    assert_same_rows(out, before)
    # 3. a later generation committed, the earlier one and some folded files not yet deleted
    for name, data in generation.items():
        (folder / name.replace("000001", "000002")).write_bytes(data)
    (folder / originals[0].name).unlink()
    assert_same_rows(out, before)
    # 4. a stray steps list of an uncommitted generation above the newest
    (folder / "compact-000007.json").write_text(json.dumps({"steps": [0], "rows": 6}))
    assert_same_rows(out, before)
    # the next compaction (with nothing new to fold) cleans up every leftover and keeps the rows
    assert compact(out) == 0
    assert sorted(path.name for path in folder.iterdir() if not path.name.startswith(".")) == [
        "compact-000002.json",
        "compact-000002.parquet",
    ]
    assert_same_rows(out, before)


COMPACT = "import sys; from inductscan.results.compact import compact; compact(sys.argv[1])"
# A compaction that kills itself (SIGKILL, no clean-up) just before its N-th file operation in the
# folder: each open, rename, delete and lock, counted by an audit hook (PEP 578), so that every
# moment is reached by construction rather than by a timer that a loaded machine makes late.
KILL_AT_OPERATION = """
import os, signal, sys
from inductscan.results.compact import compact

out, kill_at = sys.argv[1], int(sys.argv[2])
seen = 0

def hook(event, args):
    global seen
    if event == "fcntl.flock" or (event in ("open", "os.rename", "os.remove") and str(args[0]).startswith(out)):
        seen += 1
        if seen == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

sys.addaudithook(hook)
compact(out)
"""


def test_compaction_killed_at_any_moment_loses_and_duplicates_nothing(tmp_path: Path):
    out = tmp_path / "out"
    write_checkpoints(out, range(0, 60, 10), runs=RUNS[:1])
    compact(out)  # a generation to replace, folded files to delete
    before = inductscan.load_results(out).drop(columns=["scored_at"])
    kills = []
    for kill_at in range(1, 60):
        write_checkpoints(out, [1000 + kill_at], runs=RUNS[:1])  # something new to fold each time
        before = pd.concat([before, inductscan.load_results(out, step=1000 + kill_at).drop(columns=["scored_at"])])
        child = subprocess.run([sys.executable, "-c", KILL_AT_OPERATION, str(out), str(kill_at)], cwd=REPO_ROOT)
        assert_same_rows(out, before.sort_index())
        if child.returncode == 0:  # fewer operations than kill_at: it ran to the end
            break
        assert child.returncode == -signal.SIGKILL
        kills.append(kill_at)
    assert kills == list(range(1, len(kills) + 1)) and len(kills) >= 12  # killed before each of its operations
    compact(out)
    assert_same_rows(out, before.sort_index())
    assert all(name.endswith("compact-" + name[-14:]) for name in files(out))


def test_a_writer_and_two_compactions_at_once_lose_and_duplicate_nothing(tmp_path: Path):
    out = tmp_path / "out"
    write_checkpoints(out, [0])
    stop = threading.Event()

    def writer():
        for step in range(1, 40):
            write_checkpoints(out, [step], runs=RUNS[:1])
        stop.set()

    others = subprocess.Popen(
        [sys.executable, "-c", f"{COMPACT}\nwhile True: compact(sys.argv[1])", str(out)], cwd=REPO_ROOT
    )
    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while not stop.is_set():
            compact(out)
            loaded = inductscan.load_results(out, suite="suite-a", run="run-1", columns=["induction"])
            assert loaded.index.is_unique
            # a scan starting beside them: its reads see each checkpoint once, and no file is damaged
            assert set_aside_damaged(ResultsFolder(out)) == []
            steps = sql.distinct(out, ["suite", "run", "step"], {"run": "run-1"})
            assert len(steps) == len(set(steps)) and len(steps) >= len(loaded) // 6
    finally:
        thread.join()
        others.kill()
        others.wait()
    compact(out)
    loaded = inductscan.load_results(out, suite="suite-a", run="run-1")
    assert loaded.index.is_unique and sorted(loaded.reset_index()["step"].unique()) == list(range(40))


def test_load_results_reads_only_the_columns_asked_for(written):
    out, before = written
    compact(out)
    frame = inductscan.load_results(out, columns=["tokens", "induction"], seed=2, step=slice(10, 20))
    assert list(frame.columns) == ["tokens", "induction"]
    steps, seeds = before.index.get_level_values("step"), before.index.get_level_values("seed")
    expected = before.loc[(seeds == 2) & steps.isin([10, 20])]
    pd.testing.assert_frame_equal(frame, expected[["tokens", "induction"]])
    assert isinstance(inductscan.load_results(out)["probe"].dtype, pd.CategoricalDtype)  # one string, not a row each
    with pytest.raises(inductscan.errors.ConfigError, match="unknown column"):
        inductscan.load_results(out, columns=["nope"])


def test_query_best_matches_pandas_on_the_same_rows(written):
    out, before = written
    compact(out)
    write_checkpoints(out, [80])  # compacted and loose files together
    table = inductscan.load_results(out).reset_index()
    expected = table.loc[table.groupby(["suite", "run", "seed", "step"])["induction"].idxmax()]
    got = inductscan.query(out, best=True, columns=["suite", "run", "seed", "step", "layer", "head", "induction"])
    pd.testing.assert_frame_equal(got, expected[got.columns].reset_index(drop=True), check_dtype=False)
    top = inductscan.query(out, top=3, seed=1, columns=["induction"])
    assert top["induction"].tolist() == sorted(table[table["seed"] == 1]["induction"], reverse=True)[:3]


def test_sql_sees_each_row_once_and_the_documented_globs_read_the_scores(written):
    out, before = written
    compact(out)
    write_checkpoints(out, [80])

    counts = "SELECT count(*) AS n, count(DISTINCT (suite, run, step, layer, head)) AS keys FROM scores"
    answer = sql.run_sql(out, counts)
    assert answer.columns == ["n", "keys"] and answer.rows == [(len(before) + 18, len(before) + 18)]
    # the README's recipes: one glob for the scores, never the ICL curves' rows or the probes' JSON
    by_duckdb = duckdb.sql(f"SELECT count(*) FROM read_parquet('{out}/scores/*/*/*.parquet', union_by_name=true)")
    assert by_duckdb.fetchall() == [(len(before) + 18,)]
    by_pandas = pd.read_parquet([str(path) for path in sorted(out.glob("scores/*/*/*.parquet"))])
    assert len(by_pandas) == len(before) + 18
    with pytest.raises(inductscan.errors.ConfigError, match="SQL error.*tables: scores"):
        sql.run_sql(out, "SELECT nothing FROM nowhere")


def test_compact_command_and_query_sql_from_the_command_line(written, tmp_path: Path):
    out, before = written
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-m", "inductscan.cli", "compact", str(out)], capture_output=True,
                          text=True, env=env, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0 and "12 per-checkpoint file(s) folded" in done.stdout
    statement = "SELECT seed, count(*) AS rows FROM scores GROUP BY seed ORDER BY seed"
    done = subprocess.run([sys.executable, "-m", "inductscan.cli", "query", str(out), "--sql", statement,
                           "--format", "csv"], capture_output=True, text=True, env=env)  # fmt: skip
    assert done.stdout.splitlines() == ["seed,rows", "1,48", "2,24"]
    done = subprocess.run([sys.executable, "-m", "inductscan.cli", "query", str(out), "--sql", statement, "--best"],
                          capture_output=True, text=True, env=env)  # fmt: skip
    assert done.returncode == 2 and "--sql takes no other selection option (got --best)" in done.stderr


def test_sql_over_a_folder_written_by_0_1_has_every_column():

    old = REPO_ROOT / "tests" / "data" / "results-0.1.0"  # its files predate dtype and scoring_version
    answer = sql.run_sql(old, "SELECT DISTINCT dtype, scoring_version FROM scores")
    assert answer.rows == [(None, None)]
    assert sql.select(old, {}, columns=["step", "dtype"], best=True).fetchall()[0][1] is None


def test_sql_errors_and_empty_column_lists_are_one_line(written):
    out, _ = written

    with pytest.raises(inductscan.errors.ConfigError, match="SQL error: Conversion Error"):
        sql.run_sql(out, "SELECT CAST(run AS INTEGER) FROM scores")  # fails as it runs, not as it is parsed
    with pytest.raises(inductscan.errors.ConfigError, match="no column chosen"):
        sql.select(out, {}, columns=[])


def test_two_folders_whose_suite_was_scored_with_other_settings_are_not_joined(tmp_path):
    from inductscan import timing_compare

    write_checkpoints(tmp_path / "a", [0, 10], runs=RUNS[:1])
    other = make_probe(ProbeConfig(length=9, batch=2), TokenSpec(0, 96))
    write_scores(tmp_path / "b", dict(suite="suite-a", repo="org/run-2", run="run-2", revision="step0", seed=2,
                       step=0, tokens=0), {name: torch.zeros(2, 3, dtype=torch.float64) for name in HEAD_METRICS},
                       {"loss_first": 5.0, "loss_repeat": 4.0, "in_context_gain": 1.0}, weights_sha256="0" * 64,
                       probe=other, dtype="float32")  # fmt: skip
    with pytest.raises(inductscan.errors.ConfigError, match="other settings.*probe length 8 in .*a, 9 in .*b"):
        timing_compare.load_several([tmp_path / "a", tmp_path / "b"])


def test_a_total_below_the_tokens_already_seen_is_refused():
    from inductscan import timing_compare

    levels = {
        f"{level}_{kind}": [2000.0] for level in ("onset", "midpoint", "end") for kind in ("tokens", "tokens_after")
    }
    timing = pd.DataFrame({"suite": ["local"], "run": ["run-1"], **levels})
    with pytest.raises(inductscan.errors.ConfigError, match="had seen 2,000 tokens.*more than its total"):
        timing_compare.add_fractions(timing, total_tokens=1000)
    assert timing_compare.add_fractions(timing, total_tokens=4000)["midpoint_fraction"].tolist() == [0.5]


def without_overriding_permissions() -> None:
    """Run in the child before it starts the command: as root, give up overriding files'
    permissions (CAP_DAC_OVERRIDE, dropped from the bounding set, so that the command started next
    does not hold it), so that a folder without write permission refuses root too; as another
    user, nothing to do."""
    if os.geteuid() != 0:
        return
    import ctypes

    pr_capbset_drop, cap_dac_override = 24, 1  # <linux/prctl.h>, <linux/capability.h>
    if ctypes.CDLL(None, use_errno=True).prctl(pr_capbset_drop, cap_dac_override, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "cannot drop CAP_DAC_OVERRIDE")


def test_compact_of_a_folder_it_cannot_write_is_one_line(written):
    out, expected = written
    before = files(out)
    folders = [path for path in (out / "scores").rglob("*") if path.is_dir()]
    for path in (out / "scores").rglob("*"):
        path.chmod(path.stat().st_mode & ~0o222)
    try:
        command = [sys.executable, "-m", "inductscan.cli", "compact", str(out)]
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
                              preexec_fn=without_overriding_permissions)  # fmt: skip
    finally:
        for path in (out / "scores").rglob("*"):
            path.chmod(path.stat().st_mode | 0o200)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("error: cannot write to ") and ": Permission denied; " in lines[0]
    assert any(lines[0].startswith(f"error: cannot write to {folder}: ") for folder in folders)
    assert files(out) == before  # nothing folded, nothing half-written
    assert_same_rows(out, expected)
