"""Results you can trust: what identifies a run and its settings, a unique index, and the faults a
new user hits (non-finite weights, empty selections, an unwritable plot, Ctrl-C, known-missing
steps, plain progress lines in a log, --every keeping the last step)."""

from __future__ import annotations

import json
import shutil
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
    make_local_suite,
    neox_model,
    one_line,
    place_in_hub_cache,
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


def test_two_runs_in_folders_of_the_same_name_never_collide(runner, tmp_path):
    first, second = trainer_run(tmp_path / "exp1" / "output", 1), trainer_run(tmp_path / "exp2" / "output", 2)
    out = tmp_path / "results"
    assert "2 scored, 0 already done" in scan(runner, first, out).output
    assert "2 scored, 0 already done" in scan(runner, second, out).output  # before: "0 scored, 2 already done"
    assert "0 scored, 2 already done" in scan(runner, first, out).output  # the same run still resumes

    frame = inductscan.load_results(out)
    assert frame.index.is_unique and len(frame) == 2 * 2 * 3 * 4
    runs = frame.reset_index().groupby("run")
    assert sorted(runs.repo.first()) == sorted([str(first.resolve()), str(second.resolve())])
    assert all(name.startswith("output-") for name in runs.groups)
    hashes = runs.weights_sha256.apply(frozenset)
    assert not hashes.iloc[0] & hashes.iloc[1]  # each run's rows hold its own weights


def test_index_is_unique_for_two_suites_that_share_seed_numbers(tmp_path):
    """pythia-160m and pythia-160m-deduped are both seed 1234, as a local run and a toy are seed 0."""
    hf_home = tmp_path / "hf-home"
    for repo, seed in (("EleutherAI/pythia-160m", 1), ("EleutherAI/pythia-160m-deduped", 2)):
        for step in (0, 1000):
            model = pythia_like(10 * seed + step)
            folder = save_checkpoint(model, tmp_path / "made" / repo / str(step))
            files = {"config.json": folder / "config.json", "model.safetensors": folder / "model.safetensors"}
            place_in_hub_cache(hf_home, repo, f"step{step}", files)
    out = tmp_path / "results"
    env = {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    for suite in ("pythia-160m", "pythia-160m-deduped"):
        result = run_cli("scan", suite, "--steps", "0,1000", "--out", str(out), "--quiet", env=env)
        assert result.returncode == 0, result.stderr + result.stdout
    frame = inductscan.load_results(out)
    assert frame.index.names == ["suite", "run", "seed", "step", "layer", "head"]
    assert frame.index.is_unique and len(frame) == 2 * 2 * 2 * 2
    assert set(frame.index.get_level_values("seed")) == {1234}
    one = frame.loc[("pythia-160m", "pythia-160m", 1234, 1000)]
    assert len(one) == 4 and set(one.repo) == {"EleutherAI/pythia-160m"}
    timing = inductscan.find_phase_changes(frame)
    assert len(timing) == 2 and not timing.duplicated(["suite", "run", "seed"]).any()


def test_a_folder_written_by_0_1_is_read_and_takes_new_runs(runner, tmp_path):
    legacy = tmp_path / "results"
    shutil.copytree(LEGACY, legacy)
    frame = inductscan.load_results(legacy)
    assert len(frame) == 2 * 3 * 4 and frame.index.is_unique
    assert set(frame.index.get_level_values("run")) == {"output"}  # 0.1's run name, kept
    assert frame.dtype.isna().all() and frame.scoring_version.isna().all()  # not recorded then
    # rows without a recorded dtype count as float32 and version 1: the same settings scan beside them
    suite = make_local_suite(tmp_path / "suite", seeds=(0,), steps=(0, 10))
    result = scan(runner, suite, legacy)
    assert result.exit_code == 0 and "2 scored" in result.output, result.output
    one_line(scan(runner, suite, legacy, "--dtype", "float64"), 2, "dtype float32 there, float64 here")
    assert inductscan.load_results(legacy).index.is_unique


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
    assert "non-finite" in reason and "--dtype float32" in reason, reason
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


def test_out_of_memory_is_told_apart_from_other_runtime_errors():
    with pytest.raises(RuntimeError) as allocation:
        torch.empty(2**62, dtype=torch.uint8)  # the CPU allocator's own error, a plain RuntimeError
    assert is_out_of_memory(allocation.value)
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x64 and 32x64)"))


