"""Per-token losses (scan --token-losses) of real tiny checkpoints: checked against transformers' own
cross-entropy, resumed and killed like the scores, and read by the comparison commands and plots."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F

import inductscan
from inductscan.errors import ConfigError, OutputError
from inductscan.icl import IclConfig
from inductscan.results import token_losses
from inductscan.results.layout import read_run
from inductscan.suites import local_run_name
from inductscan.timing_compare import load_several
from tests.conftest import REPO_ROOT, invoke_cli, make_local_suite
from tests.results.test_layout import KILL_AT_RENAME

SEEDS, STEPS = (0, 1), (0, 10, 20, 40, 80, 160, 320)
EXAMPLES, CONTEXT = 4, 64
ICL = ("--icl-examples", str(EXAMPLES), "--icl-context", str(CONTEXT))


def token_file(path: Path) -> Path:
    generator = torch.Generator().manual_seed(0)
    rows = [torch.randint(0, 96, (70,), generator=generator).tolist() for _ in range(6)]
    pq.write_table(pa.table({"input_ids": rows}), path)
    return path


def scan(suite: Path, out: Path, data: Path, *, seeds=None, steps=None, token_losses: bool = True):
    config = inductscan.ScanConfig(
        probe_length=8, icl=IclConfig(str(data), examples=EXAMPLES, context=CONTEXT), token_losses=token_losses
    )
    return inductscan.scan(
        str(suite), out, seeds=seeds, steps=steps, tokens_per_step=100, config=config, progress=False
    )


@pytest.fixture(scope="module")
def scanned(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(suite, results, data): two seeds of seven checkpoints, scanned with --token-losses."""
    root = tmp_path_factory.mktemp("token-losses")
    suite = make_local_suite(root / "suite", seeds=SEEDS, steps=STEPS)
    data = token_file(root / "tokens.parquet")
    summary = scan(suite, root / "results", data)
    assert summary.scored == len(SEEDS) * len(STEPS)
    return suite, root / "results", data


def transformers_losses(checkpoint: Path, ids: torch.Tensor) -> np.ndarray:
    """(examples, context - 1): transformers' forward pass and torch's cross-entropy, per token."""
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(checkpoint, attn_implementation="eager").eval()
    with torch.no_grad():
        logits = model(ids).logits.double()
    return F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none").numpy()


def stored_ids(results: Path) -> torch.Tensor:
    import json

    return torch.tensor(json.loads(next((results / "icl").glob("*.json")).read_text())["ids"])


def test_token_losses_equal_transformers_cross_entropy(scanned):
    suite, results, _ = scanned
    losses = inductscan.load_token_losses(results)
    assert str(losses["loss"].dtype) == "float32" and str(losses["position"].dtype) == "int32"
    assert len(losses) == len(SEEDS) * len(STEPS) * EXAMPLES * (CONTEXT - 1)
    ids = stored_ids(results)
    for seed, step in ((0, 0), (0, 320), (1, 40)):
        rows = losses[(losses.seed == seed) & (losses.step == step)]
        assert rows["tokens"].unique().tolist() == [step * 100]
        assert rows["position"].tolist() == list(range(2, CONTEXT + 1)) * EXAMPLES
        mine = rows.sort_values(["example", "position"])["loss"].to_numpy().reshape(EXAMPLES, CONTEXT - 1)
        expected = transformers_losses(suite / f"seed{seed}" / f"checkpoint-{step}", ids)
        np.testing.assert_allclose(mine, expected, atol=1e-3)
    curves = inductscan.load_icl_curves(results)  # their mean over the examples is the ICL curve
    for (seed, step), rows in losses.groupby(["seed", "step"]):
        curve = curves[(curves.seed == seed) & (curves.step == step)].set_index("position")["loss"]
        np.testing.assert_allclose(rows.groupby("position")["loss"].mean(), curve, atol=1e-5)
    only = inductscan.load_token_losses(results, seed=1, step=slice(20, 80), position=[2, 64])
    assert sorted(only.step.unique()) == [20, 40, 80] and sorted(only.position.unique()) == [2, 64]


def test_the_side_table_holds_one_float32_per_predicted_token(scanned):
    _, results, _ = scanned
    run = local_run_name(results.parent / "suite" / "seed0")
    assert token_losses.path_of(results, "local", run, 10) == results / "token_losses" / "local" / run / (
        "step-000000010.parquet"
    )  # where the scan writes it; compacted with the run's others when the scan ends
    files = read_run(results / "token_losses" / "local" / run)
    assert files.generation is not None and 10 in files.compacted_steps and files.step_files == {}
    table = pq.read_table(files.compacted, filters=[("step", "=", 10)])
    assert table.num_rows == EXAMPLES * (CONTEXT - 1) and table.schema.field("loss").type == pa.float32()
    assert token_losses.size_per_checkpoint(EXAMPLES, CONTEXT) == EXAMPLES * (CONTEXT - 1) * 4
    assert b'"examples": 4' in table.schema.metadata[b"inductscan.icl"]
    assert token_losses.missing(results).empty


