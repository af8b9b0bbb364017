"""The faults a scan meets and how it tells them: non-finite weights and activations, a weight of
the wrong shape, out of memory, Ctrl-C and an interrupt just after a save, known-missing upstream
steps, plain progress lines in a log, --every keeping the last step, the Python API's plain values,
and a toy suite whose training was interrupted."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

import inductscan
from inductscan.cli import main
from inductscan.errors import ConfigError, OutputError
from inductscan.plan import ScanConfig, plan
from inductscan.results.folder import ResultsFolder
from inductscan.runner import LocalExecutor, ScanInterrupted, is_out_of_memory, run_scan
from inductscan.suites import Run, Suite, local_suite
from inductscan.testing.hub_server import HubServer

from .conftest import (
    PROBE,
    REPO_ROOT,
    invoke_cli,
    make_local_suite,
    neox_model,
    one_line,
    run_cli,
    save_checkpoint,
    scan,
    trainer_run,
)
from .test_stream import hub_env

LEGACY = REPO_ROOT / "tests" / "data" / "results-0.1.0"  # written by inductscan 0.1.0: scores/local/output/


def pythia_like(seed: int):
    """A tiny GPT-NeoX whose vocabulary holds the Pythia suites' probe range (ids 1000-19999)."""
    return neox_model(
        seed,
        vocab_size=20000,
        max_position_embeddings=128,
        hidden_size=32,
        num_attention_heads=2,
        num_hidden_layers=2,
        intermediate_size=64,
    )


def with_tensor(folder: Path, key: str, change) -> None:
    path = folder / "model.safetensors"
    state = load_file(path)
    state[key] = change(state[key])
    save_file(state, path, metadata={"format": "pt"})


@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_non_finite_weights_are_a_recorded_failure_naming_the_tensor(runner, tmp_path, bad):
    run = trainer_run(tmp_path / "output", 1, steps=(0, 10, 20))
    value = float(bad)
    with_tensor(
        run / "checkpoint-10", "transformer.h.1.mlp.c_fc.weight", lambda w: w.index_fill(0, torch.tensor([3]), value)
    )
    out = tmp_path / "results"
    for _ in range(2):  # the re-run meets it again, records it again, and goes on
        result = scan(runner, run, out)
        assert result.exit_code == 1, result.output
        assert "2 scored" in result.output or "2 already done" in result.output
    failures = inductscan.load_failures(out)
    assert list(failures.step) == [10] and list(failures.kind) == ["failed"]
    reason = failures.reason[0]
    assert "h.1.mlp.c_fc.weight" in reason and "non-finite" in reason
    assert ("256 NaN" if bad == "nan" else "256 infinite") in reason  # row 3 of (64, 256)


def test_non_finite_activations_of_finite_weights_are_a_recorded_failure(runner, tmp_path):
    """Weights that fit float16 but whose MLP output overflows it: the forward pass, not the file."""
    run = trainer_run(tmp_path / "output", 1, steps=(0,))
    generator = torch.Generator().manual_seed(0)
    for name in ("mlp.c_fc.weight", "mlp.c_proj.weight"):  # outputs ~ 60 * 16 * 60 * 8 per unit, past 65504
        with_tensor(
            run / "checkpoint-0", f"transformer.h.0.{name}", lambda w: 60.0 * torch.randn(w.shape, generator=generator)
        )
    out = tmp_path / "results"
    result = scan(runner, run, out, "--dtype", "float16")
    assert result.exit_code == 1, result.output
    reason = inductscan.load_failures(out).reason[0]
    assert "non-finite" in reason and "scan in float32" in reason, reason
    assert "0 scored" in result.output


def test_a_weight_of_the_wrong_shape_is_a_recorded_failure_naming_it(runner, tmp_path):
    run = trainer_run(tmp_path / "output", 1, steps=(0, 10))
    # the config says 256 (its run's architecture throughout), the file holds 128 columns
    with_tensor(run / "checkpoint-10", "transformer.h.0.mlp.c_fc.weight", lambda w: w[:, :128].contiguous())
    out = tmp_path / "results"
    result = scan(runner, run, out)
    assert result.exit_code == 1 and "1 scored" in result.output, result.output
    reason = inductscan.load_failures(out).reason[0]
    assert "h.0.mlp.c_fc.weight" in reason and "(64, 256)" in reason and "(64, 128)" in reason


