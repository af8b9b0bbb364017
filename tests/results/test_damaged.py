"""A results folder that holds a file no reader can read (truncated, garbage, or another tool's),
and a disk that fills up mid-scan: one line naming the file, never a traceback; ``status`` counts
the damaged checkpoints; a scan sets the file aside (it never deletes it) and scores them again;
a scan stopped by a full disk resumes once there is room."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner

import inductscan
from inductscan.cli import main
from inductscan.errors import DamagedFileError
from inductscan.icl import IclConfig, IclExamples
from inductscan.plan import ScanConfig, plan_scan
from inductscan.results import token_losses
from inductscan.results.compact import compact
from inductscan.results.folder import ResultsFolder
from inductscan.results.write import IclResult, write_scores
from inductscan.runner import LocalExecutor, Progress, prepare_scan
from tests.conftest import REPO_ROOT, gpt2_model, make_local_suite, one_line, save_checkpoint

PROBE = ["--probe-length", "8", "--probe-batch", "4", "--quiet"]


def scan(source: Path, out: Path, *more: str):
    return CliRunner().invoke(main, ["scan", str(source), "--out", str(out), *PROBE, *more])


@pytest.fixture(scope="module")
def scanned_once(tmp_path_factory) -> tuple[Path, Path]:
    """A local run of four steps: steps 0 and 10 compacted (their step files gone), 20 and 30 loose."""
    root = tmp_path_factory.mktemp("damaged")
    suite = make_local_suite(root / "suite", seeds=(0,), steps=(0, 10, 20, 30))
    out = root / "out"
    assert scan(suite, out, "--steps", "0,10").exit_code == 0
    refs = plan_scan(str(suite), steps=[20, 30])
    context, todo, summary = prepare_scan(refs, out, ScanConfig(probe_length=8, probe_batch=4))
    LocalExecutor().run(todo, out, context, summary, Progress(2, 0, enabled=False))  # scored, not compacted
    return suite, out


@pytest.fixture
def scanned(scanned_once, tmp_path) -> tuple[Path, Path, Path]:
    """A copy of the scanned folder to damage (the checkpoints are shared: nothing writes to them)."""
    suite, made = scanned_once
    out = tmp_path / "out"
    shutil.copytree(made, out)
    folder = next((out / "scores" / "local").iterdir())
    assert sorted(path.name for path in folder.glob("*.parquet")) == [
        "compact-000001.parquet",
        "step-000000020.parquet",
        "step-000000030.parquet",
    ]
    return suite, out, folder


def readers(out: Path, tmp_path: Path) -> list[list[str]]:
    return [
        ["query", str(out)],
        ["query", str(out), "--best"],
        ["query", str(out), "--sql", "SELECT count(*) FROM scores"],
        ["phases", str(out)],
        ["plot", str(out), "-o", str(tmp_path / "t.png")],
        ["report", str(out), "-o", str(tmp_path / "r.html")],
        ["compact", str(out)],
    ]


@pytest.mark.parametrize("damage", ["truncated-compacted", "garbage-step", "empty-step", "steps-list"])
def test_a_damaged_file_is_one_line_everywhere_counted_by_status_and_rescored_by_a_scan(scanned, tmp_path, damage):
    suite, out, folder = scanned
    before = inductscan.load_results(out).drop(columns=["scored_at"])
    compacted = folder / "compact-000001.parquet"
    if damage == "truncated-compacted":  # the compacted steps' own files are gone: they must be scanned again
        damaged, steps = compacted, [0, 10]
        damaged.write_bytes(damaged.read_bytes()[:700])
    elif damage == "garbage-step":
        damaged, steps = folder / "step-000000020.parquet", [20]
        damaged.write_bytes(b"not parquet at all " * 50)
    elif damage == "empty-step":
        damaged, steps = folder / "step-000000030.parquet", [30]
        damaged.write_bytes(b"")
    else:
        damaged, steps = folder / "compact-000001.json", [0, 10]
        damaged.write_text('{"steps": [0, 1')
    content = damaged.read_bytes()

    for arguments in readers(out, tmp_path):
        one_line(CliRunner().invoke(main, arguments), 2, f"error: {damaged} is damaged", "sets it aside")
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob("*.html"))
    with pytest.raises(DamagedFileError, match=str(damaged)):
        inductscan.load_results(out)

    status = CliRunner().invoke(main, ["status", str(out), "--suite", str(suite)])
    assert status.exit_code == 1, status.output
    known = len(steps) if damage != "steps-list" else 0  # a steps list that cannot be read: its steps are unknown
    assert f"{4 - len(steps)} done" in status.output and (f"{known} damaged" in status.output or not known)
    assert f"damaged: {damaged} is damaged" in status.output
    assert "Traceback" not in status.output

    result = scan(suite, out)
    assert result.exit_code == 0, result.output
    assert f"{len(steps)} scored, {4 - len(steps)} already done" in result.output
    assert f"set aside {damaged} (damaged)" in result.output
    aside = out / "damaged" / "scores" / "local" / folder.name / damaged.name
    assert aside.read_bytes() == content  # never deleted: kept as it was, where the line says
    after = inductscan.load_results(out).drop(columns=["scored_at"])
    assert after.index.equals(before.index)
    assert after["induction"].equals(before["induction"])  # the same checkpoints, scored the same
    assert CliRunner().invoke(main, ["status", str(out), "--suite", str(suite)]).exit_code == 0


def test_status_of_a_folder_whose_only_file_is_damaged_names_it(scanned, tmp_path):
    suite, out, folder = scanned
    compact(out)
    (folder / "compact-000002.parquet").write_bytes(b"PAR1 and then nothing")
    status = CliRunner().invoke(main, ["status", str(out)])  # without --suite: no readable row to plan from
    assert status.exit_code == 1, status.output
    assert f"damaged: {folder / 'compact-000002.parquet'} is damaged" in status.output
    assert f"{folder.name} (seed unknown: its files are damaged): 4 planned, 0 done, 4 damaged" in status.output


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory) -> tuple[Path, Path]:
    """Two local runs (seeds 0 and 1) of two steps each, scanned and compacted."""
    root = tmp_path_factory.mktemp("two-seeds")
    suite = make_local_suite(root / "suite", seeds=(0, 1), steps=(0, 10))
    assert scan(suite, root / "out").exit_code == 0
    return suite, root / "out"


@pytest.mark.parametrize("damaged", [(0,), (0, 1)], ids=["one-run", "both-runs"])
def test_status_without_a_suite_counts_a_run_whose_every_file_is_damaged(two_seeds, tmp_path, damaged):
    suite, made = two_seeds
    out = tmp_path / "out"
    shutil.copytree(made, out)
    runs = {seed: next((out / "scores" / "local").glob(f"seed{seed}-*")) for seed in (0, 1)}
    for seed in damaged:
        compacted = runs[seed] / "compact-000001.parquet"
        compacted.write_bytes(compacted.read_bytes()[:500])
    status = CliRunner().invoke(main, ["status", str(out)])
    assert status.exit_code == 1, status.output
    for seed, folder in runs.items():
        if seed in damaged:
            assert f"{folder.name} (seed unknown: its files are damaged): 2 planned, 0 done, 2 damaged" in status.output
            assert f"damaged: {folder / 'compact-000001.parquet'} is damaged" in status.output
        else:
            assert f"{folder.name} (seed {seed}): 2 planned, 2 done, 0 failed" in status.output
    assert f"4 planned, {4 - 2 * len(damaged)} done, {2 * len(damaged)} damaged" in status.output
    with_suite = CliRunner().invoke(main, ["status", str(out), "--suite", str(suite)])
    assert f"4 planned, {4 - 2 * len(damaged)} done, {2 * len(damaged)} damaged" in with_suite.output


def test_a_parquet_file_of_another_tool_is_named_as_not_inductscans(scanned, tmp_path):
    suite, out, folder = scanned
    foreign = folder / "step-000000040.parquet"
    pq.write_table(pa.table({"step": [40, 40], "accuracy": [0.5, 0.6]}), foreign)
    for arguments in readers(out, tmp_path):
        one_line(
            CliRunner().invoke(main, arguments),
            2,
            f"error: {foreign} is not an inductscan scores file",
            "lacks the columns suite, run, seed, layer, head",
            "accuracy",
        )
    with pytest.raises(DamagedFileError, match="is not an inductscan scores file"):
        inductscan.load_results(out)
    result = scan(suite, out)  # moved out of the way (not deleted), the others untouched
    assert result.exit_code == 0 and "0 scored, 4 already done" in result.output, result.output
    assert f"set aside {foreign} (a file of another tool)" in result.output
    assert pq.read_table(out / "damaged" / "scores" / "local" / folder.name / foreign.name).num_rows == 2


def side_tables(out: Path) -> None:
    """A checkpoint with ICL curves and token losses, written by the scan's own writers."""
    from inductscan.metrics import HEAD_METRICS
    from inductscan.probe import ProbeConfig, TokenSpec, make_probe

    examples = IclExamples(IclConfig("t.parquet", examples=2, context=24), torch.zeros(2, 24, dtype=torch.int64),
                           None, "input_ids")  # fmt: skip
    identity = dict(suite="local", repo="org/run", run="run", revision="step0", seed=0, step=0, tokens=0)
    icl = IclResult(examples, -0.5, torch.ones(23, dtype=torch.float64))
    write_scores(out, identity, {name: torch.zeros(1, 2, dtype=torch.float64) for name in HEAD_METRICS},
                       {"loss_first": 5.0, "loss_repeat": 4.0, "in_context_gain": 1.0}, weights_sha256="0" * 64,
                       probe=make_probe(ProbeConfig(length=8, batch=2), TokenSpec(0, 96)), dtype="float32",
                       icl=icl)  # fmt: skip
    token_losses.write(out, identity, torch.ones(2, 23), examples)


