"""A user's own folder of checkpoints: which folders are steps, one architecture per run, and a
suite name of the user's choosing so that local models of different sizes compare like
catalogued suites."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

import inductscan
from inductscan.cli import main

from .conftest import gpt2_model, neox_model, one_line, save_checkpoint

PROBE = ["--probe-length", "8", "--probe-batch", "4", "--quiet"]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_a_step_held_by_several_folders_is_refused_naming_them(runner, tmp_path):
    run = tmp_path / "run"
    for step, name in ((0, "checkpoint-0"), (10, "checkpoint-10"), (10, "step10"), (10, "step_00010")):
        save_checkpoint(gpt2_model(step), run / name)
    out = tmp_path / "out"
    one_line(
        runner.invoke(main, ["scan", str(run), "--out", str(out), *PROBE]),
        2,
        "step 10 of",
        "held by 3 folders: checkpoint-10, step10, step_00010",
    )
    assert not (out / "scores").exists()  # nothing scored from one of them, chosen silently
    shutil.rmtree(run / "checkpoint-10")
    shutil.rmtree(run / "step10")  # one left, zero-padded: step 10 all the same, scanned from it
    result = runner.invoke(main, ["scan", str(run), "--out", str(out), *PROBE])
    assert result.exit_code == 0 and "2 scored" in result.output, result.output
    revisions = inductscan.load_results(out, columns=["revision"]).reset_index().groupby("step").revision.first()
    assert revisions.to_dict() == {0: "checkpoint-0", 10: "step_00010"}


def test_folders_that_look_like_steps_but_name_none_are_listed(runner, tmp_path):
    run = tmp_path / "run"
    for step in (0, 10):
        save_checkpoint(gpt2_model(step), run / f"checkpoint-{step}")
    for name in ("checkpoint-final", "checkpoint-abc", "step-20"):
        save_checkpoint(gpt2_model(5), run / name)
    (run / "logs").mkdir()  # not named like a step: not worth a word
    result = runner.invoke(main, ["scan", str(run), "--out", str(tmp_path / "out"), *PROBE])
    assert result.exit_code == 0 and "2 scored" in result.output, result.output
    (warning,) = [line for line in result.output.splitlines() if line.startswith("warning: not scanned")]
    assert "3 folder(s) that look like checkpoints but name no step" in warning
    for name in ("checkpoint-abc", "checkpoint-final", "step-20"):
        assert str(run / name) in warning
    assert "logs" not in warning
    detail = runner.invoke(main, ["suites", str(run)])
    assert f"not a checkpoint (names no step): {run / 'checkpoint-final'}" in detail.output


@pytest.mark.parametrize(
    "later, change",
    [
        (lambda: neox_model(3), "family gpt2 -> gpt_neox"),
        (lambda: gpt2_model(3, n_head=2), "n_heads 4 -> 2"),
    ],
    ids=["gpt2-then-neox", "head-count"],
)
def test_a_run_whose_architecture_changes_is_refused_naming_the_step_and_the_change(runner, tmp_path, later, change):
    run = tmp_path / "run"
    for step in (0, 10):
        save_checkpoint(gpt2_model(step), run / f"checkpoint-{step}")
    save_checkpoint(later(), run / "checkpoint-20")
    out = tmp_path / "out"
    line = one_line(
        runner.invoke(main, ["scan", str(run), "--out", str(out), *PROBE, "--steps", "0,10"]),
        2,
        "change architecture at step 20 (from step 0:",
        change,
        "a folder of their own",
    )
    assert str(run.resolve()) in line
    assert not (out / "scores").exists()  # refused before anything was scored


def test_an_unreadable_config_is_left_to_its_own_checkpoint(runner, tmp_path):
    """A config that cannot be read says nothing about a change of architecture: that checkpoint
    is recorded as failed, the others scored."""
    run = tmp_path / "run"
    for step in (0, 10, 20):
        save_checkpoint(gpt2_model(step), run / f"checkpoint-{step}")
    config = run / "checkpoint-10" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "model_type": "llama"}))
    out = tmp_path / "out"
    result = runner.invoke(main, ["scan", str(run), "--out", str(out), *PROBE])
    assert result.exit_code == 1 and "2 scored" in result.output, result.output
    assert list(inductscan.load_failures(out).step) == [10]


def two_sizes(tmp_path: Path) -> tuple[Path, Path]:
    """A user's two models of different vocabularies (so their probes differ), a folder each."""
    small, large = tmp_path / "small", tmp_path / "large"
    for step in (0, 10):
        save_checkpoint(gpt2_model(step), small / f"checkpoint-{step}")
        save_checkpoint(gpt2_model(step, n_layer=2, vocab_size=128, bos_token_id=127, eos_token_id=127),
                        large / f"checkpoint-{step}")  # fmt: skip
    return small, large