def test_token_losses_without_an_icl_dataset_is_a_usage_error(tmp_path):
    done = invoke_cli("scan", str(tmp_path), "--out", str(tmp_path / "out"), "--token-losses")
    assert done.returncode == 2
    assert done.stderr.strip() == "error: --token-losses stores the losses of the ICL examples: it needs --icl-dataset"
    with pytest.raises(ConfigError):
        inductscan.ScanConfig(token_losses=True)


def test_a_resume_with_token_losses_scores_the_checkpoints_that_lack_them(scanned, tmp_path):
    suite, _, data = scanned
    out = tmp_path / "out"
    scan(suite, out, data, seeds=[0], steps=[0, 10], token_losses=False)
    with pytest.raises(OutputError, match="scan with icl and token_losses"):
        inductscan.load_token_losses(out)
    assert token_losses.missing(out)[["seed", "step"]].values.tolist() == [[0, 0], [0, 10]]
    again = scan(suite, out, data, seeds=[0], steps=[10, 20])
    assert (again.scored, again.already_done) == (2, 0)  # step 10 had scores, not token losses
    assert token_losses.missing(out)[["seed", "step"]].values.tolist() == [[0, 0]]
    drawn = invoke_cli("plot", str(out), "-o", str(tmp_path / "pca.png"), "--kind", "loss-pca")
    assert drawn.returncode == 0, drawn.stderr
    assert drawn.stderr.strip() == (
        f"warning: 1 scored checkpoint(s) of {out} have no token losses (scanned without --token-losses); "
        "a scan with --token-losses adds them"
    )
    third = scan(suite, out, data, seeds=[0], steps=[0, 10, 20])
    assert (third.scored, third.already_done) == (1, 2)
    assert token_losses.missing(out).empty
    assert sorted(inductscan.load_token_losses(out).step.unique()) == [0, 10, 20]
    assert len(inductscan.load_results(out)) == 3 * 3 * 4  # each checkpoint's rows once


def test_a_scan_killed_before_its_scores_file_redoes_the_checkpoint(scanned, tmp_path):
    suite, _, data = scanned
    out = tmp_path / "out"
    arguments = [str(suite), "--out", str(out), "--quiet", "--probe-length", "8", "--seeds", "0", "--steps", "0,10"]
    arguments += ["--icl-dataset", str(data), *ICL, "--token-losses"]
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AT_RENAME, "2", str(tmp_path / "log"), "scan", *arguments],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
    )
    assert killed.returncode == -9, killed.stderr
    run = local_run_name(suite / "seed0")
    assert token_losses.path_of(out, "local", run, 10).is_file()  # written before the scores file
    recorded = token_losses.Recorded(out)
    assert ("local", run, 10) not in recorded and ("local", run, 0) in recorded
    rerun = invoke_cli("scan", *arguments)
    assert rerun.returncode == 0 and "1 scored, 1 already done" in rerun.stdout, rerun.stderr
    assert len(inductscan.load_token_losses(out)) == 2 * EXAMPLES * (CONTEXT - 1)


def test_the_compare_command_lists_the_tokens_two_seeds_disagree_on(scanned):
    _, results, _ = scanned
    losses = inductscan.load_token_losses(results, step=80)
    a = losses[losses.seed == 1].set_index(["example", "position"])["loss"].astype(float)
    b = losses[losses.seed == 0].set_index(["example", "position"])["loss"].astype(float)
    difference = (b - a).to_numpy()  # log p(seed 1) - log p(seed 0)
    expected_r = np.corrcoef(-a.to_numpy(), -b.to_numpy())[0, 1]
    done = invoke_cli("compare", str(results), "--seed", "1,0", "--step", "80", "--top", "3")
    assert done.returncode == 0, done.stderr
    header, columns, *rows = done.stdout.strip().splitlines()
    assert header.startswith(f"seed 1 vs seed 0 at step 80: Pearson r = {expected_r:.4f} over 252 tokens")
    assert columns.split() == [
        "example",
        "position",
        "token",
        "logprob",
        "seed",
        "1",
        "logprob",
        "seed",
        "0",
        "difference",
    ]
    order = np.argsort(-np.abs(difference), kind="stable")[:3]
    ids = stored_ids(results)
    for row, index in zip(rows, order):
        example, position = a.index[index]
        values = row.split()
        assert (int(values[0]), int(values[1]), int(values[2])) == (example, position, int(ids[example, position - 1]))
        assert float(values[-1]) == pytest.approx(difference[index], abs=1e-4)
    scatter = inductscan.seed_scatter(inductscan.load_token_losses(results), seeds=(1, 0), step=80)
    assert scatter.correlation == pytest.approx(expected_r, abs=1e-12)
    bad = invoke_cli("compare", str(results), "--seed", "0,1", "--step", "15")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "step 15 is not a step of both seeds" in bad.stderr