def with_a_damaged_side_file(out, table: str, keep: int):
    """``side_tables(out)`` with ``table``'s file cut to its first ``keep`` bytes; (out, that file)."""
    side_tables(out)
    damaged = next((out / table).rglob("step-*.parquet"))
    damaged.write_bytes(damaged.read_bytes()[:keep])
    return out, damaged


@pytest.mark.parametrize("table", ["icl_curves", "token_losses"])
def test_a_damaged_side_table_is_named_by_its_readers(tmp_path, table):
    out, damaged = with_a_damaged_side_file(tmp_path / "out", table, keep=300)
    reader = inductscan.load_icl_curves if table == "icl_curves" else inductscan.load_token_losses
    with pytest.raises(DamagedFileError, match=f"{damaged} is damaged"):
        reader(out)
    arguments = ["query", str(out), "--sql", "SELECT count(*) FROM scores"]
    one_line(CliRunner().invoke(main, arguments), 2, str(damaged))  # its view is made with the others
    found = ResultsFolder(out).damaged(table)
    assert [problem.paths for problem in found] == [(damaged,)] and found[0].steps == {0}


@pytest.mark.parametrize("table", ["icl_curves", "token_losses"])
def test_a_damaged_side_table_is_counted_by_status_and_stops_no_reader_of_the_scores_alone(tmp_path, table):
    out, damaged = with_a_damaged_side_file(tmp_path / "out", table, keep=100)
    status = CliRunner().invoke(main, ["status", str(out)])
    assert status.exit_code == 1, status.output
    assert "run (seed 0): 1 planned, 0 done, 1 damaged" in status.output
    assert f"damaged: {damaged} is damaged" in status.output
    best = CliRunner().invoke(main, ["query", str(out), "--best", "--format", "json"])
    assert best.exit_code == 0, best.output
    rows = json.loads(best.output)  # one checkpoint, two heads of equal (zero) scores: the first head
    assert [(row["step"], row["layer"], row["head"]) for row in rows] == [(0, 0, 0)]
    assert CliRunner().invoke(main, ["query", str(out), "--columns", "step,head"]).exit_code == 0