def test_local_models_of_two_sizes_named_as_suites_share_a_folder_and_compare(runner, tmp_path):
    small, large = two_sizes(tmp_path)
    out = tmp_path / "out"
    assert runner.invoke(main, ["scan", str(small), "--out", str(out), *PROBE]).exit_code == 0
    refused = runner.invoke(main, ["scan", str(large), "--out", str(out), *PROBE])  # both "local": one probe each
    assert refused.exit_code == 2 and "other settings" in refused.output, refused.output

    named = tmp_path / "named"
    for folder, name in ((small, "mine-small"), (large, "mine-large")):
        result = runner.invoke(main, ["scan", str(folder), "--suite", name, "--out", str(named), *PROBE])
        assert result.exit_code == 0 and "2 scored" in result.output, result.output
    frame = inductscan.load_results(named)
    layers = frame.reset_index().groupby("suite").layer.max().to_dict()
    assert layers == {"mine-large": 1, "mine-small": 2}  # each suite's own model
    assert sorted((named / "settings").iterdir()) == [
        named / "settings" / f"{name}.json" for name in ("mine-large", "mine-small")
    ]
    timing = runner.invoke(main, ["phases", str(named), "--format", "json"])
    assert timing.exit_code == 0 and sorted(row["suite"] for row in json.loads(timing.output)) == [
        "mine-large",
        "mine-small",
    ]
    again = runner.invoke(main, ["scan", str(small), "--suite", "mine-small", "--out", str(named), *PROBE])
    assert again.exit_code == 0 and "0 scored, 2 already done" in again.output  # the name is part of the resume
    status = runner.invoke(main, ["status", str(named)])
    assert status.exit_code == 0 and status.output.count("2 planned, 2 done") == 2, status.output

    apart = [tmp_path / "a", tmp_path / "b"]  # or a folder each, compared like catalogued suites
    for folder, name, where in ((small, "mine-small", apart[0]), (large, "mine-large", apart[1])):
        inductscan.scan(str(folder), where, suite=name, config=inductscan.ScanConfig(probe_length=8), progress=False)
    both = runner.invoke(main, ["phases", *map(str, apart), "--format", "json"])
    assert both.exit_code == 0 and len(json.loads(both.output)) == 2, both.output


@pytest.mark.parametrize(
    "source, name, message",
    [
        ("{small}", "stanford-gpt2-small", "--suite stanford-gpt2-small is a suite inductscan knows"),
        ("{small}", "toy", "--suite toy is a suite inductscan knows"),
        ("{small}", "../up", "use letters, digits and . _ + -"),
        ("stanford-gpt2-small", "mine", "--suite names a local folder's suite; stanford-gpt2-small is a suite"),
    ],
)
def test_a_suite_name_that_would_pass_for_another_is_refused(runner, tmp_path, source, name, message):
    small, _ = two_sizes(tmp_path)
    result = runner.invoke(main, ["scan", source.format(small=small), "--suite", name, "--out", str(tmp_path / "o")])
    one_line(result, 2, message)


def test_a_toy_folder_keeps_the_name_its_manifest_gives(runner, tmp_path):
    small, _ = two_sizes(tmp_path)
    (small / "inductscan-suite.json").write_text(json.dumps({"suite": "toy", "tokens_per_step": 100}))
    one_line(
        runner.invoke(main, ["scan", str(small), "--suite", "mine", "--out", str(tmp_path / "o")]),
        2,
        "is the suite toy (inductscan-suite.json says so): scan it without --suite",
    )


def test_run_folders_numbered_by_their_place_are_said_to_be_and_a_clash_names_each_seed(runner, tmp_path):
    from inductscan.suites import local_suite

    root = tmp_path / "runs"
    for run in ("beta", "alpha"):
        save_checkpoint(gpt2_model(0), root / run / "checkpoint-0")
    suite = local_suite(root)
    assert sorted((Path(run.repo).name, run.seed) for run in suite.runs) == [("alpha", 0), ("beta", 1)]
    (note,) = suite.notes
    assert "(alpha seed 0, beta seed 1)" in note and "a run folder added there later renumbers them" in note
    result = runner.invoke(main, ["scan", str(root), "--out", str(tmp_path / "out"), *PROBE])
    assert result.exit_code == 0 and "a run folder added there later renumbers them" in result.output, result.output
    shutil.move(root / "beta", root / "seed0")  # alpha takes seed 0 by its place, seed0 by its name
    one_line(
        runner.invoke(main, ["scan", str(root), "--out", str(tmp_path / "other"), *PROBE]),
        2,
        "have the same seed (alpha seed 0, seed0 seed 0;",
        "name each seedN, with its own N",
    )


def test_a_rescan_names_the_checkpoints_whose_weights_changed_since_they_were_scored(runner, tmp_path):
    import os

    run = tmp_path / "run"
    for step in (0, 10, 20):
        save_checkpoint(gpt2_model(step), run / f"checkpoint-{step}")
    out = tmp_path / "out"
    assert runner.invoke(main, ["scan", str(run), "--out", str(out), *PROBE]).exit_code == 0
    scored = inductscan.load_results(out, columns=["weights_sha256"]).reset_index()
    scored = scored.groupby("step").weights_sha256.first()
    later = os.stat(next((out / "scores").rglob("*.parquet"))).st_mtime + 10
    shutil.rmtree(run / "checkpoint-20")
    save_checkpoint(gpt2_model(99), run / "checkpoint-20")  # trained again into the same folder
    for step in (10, 20):  # both newer than the results; step 10's bytes are the ones scored
        for path in (run / f"checkpoint-{step}").iterdir():
            os.utime(path, (later, later))
    result = runner.invoke(main, ["scan", str(run), "--out", str(out), *PROBE])
    assert result.exit_code == 0 and "3 already done" in result.output, result.output
    (line,) = [line for line in result.output.splitlines() if "changed since they were scored" in line]
    assert "step(s) 20 changed" in line and "scan into a fresh --out" in line, line
    kept = inductscan.load_results(out, columns=["weights_sha256"]).reset_index()
    kept = kept.groupby("step").weights_sha256.first()
    assert kept.equals(scored)  # the rows are kept, and said to be of the old weights