def test_a_config_whose_bos_token_is_outside_its_vocabulary_is_named_as_the_cause(runner, tmp_path):
    # GPT2Config's default bos_token_id (50256) in a model of 96 tokens, as a hand-made tiny GPT-2 has
    suite = make_local_suite(tmp_path / "suite", seeds=(0,), steps=(0,), bos_token_id=50256)
    out = tmp_path / "results"
    result = scan(runner, suite, out)
    assert result.exit_code == 1, result.output
    reason = inductscan.load_failures(out).reason[0]
    assert "BOS token 50256, outside this vocabulary of 96" in reason and "bos_token_id" in reason, reason


def test_out_of_memory_is_told_apart_from_other_runtime_errors():
    with pytest.raises(RuntimeError) as allocation:
        torch.empty(2**62, dtype=torch.uint8)  # the CPU allocator's own error, a plain RuntimeError
    assert is_out_of_memory(allocation.value)
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x64 and 32x64)"))


def test_ctrl_c_exits_130_and_says_what_was_saved(tmp_path):
    folder = make_local_suite(tmp_path / "suite", seeds=(0, 1), steps=tuple(range(0, 100, 10)))
    out = tmp_path / "results"
    args = ["scan", str(folder), "--out", str(out), "--probe-length", "8", "--probe-batch", "300", "--quiet"]
    process = subprocess.Popen(
        [sys.executable, "-m", "inductscan.cli", *args],
        cwd=REPO_ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not list((out / "scores").glob("*/*/step-*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stdout + stderr
    assert "interrupted" in stderr and "saved in" in stderr and "re-run" in stderr and "Aborted" not in stderr
    saved = sum(len(steps) for steps in ResultsFolder(out).done_steps().values())  # compacted or not
    assert f"{saved} checkpoint(s) scored and saved" in stderr
    again = invoke_cli(*args)
    assert again.returncode == 0 and f"{saved} already done" in again.stdout


def test_an_interrupt_just_after_a_checkpoint_is_saved_counts_it(tmp_path):
    """Ctrl-C between a scores file's rename and its count: the count is what is on disk. The
    executor's hook lands the interrupt at exactly that moment, for step 10."""
    folder = make_local_suite(tmp_path / "suite", seeds=(0,), steps=(0, 10, 20))
    out = tmp_path / "out"

    def interrupted_after(fetched, process):
        outcome = process()
        if fetched.ref.step == 10:
            raise KeyboardInterrupt  # its file is in place; the summary has not counted it yet
        return outcome

    executor = LocalExecutor(around=interrupted_after)
    with pytest.raises(ScanInterrupted) as interrupted:
        run_scan(plan(local_suite(folder)), out, ScanConfig(probe_length=8), progress=False, executor=executor)
    assert sorted(step for steps in ResultsFolder(out).done_steps().values() for step in steps) == [0, 10]
    assert interrupted.value.summary.scored == 2


def test_known_missing_upstream_steps_are_not_failures(tmp_path):
    """pythia-410m-seed9 has no step40000 upstream (inductscan/known_checkpoint_hazards.csv)."""
    repo = "EleutherAI/pythia-410m-seed9"
    model = pythia_like(0)
    folder = save_checkpoint(model, tmp_path / "made")
    out, hf_home = tmp_path / "results", tmp_path / "hf-home"
    with HubServer() as server:
        server.add(
            repo, "step0", {"config.json": folder / "config.json", "model.safetensors": folder / "model.safetensors"}
        )
        plan_args = ["pythia-410m-seeds", "--seeds", "9", "--steps", "0,40000"]
        result = run_cli("scan", *plan_args, "--out", str(out), "--quiet", env=hub_env(server, hf_home))
    assert result.returncode == 0, result.stderr + result.stdout  # not a failure
    assert "1 scored" in result.stdout and "0 failed or skipped, 1 known missing upstream" in result.stdout
    failures = inductscan.load_failures(out)
    assert list(failures.kind) == ["known-missing"] and "branch absent from the seed run" in failures.reason[0]
    for status_args in (["--suite", *plan_args], ["--steps", "0,40000"]):  # without --suite: the runs it holds
        status = run_cli("status", str(out), *status_args, "--list")
        assert status.returncode == 0, status.stdout + status.stderr  # a job script waiting on it finishes
        assert "known missing upstream steps: 40000" in status.stdout


def test_progress_in_a_log_is_plain_lines(tmp_path):
    run = trainer_run(tmp_path / "output", 1, steps=(0, 10))
    result = run_cli("scan", str(run), "--out", str(tmp_path / "results"), *PROBE)  # stderr is a pipe, not a terminal
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr
    assert "2/2 checkpoints (0 failed or skipped)" in result.stderr
    each = float(result.stderr.split(" s each")[0].rsplit(", ", 1)[1])  # a tiny model's, never shown as 0.0
    assert each > 0, result.stderr


def test_every_keeps_the_first_and_the_last_step():
    run = Run("run", 0, "repo")
    suite = Suite("suite", "", (run,), steps=(0, 10, 20, 30, 40, 50), tokens_per_step=1)
    steps = {every: [ref.step for ref in plan(suite, every=every)] for every in (1, 2, 3, 5, 10)}
    assert steps == {1: [0, 10, 20, 30, 40, 50], 2: [0, 20, 40, 50], 3: [0, 30, 50], 5: [0, 50], 10: [0, 50]}
    assert [ref.step for ref in plan(suite, step_range=(10, 40), every=2)] == [10, 30, 40]
    for command in ("scan", "status"):  # and the help says so
        shown = " ".join(CliRunner().invoke(main, [command, "--help"]).output.split())
        assert "Only every Nth of the chosen steps, and always the last" in shown


def test_the_python_api_takes_plain_values_and_says_what_is_wrong(tmp_path):
    run = trainer_run(tmp_path / "output", 1, steps=(0, 10))
    out = tmp_path / "results"
    with pytest.raises(ConfigError, match="ScanConfig"):
        inductscan.scan(str(run), out, config={"probe_length": 8})
    with pytest.raises(ConfigError, match="max_disk is a number of bytes"):
        inductscan.ScanConfig(max_disk="5GB")
    with pytest.raises(ConfigError, match="no seeds chosen"):
        inductscan.scan(str(run), out, seeds=[], config=inductscan.ScanConfig(probe_length=8))
    summary = inductscan.scan(
        str(run), out, seeds=0, steps=10, config=inductscan.ScanConfig(probe_length=8), progress=False
    )
    assert summary.scored == 1  # one seed and one step, as numbers
    assert list(inductscan.query(out, seed=0, columns="step").step.unique()) == [10]
    assert not inductscan.status(out).complete  # step 0 of the run is missing
    with pytest.raises(OutputError, match="no results folder"):
        inductscan.load_failures(tmp_path / "nowhere")


def test_a_toy_suite_whose_training_was_interrupted_is_not_scanned_as_complete(runner, tmp_path):
    folder = make_local_suite(tmp_path / "toy", seeds=(0, 1), steps=(0, 10))
    (folder / "inductscan-suite.json").write_text(json.dumps({"suite": "toy", "tokens_per_step": 100}))
    (folder / "seed0" / "training.json").write_text("{}")  # seed 1 never finished
    one_line(scan(runner, folder, tmp_path / "out"), 2, "seed1", "did not finish training", "toy-suite")


def test_download_settings_on_a_local_folder_are_said_to_change_nothing(tmp_path):
    suite = make_local_suite(tmp_path / "suite", seeds=(0,), steps=(0,))
    config = ScanConfig(probe_length=7, probe_repeats=3, probe_batch=3, max_disk=10**9, verify_cached=True)
    summary = run_scan(plan(local_suite(suite)), tmp_path / "out", config, progress=False)
    assert summary.scored == 1
    assert any(
        note.startswith("--max-disk (for weights downloaded from the Hub) changed nothing") for note in summary.notes
    )
    assert any(
        note.startswith("--verify-cached (for files already in the Hub cache) changed") for note in summary.notes
    )
    quiet = run_scan(
        plan(local_suite(suite)),
        tmp_path / "other",
        ScanConfig(probe_length=7, probe_repeats=3, probe_batch=3),
        progress=False,
    )
    assert not any("downloaded from the Hub" in note for note in quiet.notes)