def test_a_damaged_record_of_token_ids_is_named_by_its_readers(tmp_path):
    out = tmp_path / "out"
    side_tables(out)
    for record in [*(out / "probes").glob("*.json"), *(out / "icl").glob("*.json")]:
        record.write_bytes(b"\x89 not json")
    (probe,) = (out / "probes").glob("*.json")
    with pytest.raises(DamagedFileError, match=f"{probe} is damaged .*the probe's token ids cannot be read"):
        inductscan.load_probe(out)
    (icl,) = (out / "icl").glob("*.json")
    with pytest.raises(DamagedFileError, match=f"{icl} is damaged .*the ICL examples' token ids cannot be read"):
        token_losses.icl_ids(out)
    icl.write_text('{"icl": {}}')  # JSON, but not the record's
    with pytest.raises(DamagedFileError, match=f"{icl} is damaged \\(it holds no 'ids'\\)"):
        token_losses.icl_ids(out)


def test_a_scan_with_icl_redoes_a_checkpoint_whose_curve_was_set_aside(tmp_path):
    suite = tmp_path / "suite"
    for step in (0, 10):
        save_checkpoint(gpt2_model(step), suite / f"checkpoint-{step}")
    generator = torch.Generator().manual_seed(0)
    data = tmp_path / "tokens.parquet"
    pq.write_table(pa.table({"input_ids": torch.randint(0, 96, (4, 40), generator=generator).tolist()}), data)
    icl = ["--icl-dataset", str(data), "--icl-context", "32", "--icl-examples", "2"]
    out = tmp_path / "out"
    assert scan(suite, out, *icl).exit_code == 0
    before = inductscan.load_icl_curves(out)
    curve = next((out / "icl_curves").rglob("compact-*.parquet"))
    curve.write_bytes(b"garbage")
    result = scan(suite, out, *icl)
    assert result.exit_code == 0 and "2 scored, 0 already done" in result.output, result.output
    after = inductscan.load_icl_curves(out)
    assert after[["step", "position", "loss"]].equals(before[["step", "position", "loss"]])


