"""What identifies a run and what a reader gets back: runs in folders of the same name, suites
that share seed numbers, a folder written by 0.1, wrong weight branches flagged, tokens counted one
way, an empty selection, an unwritable plot, and the status of every recorded run."""

from __future__ import annotations

import shutil

import pytest
import torch

import inductscan
from inductscan.cli import main
from inductscan.suites import local_suite

from .conftest import (
    REPO_ROOT,
    invoke_cli,
    make_local_suite,
    one_line,
    place_in_hub_cache,
    run_cli,
    save_checkpoint,
    scan,
    trainer_run,
)
from .test_runner import pythia_like

LEGACY = REPO_ROOT / "tests" / "data" / "results-0.1.0"  # written by inductscan 0.1.0: scores/local/output/


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


def test_checkpoints_a_folder_holds_under_one_suite_are_not_scored_again_under_another(tmp_path):
    from inductscan.metrics import HEAD_METRICS
    from inductscan.probe import ProbeConfig, TokenSpec, make_probe
    from inductscan.results.write import write_scores

    folder = make_local_suite(tmp_path / "suite", seeds=(0,), steps=(0, 10))
    run = local_suite(folder).runs[0]
    out = tmp_path / "out"  # rows of the same checkpoints, as the toy suite records its seeds' folders
    identity = dict(suite="toy", repo=run.repo, run=run.name, revision="checkpoint-0", seed=0, step=0, tokens=0)
    scores = {name: torch.zeros(2, 4, dtype=torch.float64) for name in HEAD_METRICS}
    checkpoint = {"loss_first": 5.0, "loss_repeat": 4.0, "in_context_gain": 1.0}
    probe = make_probe(ProbeConfig(length=8, batch=2), TokenSpec(0, 96))
    write_scores(out, identity, scores, checkpoint, weights_sha256="0" * 64, probe=probe, dtype="float32")
    result = invoke_cli("scan", str(folder), "--out", str(out), "--quiet", "--probe-length", "8")
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"already holds the checkpoints of {run.repo} as suite toy" in result.stderr
    assert "would count twice" in result.stderr
    assert len(inductscan.load_results(out)) == 8  # nothing scored again


def test_a_run_never_counts_tokens_two_ways(tmp_path):
    folder = make_local_suite(tmp_path / "suite", seeds=(0,), steps=(0, 10, 20))
    out = tmp_path / "out"
    first = invoke_cli("scan", str(folder), "--out", str(out), "--quiet", "--probe-length", "8", "--steps", "0,10",
                    "--tokens-per-step", "2048")  # fmt: skip
    assert first.returncode == 0, first.stderr
    again = invoke_cli("scan", str(folder), "--out", str(out), "--quiet", "--probe-length", "8")
    assert again.returncode == 2, again.stdout + again.stderr
    assert "with 2,048 tokens per step (step 10: 20,480 tokens), this scan counts 0 a step" in again.stderr
    assert "scan with --tokens-per-step 2048" in again.stderr
    resumed = invoke_cli("scan", str(folder), "--out", str(out), "--quiet", "--probe-length", "8",
                      "--tokens-per-step", "2048")  # fmt: skip
    assert resumed.returncode == 0 and "1 scored, 2 already done" in resumed.stdout, resumed.stdout + resumed.stderr
    tokens = inductscan.query(out, best=True, columns=["step", "tokens"])
    assert tokens["tokens"].tolist() == [0, 20_480, 40_960]
