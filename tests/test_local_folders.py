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

from .conftest import gpt2_model, neox_model, save_checkpoint

PROBE = ["--probe-length", "8", "--probe-batch", "4", "--quiet"]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def one_line(result, code: int, *fragments: str) -> str:
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


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


def scanned_pair(tmp_path: Path) -> tuple[Path, Path]:
    """Two local runs whose vocabularies differ (so their probes do), each in a folder of its own."""
    small, large = tmp_path / "small", tmp_path / "large"
    for step in (0, 10):
        save_checkpoint(gpt2_model(step), small / f"checkpoint-{step}")
        save_checkpoint(
            gpt2_model(step, vocab_size=128, bos_token_id=127, eos_token_id=127), large / f"checkpoint-{step}"
        )
    return small, large