LIMITED_SCAN = """
import resource, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # Python ignores SIGXFSZ: a write fails with EFBIG
from inductscan.cli import main
main(sys.argv[2:])
"""


def test_a_disk_that_fills_up_mid_scan_is_one_line_and_the_scan_resumes(tmp_path):
    """A file-size limit (RLIMIT_FSIZE, the operating system's own refusal, as a quota or a full disk
    gives): seed 0's small checkpoints fit, seed 1's larger ones do not."""
    suite = tmp_path / "suite"
    for step in (0, 10):
        save_checkpoint(gpt2_model(step, n_layer=1, n_head=1), suite / "seed0" / f"checkpoint-{step}")
        save_checkpoint(gpt2_model(step, n_layer=6, n_head=16), suite / "seed1" / f"checkpoint-{step}")
    out = tmp_path / "out"
    arguments = ["scan", str(suite), "--out", str(out), *PROBE]
    limited = subprocess.run([sys.executable, "-c", LIMITED_SCAN, "11000", *arguments], capture_output=True,
                             text=True, cwd=REPO_ROOT, timeout=300)  # fmt: skip
    assert limited.returncode == 1, limited.stdout + limited.stderr
    lines = limited.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no space left writing "), limited.stderr
    assert "seed1-" in lines[0] and "step-000000000.parquet" in lines[0] and "re-run the same command" in lines[0]
    assert "Traceback" not in limited.stderr
    saved = sorted(path.name for path in (out / "scores").rglob("*.parquet"))
    assert saved == ["step-000000000.parquet", "step-000000010.parquet"]  # seed 0's, whole
    assert not [path for path in out.rglob(".*") if ".tmp-" in path.name]  # nothing half-written left
    assert resource.getrlimit(resource.RLIMIT_FSIZE)[0] == resource.RLIM_INFINITY  # this process: no limit
    resumed = CliRunner().invoke(main, arguments)
    assert resumed.exit_code == 0 and "2 scored, 2 already done" in resumed.output, resumed.output
    frame = inductscan.load_results(out).reset_index()
    assert frame.groupby("seed").size().to_dict() == {0: 2 * 1, 1: 2 * 6 * 16}


def test_no_space_in_the_middle_of_a_compaction_is_one_line_too(tmp_path):
    out = tmp_path / "out"
    side_tables(out)
    script = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200)); "
        "from inductscan.cli import main; main(sys.argv[1:])"
    )
    done = subprocess.run([sys.executable, "-c", script, "compact", str(out)], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=120)  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no space left writing ") and "compact-000001" in lines[0]
    assert len(inductscan.load_results(out)) == 2  # the per-checkpoint file is still read


def test_no_space_for_a_download_is_one_line_too(tmp_path):
    """The Hugging Face cache's disk, not the results folder's: a weight file larger than the limit."""
    from inductscan.testing.hub_server import HubServer
    from tests.test_runner import pythia_like
    from tests.test_stream import hub_env

    folder = save_checkpoint(pythia_like(0), tmp_path / "made")  # 5 MB of weights
    with HubServer() as server:
        files = {"config.json": folder / "config.json", "model.safetensors": folder / "model.safetensors"}
        server.add("EleutherAI/pythia-160m", "step0", files)
        arguments = ["scan", "pythia-160m", "--steps", "0", "--out", str(tmp_path / "out"), "--quiet"]
        limited = subprocess.run([sys.executable, "-c", LIMITED_SCAN, "200000", *arguments], capture_output=True,
                                 text=True, cwd=REPO_ROOT, timeout=300,
                                 env={**os.environ, **hub_env(server, tmp_path / "hf")})  # fmt: skip
    assert limited.returncode == 1, limited.stdout + limited.stderr
    lines = limited.stderr.strip().splitlines()
    assert len(lines) == 1 and "no space left downloading EleutherAI/pythia-160m@step0/model.safetensors" in lines[0]
    assert str(tmp_path / "hf") in lines[0] and "re-run the same command" in lines[0]
