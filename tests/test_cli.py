"""The command line: help with examples, scanning a local suite, queries, and one-line errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import inductscan
from inductscan.cli import main

from .conftest import gpt2_model, make_local_suite, save_checkpoint, write_json

COMMANDS = sorted(main.commands)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(runner, command):
    result = runner.invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output and f"inductscan {command}" in result.output


def test_suites_list_and_detail(runner):
    listing = runner.invoke(main, ["suites"])
    assert listing.exit_code == 0
    for name in ("stanford-gpt2-small", "stanford-gpt2-medium", "pythia-12b-deduped", "pythia-410m-seeds", "toy"):
        assert name in listing.output
    detail = runner.invoke(main, ["suites", "stanford-gpt2-small"])
    assert "steps: 609 (0 .. 400000)" in detail.output
    assert "tokens per step: 524,288" in detail.output
    assert "stanford-crfm/expanse-gpt2-small-x777" in detail.output
    pythia = runner.invoke(main, ["suites", "pythia-160m-seeds"])
    assert "steps: 154 (0 .. 143000)" in pythia.output and "EleutherAI/pythia-160m-seed9" in pythia.output


@pytest.fixture
def scanned(tmp_path, runner):
    folder = make_local_suite(tmp_path / "suite", seeds=(0, 1), steps=(0, 10, 20))
    out = tmp_path / "results"
    result = runner.invoke(main, ["scan", str(folder), "--out", str(out), "--probe-length", "8", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "6 checkpoints" in result.output and "6 scored" in result.output
    return folder, out


def test_scan_then_rescan_skips_what_is_done(runner, scanned):
    folder, out = scanned
    again = runner.invoke(main, ["scan", str(folder), "--out", str(out), "--probe-length", "8", "--quiet"])
    assert again.exit_code == 0 and "0 scored, 6 already done" in again.output
    assert len(inductscan.load_results(out)) == 6 * 3 * 4


def test_scan_selects_seeds_steps_and_every(runner, tmp_path, scanned):
    folder, _ = scanned
    out = tmp_path / "some"
    result = runner.invoke(
        main,
        [
            "scan",
            str(folder),
            "--out",
            str(out),
            "--seeds",
            "1",
            "--step-range",
            "5:20",
            "--every",
            "2",
            "--probe-length",
            "8",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    frame = inductscan.load_results(out)
    assert sorted(set(frame.index.get_level_values("step"))) == [10, 20]  # every 2nd of 10, 20; the last kept
    assert set(frame.index.get_level_values("seed")) == {1}


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_query_formats_and_filters(runner, scanned, fmt):
    _, out = scanned
    result = runner.invoke(main, ["query", str(out), "--seed", "1", "--layer", "2", "--format", fmt])
    assert result.exit_code == 0, result.output
    if fmt == "json":
        rows = json.loads(result.output)
        assert len(rows) == 3 * 4 and {row["seed"] for row in rows} == {1} and {row["layer"] for row in rows} == {2}
    elif fmt == "csv":
        assert result.output.splitlines()[0].startswith("suite,run,seed,step,tokens,layer,head,induction")
        assert len(result.output.splitlines()) == 1 + 12


def test_query_best_top_and_threshold(runner, scanned):
    _, out = scanned
    best = json.loads(runner.invoke(main, ["query", str(out), "--best", "--format", "json"]).output)
    assert len(best) == 6
    frame = inductscan.load_results(out).reset_index()
    for row in best:
        same = frame[(frame.seed == row["seed"]) & (frame.step == row["step"])]
        assert row["induction"] == pytest.approx(same.induction.max())
    top = json.loads(runner.invoke(main, ["query", str(out), "--top", "3", "--format", "json"]).output)
    assert [row["induction"] for row in top] == pytest.approx(sorted(frame.induction, reverse=True)[:3], abs=1e-14)
    threshold = frame.induction.median()
    above = json.loads(
        runner.invoke(main, ["query", str(out), "--min-induction", str(threshold), "--format", "json"]).output
    )
    assert len(above) == (frame.induction >= threshold).sum()


def one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0]


def test_bad_input_gives_one_line(runner, tmp_path, scanned):
    folder, out = scanned
    one_line_error(runner.invoke(main, ["scan", "stanford-gpt2-smol"]), "unknown suite", "stanford-gpt2-small")
    one_line_error(runner.invoke(main, ["scan", "stanford-gpt2-small", "--seeds", "22"]), "no seed 22", "21, 49")
    one_line_error(runner.invoke(main, ["scan", "stanford-gpt2-small", "--steps", "15"]), "no step 15", "10, 20")
    one_line_error(runner.invoke(main, ["scan", str(tmp_path / "nowhere")]), "no such folder")
    one_line_error(runner.invoke(main, ["scan", str(folder), "--probe-length", "0"]), "probe length")
    one_line_error(
        runner.invoke(main, ["scan", str(folder), "--probe-length", "40", "--probe-repeats", "3"]),
        "121 positions",
        "context is 64",
    )
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    one_line_error(runner.invoke(main, ["scan", str(folder), "--out", str(blocker / "sub")]), "cannot write results")
    one_line_error(runner.invoke(main, ["query", str(out), "--columns", "nonsense"]), "unknown column")
    one_line_error(runner.invoke(main, ["query", str(tmp_path / "nowhere")]), "no results folder")


def test_a_second_probe_is_refused_in_the_same_results(runner, scanned):
    folder, out = scanned  # every step done: refused all the same, before anything is planned
    result = runner.invoke(main, ["scan", str(folder), "--out", str(out), "--probe-length", "9", "--quiet"])
    one_line_error(result, "other settings", "probe length 8 there, 9 here", "--probe-")


def test_bad_checkpoints_are_recorded_and_the_scan_goes_on(runner, tmp_path):
    folder = make_local_suite(tmp_path / "suite", seeds=(0,), steps=(0, 10, 20, 30))
    truncated = folder / "seed0" / "checkpoint-10" / "model.safetensors"
    truncated.write_bytes(truncated.read_bytes()[:1000])
    llama = folder / "seed0" / "checkpoint-20" / "config.json"
    write_json(llama, {**json.loads(llama.read_text()), "model_type": "llama"})
    (folder / "seed0" / "checkpoint-30" / "model.safetensors").unlink()
    out = tmp_path / "results"
    result = runner.invoke(main, ["scan", str(folder), "--out", str(out), "--probe-length", "8", "--quiet"])
    assert result.exit_code == 1
    assert "1 scored" in result.output and "3 failed or skipped" in result.output
    failures = inductscan.load_failures(out).set_index("step")
    assert "cannot read weights" in failures.loc[10, "reason"]
    assert "llama" in failures.loc[20, "reason"] and failures.loc[20, "kind"] == "failed"
    assert "no weight file" in failures.loc[30, "reason"] and failures.loc[30, "kind"] == "skipped"
    assert sorted(set(inductscan.load_results(out).index.get_level_values("step"))) == [0]
    # once repaired, a re-run scores it and its failure record goes away
    save_checkpoint(gpt2_model(99), folder / "seed0" / "checkpoint-30")
    runner.invoke(main, ["scan", str(folder), "--out", str(out), "--probe-length", "8", "--quiet"])
    assert 30 not in set(inductscan.load_failures(out).step)
    assert 30 in set(inductscan.load_results(out).index.get_level_values("step"))
