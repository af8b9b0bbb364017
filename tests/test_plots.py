"""Figures and the phases/plot commands, from a real scan table (tiny random models, two seeds)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import inductscan
from inductscan.cli import PLOTS, TOKEN_PLOTS, main
from inductscan.plan import ScanConfig, plan
from inductscan.runner import run_scan
from inductscan.suites import local_suite

from .conftest import make_local_suite
from .test_phases import TOY_STEPS, synthetic_table

STEPS = (0, 10, 20, 40)
MAGIC = {".png": b"\x89PNG", ".svg": b"<?xml", ".pdf": b"%PDF"}


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    root = tmp_path_factory.mktemp("plots")
    folder = make_local_suite(root / "suite", seeds=(0, 1), steps=STEPS)
    suite = local_suite(folder, tokens_per_step=1000)
    summary = run_scan(plan(suite), root / "results", ScanConfig(probe_length=8), progress=False)
    assert summary.scored == 8 and not summary.failed
    return root / "results"


def curve_lines(axes):
    return {line.get_label(): line for line in axes.get_lines() if line.get_label().startswith("seed")}


@pytest.mark.parametrize("suffix", sorted(MAGIC))
@pytest.mark.parametrize(  # ICL: test_icl.py; per-token losses: test_token_losses.py
    "kind", sorted(kind for kind in PLOTS if not kind.startswith("icl") and kind not in TOKEN_PLOTS)
)
def test_plot_command_writes_every_kind_in_every_format(scanned, tmp_path, kind, suffix):
    output = tmp_path / "figures" / f"{kind}{suffix}"
    result = CliRunner().invoke(main, ["plot", str(scanned), "-o", str(output), "--kind", kind])
    assert result.exit_code == 0, result.output
    assert str(output) in result.output
    assert output.read_bytes().startswith(MAGIC[suffix])


def test_plot_command_refuses_an_unknown_image_format(scanned, tmp_path):
    result = CliRunner().invoke(main, ["plot", str(scanned), "-o", str(tmp_path / "timing.jpg")])
    assert result.exit_code == 2 and "name it .png, .svg or .pdf" in result.output


def test_timing_figure_has_a_line_per_seed_on_a_log_token_axis(scanned):
    frame = inductscan.load_results(scanned)
    axes = inductscan.plot_timing(frame).axes[0]
    lines = curve_lines(axes)
    assert sorted(lines) == ["seed 0", "seed 1"]
    for seed, line in lines.items():
        expected = frame.xs(int(seed.split()[1]), level="seed").groupby("step")["induction"].max()
        np.testing.assert_array_equal(line.get_xdata(), [step * 1000 for step in STEPS[1:]])  # step 0: no log
        np.testing.assert_allclose(line.get_ydata(), expected.loc[list(STEPS[1:])])
    assert axes.get_xscale() == "log"
    assert "tokens seen" in axes.get_xlabel() and "induction" in axes.get_ylabel() and axes.get_title()
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    assert {"seed 0", "seed 1", "threshold 0.4"} <= set(legend)


def test_in_context_gain_figure_plots_nats_per_seed(scanned):
    frame = inductscan.load_results(scanned)
    axes = inductscan.plot_in_context_gain(frame).axes[0]
    lines = curve_lines(axes)
    assert sorted(lines) == ["seed 0", "seed 1"]
    gain = frame.xs(0, level="seed").groupby("step")["in_context_gain"].first()
    np.testing.assert_allclose(lines["seed 0"].get_ydata(), gain.loc[list(STEPS[1:])])
    assert "nats" in axes.get_ylabel() and axes.get_xscale() == "log"


def test_heatmap_has_every_head_against_every_step(scanned):
    frame = inductscan.load_results(scanned)
    figure = inductscan.plot_heatmap(frame, seed=1)
    axes = figure.axes[0]
    image = axes.get_images()[0].get_array()
    assert image.shape == (3 * 4, len(STEPS))  # layer.head rows, checkpoint columns
    expected = frame.xs(1, level="seed")["induction"].unstack("step")  # (layer, head) x step
    np.testing.assert_allclose(np.asarray(image), expected.to_numpy())
    assert [label.get_text() for label in axes.get_yticklabels()][:2] == ["0.0", "0.1"]
    assert "seed 1" in axes.get_title() and axes.get_xlabel() and axes.get_ylabel()
    assert "induction" in figure.axes[1].get_ylabel()  # the colour bar


def test_seed_comparison_names_runs_without_a_phase_change(scanned):
    phases = inductscan.find_phase_changes(inductscan.load_results(scanned))
    axes = inductscan.plot_seed_comparison(phases).axes[0]
    assert [label.get_text() for label in axes.get_yticklabels()] == ["seed 0", "seed 1"]
    assert [text.get_text() for text in axes.texts] == ["no phase change in the scanned range"] * 2


def test_figures_mark_the_phase_change_of_each_run():
    steps = TOY_STEPS
    table = synthetic_table(
        steps, {(0, 1, 1): np.where(steps >= 1000, 0.7, 0.02), (1, 1, 1): np.where(steps >= 2050, 0.6, 0.02)}
    )
    phases = inductscan.find_phase_changes(table)
    axes = inductscan.plot_timing(table, phases).axes[0]
    midpoints = [line for line in axes.get_lines() if line.get_label() == "_midpoint"]
    assert sorted(line.get_xdata()[0] for line in midpoints) == pytest.approx(sorted(phases["midpoint_tokens"]))
    assert len(axes.patches) == 2  # one onset-end span per run
    comparison = inductscan.plot_seed_comparison(phases).axes[0]
    assert len(comparison.containers) == 2 and not comparison.texts  # an error bar per run
    centre = comparison.containers[0].lines[0].get_xdata()[0]
    assert centre == pytest.approx(phases["midpoint_tokens"].iloc[0])


def test_phases_command_formats(scanned):
    runner = CliRunner()
    table = runner.invoke(main, ["phases", str(scanned)])
    assert table.exit_code == 0, table.output
    assert "no phase change in the scanned range" in table.output and "first >= 0.4" in table.output
    rows = json.loads(runner.invoke(main, ["phases", str(scanned), "--per-head", "--format", "json"]).output)
    assert len(rows) == 2 * 3 * 4 and {"layer", "head", "midpoint_tokens", "note"} <= set(rows[0])
    csv = runner.invoke(main, ["phases", str(scanned), "--seed", "1", "--format", "csv"]).output.splitlines()
    assert len(csv) == 2 and csv[0].startswith("suite,run,seed,metric")
    refused = runner.invoke(main, ["phases", str(scanned), "--metric", "loss_first"])
    assert refused.exit_code == 2 and "falls as induction forms" in refused.output
