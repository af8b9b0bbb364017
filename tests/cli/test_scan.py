"""``inductscan scan`` and ``inductscan status`` (inductscan/cli/scan.py): the plan options reach
the library as one PlanArguments value, bad input gives one line, bad checkpoints are recorded."""

from __future__ import annotations

import json

import pytest

import inductscan
from inductscan.cli import main
from inductscan.plan import PlanArguments

from ..conftest import gpt2_model, make_local_suite, save_checkpoint, write_json
from .conftest import one_line_error


def test_scan_then_rescan_skips_what_is_done(runner, scanned):
    folder, out = scanned
    again = runner.invoke(main, ["scan", str(folder), "--out", str(out), "--probe-length", "8", "--quiet"])
    assert again.exit_code == 0 and "0 scored, 6 already done" in again.output
    assert len(inductscan.load_results(out)) == 6 * 3 * 4


def test_scan_selects_seeds_steps_and_every(runner, tmp_path, scanned):
    folder, _ = scanned
    out = tmp_path / "some"
    options = ["--seeds", "1", "--step-range", "5:20", "--every", "2", "--probe-length", "8", "--quiet"]
    result = runner.invoke(main, ["scan", str(folder), "--out", str(out), *options])
    assert result.exit_code == 0, result.output
    frame = inductscan.load_results(out)
    assert sorted(set(frame.index.get_level_values("step"))) == [10, 20]  # every 2nd of 10, 20; the last kept
    assert set(frame.index.get_level_values("seed")) == {1}


@pytest.mark.parametrize(
    ("options", "arguments"),
    [
        ([], PlanArguments()),
        (["--seeds", "1", "--steps", "0,20"], PlanArguments(seeds=[1], steps=[0, 20])),
        (["--seed", "all", "--step-range", "5:", "--every", "2"], PlanArguments(step_range=(5, 2**62), every=2)),
        (["--shard", "1/2"], PlanArguments(shard="1/2")),
    ],
)
def test_status_plans_as_the_library_does_with_the_same_plan_arguments(runner, scanned, options, arguments):
    folder, out = scanned
    shown = runner.invoke(main, ["status", str(out), "--suite", str(folder), *options])
    assert shown.exit_code == 0, shown.output
    assert shown.output.splitlines() == inductscan.status(out, str(folder), arguments=arguments).lines()
    assert arguments == PlanArguments.of(**vars(arguments))  # the fields by name make the same value


def test_bad_input_gives_one_line(runner, tmp_path, scanned):
    folder, _ = scanned
    one_line_error(runner.invoke(main, ["scan", "stanford-gpt2-smol"]), "unknown suite", "stanford-gpt2-small")
    one_line_error(runner.invoke(main, ["scan", "OLMo-2-1B"]), "unknown suite 'OLMo-2-1B'", "did you mean olmo-2-1b?")
    one_line_error(
        runner.invoke(main, ["scan", "stanford"]), "did you mean stanford-gpt2-small or stanford-gpt2-medium?"
    )
    one_line_error(runner.invoke(main, ["scan", "stanford-gpt2-small", "--seeds", "22"]), "no seed 22", "21, 49")
    one_line_error(runner.invoke(main, ["scan", "stanford-gpt2-small", "--steps", "15"]), "no step 15", "10, 20")
    one_line_error(runner.invoke(main, ["scan", str(tmp_path / "nowhere")]), "no such folder")
    one_line_error(
        runner.invoke(main, ["scan", str(folder), "--step-range", "100000:200000"]),
        "no checkpoint matches the chosen seeds and steps (local holds",
        f"`inductscan suites {folder}` lists them",
    )
    (tmp_path / "afile").write_text("")
    one_line_error(runner.invoke(main, ["scan", str(tmp_path / "afile")]), "afile is a file: a local suite is a folder")
    one_line_error(
        runner.invoke(main, ["scan", str(folder), "--out", str(tmp_path / "afile")]),
        f"cannot write results to {tmp_path / 'afile'}: it is a file, not a folder; choose another --out",
    )
    one_line_error(runner.invoke(main, ["scan", str(folder), "--probe-length", "0"]), "--probe-length must be")
    one_line_error(
        runner.invoke(main, ["scan", str(folder), "--probe-length", "40", "--probe-repeats", "3"]),
        "121 positions",
        "context is 64",
    )
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    one_line_error(runner.invoke(main, ["scan", str(folder), "--out", str(blocker / "sub")]), "cannot write results")
    one_line_error(runner.invoke(main, ["scan", str(folder), "--ray-address", "auto"]), "--ray-address needs")
    one_line_error(runner.invoke(main, ["status", str(tmp_path / "nowhere")]), "no results folder")


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
    status = runner.invoke(main, ["status", str(out), "--list"])
    assert status.exit_code == 1 and "1 done, 2 failed, 1 skipped" in status.output
    # once repaired, a re-run scores it and its failure record goes away
    save_checkpoint(gpt2_model(99), folder / "seed0" / "checkpoint-30")
    runner.invoke(main, ["scan", str(folder), "--out", str(out), "--probe-length", "8", "--quiet"])
    assert 30 not in set(inductscan.load_failures(out).step)
    assert 30 in set(inductscan.load_results(out).index.get_level_values("step"))