@pytest.fixture
def scanned(runner, tmp_path):
    out = tmp_path / "results"
    assert scan(runner, trainer_run(tmp_path / "output", 1, steps=(0, 10, 20)), out).exit_code == 0
    return out


def test_a_filter_that_matches_nothing_is_an_empty_answer(runner, scanned, tmp_path):
    out = scanned
    full = inductscan.load_results(out)
    for filters in ({"seed": 5}, {"layer": 99}, {"suite": "other"}, {"step": slice(1000, 2000)}):
        empty = inductscan.load_results(out, **filters)
        assert empty.empty and list(empty.columns) == list(full.columns) and empty.index.names == full.index.names
    for args in (
        ["query", "--seed", "5"],
        ["query", "--layer", "99"],
        ["query", "--best", "--seed", "5"],
        ["phases", "--seed", "5"],
        ["plot", "--seed", "5", "-o", str(tmp_path / "x.png")],
    ):
        result = runner.invoke(main, [args[0], str(out), *args[1:]])
        assert result.exit_code == 0, result.output
        assert "no rows match" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x.png").exists()
    empty_folder = tmp_path / "empty"
    empty_folder.mkdir()
    for command in (["phases"], ["plot", "-o", str(tmp_path / "y.png")], ["query"], ["status"]):
        one_line(runner.invoke(main, [command[0], str(empty_folder), *command[1:]]), 2, str(empty_folder))


