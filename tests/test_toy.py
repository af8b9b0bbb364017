"""The toy suite: its data, its schedule, and (slow) a real phase change in every seed."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

import inductscan
from inductscan.errors import ConfigError
from inductscan.plan import ScanConfig, plan
from inductscan.runner import run_scan
from inductscan.suites import local_suite
from inductscan.toy import ToyConfig, build_toy_suite, make_batch
from tests.conftest import REPO_ROOT, invoke_cli


def test_batches_hold_copied_segments_after_a_bos():
    config = ToyConfig()
    ids = make_batch(config, torch.Generator().manual_seed(0))
    assert ids.shape == (config.batch, config.context)
    assert (ids[:, 0] == 0).all() and (ids[:, 1:] > 0).all() and (ids < config.vocab).all()
    # each row repeats some n-gram of length >= segment_min at a later position (random tokens rarely do)
    n = config.segment_min
    for row in ids.tolist():
        grams = [tuple(row[i : i + n]) for i in range(1, len(row) - n + 1)]
        assert len(grams) > len(set(grams))
    again = make_batch(config, torch.Generator().manual_seed(0))
    assert torch.equal(ids, again)  # the explicit generator makes it reproducible


# 10 x 300^(k/30) for k = 0..30, rounded to tens from 100 on: the log-spaced part of the schedule
LOG_GRID = [0, 10, 12, 15, 18, 21, 26, 31, 38, 46, 55, 67, 81, 98, 120, 140, 170, 210, 250, 310, 370, 450, 540]
LOG_GRID += [660, 790, 960, 1160, 1400, 1700, 2050, 2480, 3000]
FORMER_SETTINGS = ("layers", "d_model", "heads", "vocab", "context", "init_std", "mlp_width", "learning_rate")
FORMER_SETTINGS += ("batch", "segments", "segment_min", "segment_max", "train_steps")


def test_saved_steps_are_log_spaced_and_dense_where_the_heads_form():
    steps = ToyConfig().save_steps()
    assert steps[0] == 0 and steps[-1] == ToyConfig().train_steps == 3000
    # outside the window 1600..2600 the log grid (up to 1400, then 3000); inside it every 25 steps
    assert [step for step in steps if not 1600 <= step <= 2600] == LOG_GRID[:28] + [3000]
    assert [step for step in steps if 1600 <= step <= 2600] == [1600 + 25 * k for k in range(41)]
    assert len(steps) == 28 + 41 + 1
    gaps = [b / a for a, b in zip(steps[1:], steps[2:])]
    assert all(1.0 < gap < 1.5 for gap in gaps)


def test_the_dense_window_stops_where_training_does_and_the_last_step_stays():
    # 1000 steps end before the window: the log grid alone, 10 x 100^(k/30) for k = 0..30
    short_grid = [0, 10, 12, 14, 16, 18, 22, 25, 29, 34, 40, 46, 54, 63, 74, 86, 100, 120, 140, 160, 180, 220]
    short_grid += [250, 290, 340, 400, 460, 540, 630, 740, 860, 1000]
    assert ToyConfig(train_steps=1000).save_steps() == short_grid
    cut = ToyConfig(train_steps=2010).save_steps()  # 2010 lies inside the window: kept as the last step
    assert cut[-4:] == [1950, 1975, 2000, 2010] and cut.count(2010) == 1
    assert ToyConfig(train_steps=2000).save_steps()[-2:] == [1975, 2000]
    with pytest.raises(ConfigError, match="dense_from <= dense_to"):
        ToyConfig(dense_from=2000, dense_to=1000)
    with pytest.raises(ConfigError, match="dense_every >= 1"):
        ToyConfig(dense_every=0)


def test_a_seed_saved_on_the_former_schedule_is_trained_again(tmp_path):
    # A seed trained before the dense window existed records 32 log-spaced checkpoints and no window:
    # another setting, so its folder goes (none of its checkpoints may pass for the new schedule's).
    config = ToyConfig(train_steps=10)
    folder = tmp_path / "suite" / "seed0"
    (folder / "checkpoint-1160").mkdir(parents=True)
    former = {name: value for name, value in dataclasses.asdict(config).items() if name in FORMER_SETTINGS}
    (folder / "training.json").write_text(json.dumps({"config": former | {"saved_checkpoints": 32}, "seed": 0}))
    assert build_toy_suite(tmp_path / "suite", [0], config, progress=False) == [0]
    assert sorted(path.name for path in folder.glob("checkpoint-*")) == ["checkpoint-0", "checkpoint-10"]
    assert build_toy_suite(tmp_path / "suite", [0], config, progress=False) == []  # now it is kept


@pytest.fixture(scope="module")
def toy_results(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    build_toy_suite(root / "suite", [0, 1, 2], ToyConfig(), jobs=3, progress=False)
    suite = local_suite(root / "suite")
    summary = run_scan(plan(suite), root / "results", ScanConfig(), progress=False)
    assert summary.scored == 3 * len(ToyConfig().save_steps()) and not summary.failed
    return root


@pytest.mark.slow
def test_every_seed_has_a_phase_change(toy_results):
    best = inductscan.query(toy_results / "results", best=True)
    assert set(best.suite) == {"toy"}
    for seed, run in best.groupby("seed"):
        run = run.sort_values("step")
        first, last = run.iloc[0], run.iloc[-1]
        assert first.step == 0 and first.induction < 0.1, seed
        assert last.induction > 0.4, seed
        assert last.in_context_gain - first.in_context_gain > 2.0, seed  # nats
        assert last.tokens == last.step * 32 * 64


@pytest.mark.slow
def test_toy_checkpoints_load_with_from_pretrained(toy_results):
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(toy_results / "suite" / "seed0" / "checkpoint-0")
    assert model.config.n_layer == 2 and model.config.vocab_size == 256
    assert all((parameter == 0).all() for name, parameter in model.named_parameters() if ".mlp." in name)


@pytest.mark.slow
def test_each_seed_is_timed_between_its_last_low_and_first_high_checkpoint(toy_results):
    results = inductscan.load_results(toy_results / "results")
    timing = inductscan.find_phase_changes(results).set_index("seed")
    best = inductscan.query(toy_results / "results", best=True)
    assert sorted(timing.index) == [0, 1, 2]
    for seed, run in best.groupby("seed"):
        row = timing.loc[seed]
        last_low = run[run.induction < 0.1].step.max()
        first_high = run[run.induction > 0.4].step.min()
        assert row.phase_change and row.note == "", seed
        assert last_low <= row.midpoint_step_before and row.midpoint_step_after <= first_high, seed
        assert last_low < row.midpoint_step < first_high, seed
        assert row.first_above_threshold_step == run[run.induction >= 0.4].step.min()
        # the dense window of the schedule: the rise is drawn through checkpoints, not across one interval
        assert run.step.between(row.onset_step, row.end_step).sum() >= 5, seed
    # per head: the heads that change are exactly the ones that end as induction heads
    heads = inductscan.find_phase_changes(results, per_head=True)
    changed = set(map(tuple, heads[heads.phase_change][["seed", "layer", "head"]].to_numpy()))
    final = results.xs(3000, level="step").reset_index()
    carriers = set(map(tuple, final[final.induction >= 0.4][["seed", "layer", "head"]].to_numpy()))
    assert changed == carriers and len({seed for seed, _, _ in changed}) == 3
    gain = inductscan.find_phase_changes(results, "in_context_gain", threshold=2.0)
    assert gain.phase_change.all() and (gain.late - gain.early > 2.0).all()


@pytest.mark.slow
def test_plots_of_the_toy_suite_mark_every_seed(toy_results, tmp_path):
    from click.testing import CliRunner

    from inductscan.cli import main
    from inductscan.plot_kinds import PLOT_KINDS as PLOTS
    from inductscan.plot_kinds import TOKEN_KINDS as TOKEN_PLOTS

    results = toy_results / "results"
    drawn = [kind for kind in PLOTS if not kind.startswith("icl") and kind not in (*TOKEN_PLOTS, "effects")]
    for kind in drawn:  # ICL: below; effects: test_effects.py
        output = tmp_path / f"{kind}.png"
        outcome = CliRunner().invoke(main, ["plot", str(results), "-o", str(output), "--kind", kind])
        assert outcome.exit_code == 0 and output.stat().st_size > 10_000, outcome.output
    timing = inductscan.plot_timing(inductscan.load_results(results)).axes[0]
    seeds = [line for line in timing.get_lines() if line.get_label().startswith("seed")]
    midpoints = [line for line in timing.get_lines() if line.get_label() == "_midpoint"]
    assert [line.get_label() for line in seeds] == ["seed 0", "seed 1", "seed 2"]
    assert len(midpoints) == 3 and len(timing.patches) == 3 and timing.get_xscale() == "log"
    table = CliRunner().invoke(main, ["phases", str(results)])
    assert table.exit_code == 0 and table.output.count("(steps ") == 3 * 3


@pytest.mark.slow
def test_icl_score_on_the_toys_own_sequences(toy_results, tmp_path):
    """Olsson et al.'s ICL score on text from the toy's training distribution: about 0 before
    training, clearly negative after the phase change, and equal to transformers' own losses."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch.nn.functional as F
    from transformers import GPT2LMHeadModel

    config = ToyConfig()
    ids = make_batch(dataclasses.replace(config, batch=64), torch.Generator().manual_seed(123))
    pq.write_table(pa.table({"input_ids": ids.tolist()}), tmp_path / "toy.parquet")
    last = config.save_steps()[-1]
    done = invoke_cli(
        "scan",
        str(toy_results / "suite"),
        "--seeds",
        "0",
        "--steps",
        f"0,{last}",
        "--quiet",
        "--out",
        str(tmp_path / "out"),
        "--icl-dataset",
        str(tmp_path / "toy.parquet"),
        "--icl-context",
        "64",
        "--icl-examples",
        "64",
    )
    assert done.returncode == 0, done.stderr
    score = inductscan.load_results(tmp_path / "out").groupby("step")["icl_score"].first()
    # At step 0 the loss hardly depends on position: what is left is the sampling noise of 64
    # examples (about 0.1 nats). Olsson et al.: above -0.15 before the change, about -0.4 after.
    print(f"icl_score at step 0: {score[0]:.3f}, at step {last}: {score[last]:.3f}")
    assert -0.15 < score[0] < 0.25
    assert score[last] < -0.5
    model = GPT2LMHeadModel.from_pretrained(toy_results / "suite" / "seed0" / f"checkpoint-{last}").eval()
    with torch.no_grad():
        logits = model(ids).logits.double()
    curve = F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none").mean(dim=0)
    assert score[last] == pytest.approx((curve[62 - 2] - curve[6 - 2]).item(), abs=1e-5)
    for kind in ("icl", "icl-curves"):
        drawn = invoke_cli("plot", str(tmp_path / "out"), "-o", str(tmp_path / f"{kind}.png"), "--kind", kind)
        assert drawn.returncode == 0, drawn.stderr
        assert (tmp_path / f"{kind}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_a_toy_scan_on_ray_gives_the_local_table(toy_results, tmp_path, ray_alone):
    import ray

    from inductscan.distributed import RayExecutor, RayOptions

    suite = local_suite(toy_results / "suite")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        summary = run_scan(
            plan(suite, seeds=[0]), tmp_path / "ray", ScanConfig(), progress=False, executor=RayExecutor(RayOptions())
        )
    finally:
        ray.shutdown()
    assert summary.scored == len(ToyConfig().save_steps()) and not summary.failed
    on_ray = inductscan.load_results(tmp_path / "ray").drop(columns=["scored_at"])
    local = inductscan.load_results(toy_results / "results", seed=0).drop(columns=["scored_at"])
    pd.testing.assert_frame_equal(on_ray, local)


def readme_python_example() -> str:
    """The first code block of README.md's "From Python" section, as a user would paste it."""
    text = (REPO_ROOT / "README.md").read_text().split("## From Python", 1)[1]
    lines = text.split("\n    import inductscan\n", 1)[1].splitlines()
    block = ["import inductscan"] + [
        line[4:] for line in itertools.takewhile(lambda line: line.startswith("    "), lines)
    ]
    return "\n".join(block)


def toy_home(trained: Path, home: Path, steps: int = 4) -> Path:
    """A toy suite home with the trained seeds' first and last ``steps // 2`` checkpoints (links to
    them): `inductscan toy-suite` finds every seed trained, and a scan of it takes seconds."""
    home.mkdir()
    shutil.copy(trained / "inductscan-suite.json", home)
    for seed in sorted(trained.glob("seed*")):
        (home / seed.name).mkdir()
        shutil.copy(seed / "training.json", home / seed.name)
        folders = sorted(seed.glob("checkpoint-*"), key=lambda folder: int(folder.name.split("-")[1]))
        for folder in folders[: steps // 2] + folders[-(steps // 2) :]:
            (home / seed.name / folder.name).symlink_to(folder)
    return home


@pytest.mark.slow
def test_after_make_demo_scan_toy_and_the_readmes_python_example_work(toy_results, tmp_path):
    """One place for the toy suite: `make demo` trains it where `inductscan scan toy` and
    inductscan.scan("toy") look (its home, here INDUCTSCAN_TOY_DIR: four checkpoints of each seed
    the fixture trained, so nothing is trained again)."""
    env = {**os.environ, "INDUCTSCAN_TOY_DIR": str(toy_home(toy_results / "suite", tmp_path / "home"))}
    bin_dir, build = Path(sys.executable).parent, tmp_path / "build"
    dry = subprocess.run(["make", "-n", "demo", f"DEMO={build}", f"BIN={bin_dir}"], cwd=REPO_ROOT,
                         capture_output=True, text=True, check=True)  # fmt: skip
    commands = [line for line in dry.stdout.splitlines() if line.startswith(f"{bin_dir}/inductscan ")]
    assert [command.split()[1] for command in commands] == ["toy-suite", "scan", "query", "phases", "plot"]
    assert str(build) not in commands[0]  # trained into the toy suite's home, not into the demo's folder
    assert commands[1].split()[1:3] == ["scan", "toy"]  # and scanned from there, by name
    for command in commands:
        done = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert done.returncode == 0, command + done.stdout + done.stderr
        if command.split()[1] == "toy-suite":
            assert "0 seed(s) trained, 3 already there" in done.stdout
        if command.split()[1] == "scan":
            assert "12 scored" in done.stdout
    assert (build / "toy-timing.png").stat().st_size > 10_000
    example = subprocess.run([sys.executable, "-c", readme_python_example()], cwd=tmp_path, env=env,
                             capture_output=True, text=True)  # fmt: skip
    assert example.returncode == 0, example.stderr
    assert "8 scored" in example.stdout  # the README's scan: seeds 0 and 1
    assert len(inductscan.load_results(tmp_path / "results").reset_index().groupby(["seed", "step"])) == 2 * 4