def test_token_plots_hold_the_table(scanned, tmp_path):
    _, results, _ = scanned
    losses = inductscan.load_token_losses(results)
    figure = inductscan.plot_seed_scatter(losses, top=4)
    points = figure.axes[0].collections[0].get_offsets()
    last = losses[losses.step == 320]
    np.testing.assert_allclose(points[:, 0], -last[last.seed == 0]["loss"].to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(points[:, 1], -last[last.seed == 1]["loss"].to_numpy(), rtol=1e-6)
    assert f"r = {np.corrcoef(points[:, 0], points[:, 1])[0, 1]:.3f}" in figure.axes[0].get_title()
    assert len(figure.axes[0].collections[1].get_offsets()) == 4
    figure = inductscan.plot_token_curves(losses, top=5)
    assert len(figure.axes) == 2 and all(len(axes.get_lines()) >= 5 for axes in figure.axes)
    shapes = inductscan.curve_shapes(losses, count=5)
    line = figure.axes[0].get_lines()[0]
    column = shapes.curves["seed 0"].columns[0]
    assert list(line.get_xdata()) == [step * 100 for step in STEPS[1:]]  # step 0 has no log
    np.testing.assert_allclose(line.get_ydata(), shapes.curves["seed 0"][column].to_numpy())
    figure = inductscan.plot_loss_pca(losses)
    analysis = inductscan.loss_pca(losses)
    first = figure.axes[0].get_lines()[0]
    seed0 = analysis.trajectory[analysis.trajectory.run == "seed 0"]
    np.testing.assert_allclose(first.get_xdata(), seed0["pc1"].to_numpy())
    for kind in ("seed-scatter", "token-curves", "loss-pca"):
        done = invoke_cli("plot", str(results), "-o", str(tmp_path / f"{kind}.png"), "--kind", kind, "--top", "3")
        assert done.returncode == 0 and (tmp_path / f"{kind}.png").stat().st_size > 0, done.stderr
    for kind in ("seed-scatter", "token-curves", "loss-pca"):  # a seed not held: named beside those held
        absent = invoke_cli("plot", str(results), "-o", str(tmp_path / "y.png"), "--kind", kind, "--seed", "0,9")
        assert absent.returncode == 2 and "no token losses of seed(s) 9; the table has seeds 0, 1" in absent.stderr
    twice = invoke_cli("plot", str(results), str(results), "-o", str(tmp_path / "x.png"), "--kind", "loss-pca")
    assert twice.returncode == 2 and "--kind loss-pca draws one results folder, got 2" in twice.stderr


def test_several_results_folders_are_one_table_and_a_checkpoint_in_two_is_refused(scanned, tmp_path):
    suite, results, data = scanned
    for seed in SEEDS:
        scan(suite, tmp_path / f"seed{seed}", data, seeds=[seed], steps=list(STEPS), token_losses=False)
    together = load_several([tmp_path / "seed0", tmp_path / "seed1"])
    whole = inductscan.load_results(results)
    columns = ["induction", "prefix_matching", "icl_score", "tokens"]
    assert together[columns].equals(whole[columns])
    one = invoke_cli("phases", str(results), "--format", "csv")
    two = invoke_cli("phases", str(tmp_path / "seed0"), str(tmp_path / "seed1"), "--format", "csv")
    assert one.returncode == 0 and two.stdout == one.stdout, two.stderr
    fraction = invoke_cli("phases", str(results), "--x", "fraction", "--format", "csv")
    assert fraction.returncode == 2 and "pass --total-tokens N" in fraction.stderr
    fraction = invoke_cli("phases", str(results), "--x", "fraction", "--total-tokens", "32000", "--format", "json")
    assert fraction.returncode == 0 and '"total_tokens":32000' in fraction.stdout, fraction.stderr
    shutil.copytree(tmp_path / "seed0", tmp_path / "copy")
    done = invoke_cli(
        "plot", str(tmp_path / "seed0"), str(tmp_path / "copy"), "-o", str(tmp_path / "c.png"), "--kind", "compare"
    )
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "both hold local" in done.stderr and "step 0: give each checkpoint once" in done.stderr
    done = invoke_cli(
        "plot", str(tmp_path / "seed0"), str(tmp_path / "seed1"), "-o", str(tmp_path / "c.png"), "--kind", "compare"
    )
    assert done.returncode == 0 and "compare plot written" in done.stdout, done.stderr