def test_plot_to_an_unwritable_place_is_one_line(runner, scanned, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    one_line(
        runner.invoke(main, ["plot", str(scanned), "-o", str(blocker / "plots" / "t.png")]),
        2,
        "cannot write the plot",
        "-o",
    )


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
    again = run_cli(*args)
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


def test_status_needs_no_suite_and_reports_every_recorded_run(runner, tmp_path):
    first, second = trainer_run(tmp_path / "a" / "output", 1), trainer_run(tmp_path / "b" / "output", 2)
    out = tmp_path / "results"
    scan(runner, first, out)
    scan(runner, second, out, "--steps", "0")
    result = runner.invoke(main, ["status", str(out)])
    assert result.exit_code == 1, result.output  # b's step 10 is missing
    lines = result.output.splitlines()
    assert (
        sum("2 planned, 2 done" in line for line in lines) == 1
        and sum("2 planned, 1 done" in line for line in lines) == 1
    )
    assert "missing steps: 10" in result.output
    scan(runner, second, out)
    assert runner.invoke(main, ["status", str(out)]).exit_code == 0


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


def test_wrong_weight_branches_are_flagged_in_the_table(tmp_path):
    """pythia-12b step50000 is listed by name; pythia-2.8b's listed branches are those serving
    another step's weights (a wildcard entry): steps 1 and 2 here, not 0."""
    hf_home = tmp_path / "hf-home"
    made = []
    for index in range(2):
        model = pythia_like(index)
        made.append(save_checkpoint(model, tmp_path / "made" / str(index)))

    def place(repo, step, folder):
        files = {"config.json": folder / "config.json", "model.safetensors": folder / "model.safetensors"}
        place_in_hub_cache(hf_home, repo, f"step{step}", files)

    place("EleutherAI/pythia-12b", 0, made[0])
    place("EleutherAI/pythia-12b", 50000, made[1])
    for step, folder in ((0, made[0]), (1, made[1]), (2, made[1])):
        place("EleutherAI/pythia-2.8b", step, folder)
    out = tmp_path / "results"
    env = {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    for suite, steps in (("pythia-12b", "0,50000"), ("pythia-2.8b", "0,1,2")):
        result = run_cli("scan", suite, "--steps", steps, "--out", str(out), "--quiet", env=env)
        assert result.returncode == 0, result.stderr + result.stdout
    flagged = inductscan.load_results(out).reset_index().groupby(["suite", "step"]).hazard.first()
    assert flagged.isna().to_dict() == {
        ("pythia-12b", 0): True,
        ("pythia-12b", 50000): False,
        ("pythia-2.8b", 0): True,
        ("pythia-2.8b", 1): False,
        ("pythia-2.8b", 2): False,
    }
    assert "shares a shard with the final model" in flagged[("pythia-12b", 50000)]


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


def test_runs_that_share_a_seed_stay_apart_in_plots_and_tables(runner, tmp_path):
    first, second = trainer_run(tmp_path / "exp1" / "output", 1), trainer_run(tmp_path / "exp2" / "output", 2)
    out = tmp_path / "results"
    scan(runner, first, out)
    scan(runner, second, out)
    frame = inductscan.load_results(out)
    runs = sorted(set(frame.index.get_level_values("run")))
    assert len(runs) == 2 and set(frame.index.get_level_values("seed")) == {0}
    figure = inductscan.plot_heatmap(frame, run=runs[1])
    one_run = (
        frame.xs(runs[1], level="run")
        .reset_index()
        .pivot_table(index=["layer", "head"], columns="step", values="induction")
    )
    assert (figure.axes[0].images[0].get_array() == one_run.to_numpy()).all()  # that run's heads, not a mean of both
    assert runs[1] in figure.axes[0].get_title()
    table = runner.invoke(main, ["phases", str(out)])
    assert table.exit_code == 0 and all(run in table.output for run in runs), table.output
    repos = frame.reset_index().groupby("run").repo.first()
    shown = runner.invoke(main, ["query", str(out), "--run", runs[0], "--columns", "run,step,layer,head,repo"])
    assert shown.exit_code == 0 and repos[runs[0]] in shown.output and repos[runs[1]] not in shown.output


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


def test_checkpoints_a_folder_holds_under_one_suite_are_not_scored_again_under_another(tmp_path):
    from inductscan.metrics import HEAD_METRICS
    from inductscan.probe import ProbeConfig, TokenSpec, make_probe
    from inductscan.results.write import write_scores
    from inductscan.suites import local_suite

    folder = make_local_suite(tmp_path / "suite", seeds=(0,), steps=(0, 10))
    run = local_suite(folder).runs[0]
    out = tmp_path / "out"  # rows of the same checkpoints, as the toy suite records its seeds' folders
    identity = dict(suite="toy", repo=run.repo, run=run.name, revision="checkpoint-0", seed=0, step=0, tokens=0)
    scores = {name: torch.zeros(2, 4, dtype=torch.float64) for name in HEAD_METRICS}
    checkpoint = {"loss_first": 5.0, "loss_repeat": 4.0, "in_context_gain": 1.0}
    probe = make_probe(ProbeConfig(length=8, batch=2), TokenSpec(0, 96))
    write_scores(out, identity, scores, checkpoint, weights_sha256="0" * 64, probe=probe, dtype="float32")
    result = run_cli("scan", str(folder), "--out", str(out), "--quiet", "--probe-length", "8")
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"already holds the checkpoints of {run.repo} as suite toy" in result.stderr
    assert "would count twice" in result.stderr
    assert len(inductscan.load_results(out)) == 8  # nothing scored again


def test_a_run_never_counts_tokens_two_ways(tmp_path):
    folder = make_local_suite(tmp_path / "suite", seeds=(0,), steps=(0, 10, 20))
    out = tmp_path / "out"
    first = run_cli("scan", str(folder), "--out", str(out), "--quiet", "--probe-length", "8", "--steps", "0,10",
                    "--tokens-per-step", "2048")  # fmt: skip
    assert first.returncode == 0, first.stderr
    again = run_cli("scan", str(folder), "--out", str(out), "--quiet", "--probe-length", "8")
    assert again.returncode == 2, again.stdout + again.stderr
    assert "with 2,048 tokens per step (step 10: 20,480 tokens), this scan counts 0 a step" in again.stderr
    assert "scan with --tokens-per-step 2048" in again.stderr
    resumed = run_cli("scan", str(folder), "--out", str(out), "--quiet", "--probe-length", "8",
                      "--tokens-per-step", "2048")  # fmt: skip
    assert resumed.returncode == 0 and "1 scored, 2 already done" in resumed.stdout, resumed.stdout + resumed.stderr
    tokens = inductscan.query(out, best=True, columns=["step", "tokens"])
    assert tokens["tokens"].tolist() == [0, 20_480, 40_960]
