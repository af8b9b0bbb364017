"""Figures and the phases/plot commands, from a real scan table (tiny random models, two seeds)."""

from __future__ import annotations

import json

import matplotlib
import numpy as np
import pytest
from click.testing import CliRunner

import inductscan
from inductscan.cli import main
from inductscan.errors import ConfigError
from inductscan.phase_view import amount
from inductscan.plan import ScanConfig, plan
from inductscan.plot_kinds import PLOT_KINDS as PLOTS
from inductscan.plot_kinds import TOKEN_KINDS as TOKEN_PLOTS
from inductscan.runner import run_scan
from inductscan.suites import local_suite
from inductscan.testing.synthetic import write_synthetic_scan
from inductscan.toy import ToyConfig, write_manifest

from .conftest import make_local_suite
from .test_compare import token_table
from .test_phases import TOY_LOG_STEPS, TOY_STEPS, synthetic_table

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
@pytest.mark.parametrize(  # ICL: test_icl.py; per-token losses: results/test_token_losses.py; effects: test_effects.py
    "kind", sorted(kind for kind in PLOTS if not kind.startswith("icl") and kind not in (*TOKEN_PLOTS, "effects"))
)
def test_plot_command_writes_every_kind_in_every_format(scanned, tmp_path, kind, suffix):
    output = tmp_path / f"{kind}{suffix}"
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


def test_a_heatmap_of_several_runs_says_it_draws_the_first(scanned, tmp_path):
    both = inductscan.plot("heatmap", scanned, tmp_path / "both.png")
    assert both.warnings == [
        "warning: a heatmap draws one run, the first of the 2 selected; select one by its seed, suite or run"
    ]
    assert inductscan.plot("heatmap", scanned, tmp_path / "one.png", seed=1).warnings == []


def test_a_run_that_counts_no_tokens_is_left_out_of_a_plot_against_tokens_with_a_warning(scanned, tmp_path):
    import shutil

    mixed = tmp_path / "mixed"
    shutil.copytree(scanned, mixed)
    other = make_local_suite(tmp_path / "other", seeds=(0,), steps=(0, 10))
    summary = run_scan(plan(local_suite(other, name="mine")), mixed, ScanConfig(probe_length=8), progress=False)
    assert summary.scored == 2
    for kind in ("timing", "gain"):
        written = inductscan.plot(kind, mixed, tmp_path / f"{kind}.png")
        assert len(written.warnings) == 1, written.warnings
        assert "counts no tokens" in written.warnings[0] and "left out of a plot against tokens" in written.warnings[0]
        assert "mine" in written.warnings[0]


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
    refused = runner.invoke(main, ["phases", str(scanned), "--metric", "nope"])
    assert refused.exit_code == 2 and "cannot time metric 'nope'" in refused.output
    falling = runner.invoke(main, ["phases", str(scanned), "--metric", "loss_repeat"])  # timed as it falls
    assert falling.exit_code == 0 and "of the fall from the early to the late plateau" in falling.output


def test_plot_refuses_an_output_folder_that_does_not_exist_and_makes_none(scanned, tmp_path):
    output = tmp_path / "missing" / "dir" / "a.png"
    result = CliRunner().invoke(main, ["plot", str(scanned), "-o", str(output)])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert f"the folder {output.parent} does not exist; create it, or choose another -o" in result.output
    assert not (tmp_path / "missing").exists()
    (tmp_path / "a-file").write_text("")
    result = CliRunner().invoke(main, ["plot", str(scanned), "-o", str(tmp_path / "a-file" / "a.png")])
    assert result.exit_code == 2 and "a-file is a file, not a folder" in result.output


@pytest.mark.parametrize(
    "kind, option, applies",
    [
        ("heatmap", ["--threshold", "0.3"], "timing, gain"),
        ("gain", ["--metric", "copying"], "timing, heatmap, seeds, compare"),
        ("timing", ["--x", "fraction"], "compare"),
        ("seeds", ["--total-tokens", "5000"], "compare"),
        ("timing", ["--step", "10"], "seed-scatter"),
        ("heatmap", ["--top", "3"], "seed-scatter, token-curves, loss-pca"),
    ],
)
def test_plot_refuses_an_option_that_does_not_apply_to_its_kind(scanned, tmp_path, kind, option, applies):
    output = tmp_path / "figure.png"
    result = CliRunner().invoke(main, ["plot", str(scanned), "-o", str(output), "--kind", kind, *option])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert f"{option[0]} does not apply to --kind {kind}; it applies to {applies}" in result.output
    assert not output.exists()


def test_options_that_apply_are_drawn(scanned, tmp_path):
    output = tmp_path / "gain.png"
    result = CliRunner().invoke(main, ["plot", str(scanned), "-o", str(output), "--kind", "gain", "--threshold", "2"])
    assert result.exit_code == 0, result.output
    axes = inductscan.plot_in_context_gain(inductscan.load_results(scanned), threshold=2.0).axes[0]
    assert "threshold 2" in [text.get_text() for text in axes.get_legend().get_texts()]
    refused = CliRunner().invoke(main, ["phases", str(scanned), "--total-tokens", "5000"])
    assert refused.exit_code == 2 and "--total-tokens applies only with --x fraction" in refused.output


@pytest.fixture(scope="module")
def uncounted(tmp_path_factory):
    """A scan whose runs count no tokens (a local folder scanned without --tokens-per-step), each
    with a phase change: seed 0 complete, seed 1 still rising at its last checkpoint."""
    root = tmp_path_factory.mktemp("uncounted")
    steps = [step for step in TOY_STEPS if step <= 1200]
    write_synthetic_scan(root / "results", steps=steps, midpoints={0: 300, 1: 1100}, tokens_per_step=0, icl=False)
    return root / "results"


def test_the_phase_table_says_steps_when_no_run_counts_tokens(uncounted):
    result = CliRunner().invoke(main, ["phases", str(uncounted)])
    assert result.exit_code == 0, result.output
    header, columns, complete, rising = result.output.splitlines()[:4]
    assert "tokens seen" not in header
    assert "the training step (interpolated in log steps; these runs count no tokens)" in header
    assert "step " in complete and "still rising at the last checkpoint" in rising


def test_a_fraction_of_training_needs_token_counts(uncounted, tmp_path):
    runner = CliRunner()
    phases = runner.invoke(main, ["phases", str(uncounted), "--x", "fraction", "--total-tokens", "5000"])
    assert phases.exit_code == 2 and phases.output.count("\n") == 1
    assert "synthetic counts no tokens, so its phase change has no fraction of training" in phases.output
    output = tmp_path / "compare.png"
    plot = runner.invoke(
        main,
        ["plot", str(uncounted), "-o", str(output), "--kind", "compare", "--x", "fraction", "--total-tokens", "5000"],
    )
    assert plot.exit_code == 2 and "counts no tokens" in plot.output and not output.exists()


def test_figures_bound_the_midpoint_of_a_run_still_rising_at_its_last_checkpoint(tmp_path):
    steps = [step for step in TOY_STEPS if step <= 1200]
    write_synthetic_scan(tmp_path / "results", steps=steps, midpoints={0: 300, 1: 1100}, icl=False)
    table = inductscan.load_results(tmp_path / "results")
    phases = inductscan.find_phase_changes(table)
    assert list(phases["rising_at_end"]) == [False, True]
    bound = phases.iloc[1]["midpoint_tokens_before"]  # the midpoint lies after the checkpoint before its crossing
    axes = inductscan.plot_timing(table, phases).axes[0]
    midpoints = [line.get_xdata()[0] for line in axes.get_lines() if line.get_label() == "_midpoint"]
    bounds = [line.get_xdata()[0] for line in axes.get_lines() if line.get_label() == "_bound"]
    assert midpoints == pytest.approx([phases.iloc[0]["midpoint_tokens"]]) and bounds == [bound]
    assert len(axes.patches) == 1  # only the complete run has an onset-end span
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    assert "midpoint lies past the arrow (still changing at an edge)" in legend
    seeds = inductscan.plot_seed_comparison(phases).axes[0]
    assert len(seeds.containers) == 1  # an error bar for the complete run only
    marker = [line for line in seeds.get_lines() if line.get_marker() == ">"]
    assert len(marker) == 1 and marker[0].get_xdata()[0] == bound
    texts = [text.get_text() for text in seeds.texts]
    assert texts == [f"midpoint after {amount(bound)}: still rising at the last checkpoint"]
    compare = inductscan.plot_compare(inductscan.compare_timing(table)).axes[0]
    assert [line.get_xdata()[0] for line in compare.get_lines() if line.get_marker() == ">"] == [bound]


def test_timing_axes_label_amounts_not_powers_of_ten():
    # the midpoints span 0.4M-3.5M tokens: matplotlib's own ticks label 10^6 and a few minor ticks
    # in scientific notation; these are 1-2-3-5 amounts, each labelled, none in between
    steps = TOY_STEPS
    table = synthetic_table(
        steps, {(0, 1, 1): np.where(steps >= 200, 0.7, 0.02), (1, 1, 1): np.where(steps >= 1700, 0.6, 0.02)}
    )
    figure = inductscan.plot_seed_comparison(inductscan.find_phase_changes(table))
    figure.canvas.draw()
    axes = figure.axes[0]
    labels = [label.get_text() for label in axes.get_xticklabels() if label.get_text()]
    assert len(labels) >= 3 and all(label[-1] in "kM" and "$" not in label for label in labels)
    assert not [label.get_text() for label in axes.xaxis.get_minorticklabels() if label.get_text()]


def test_icl_curves_put_step_0_at_0_and_label_positions_plainly(tmp_path):
    write_synthetic_scan(tmp_path / "results", steps=TOY_STEPS, midpoints={0: 400})
    curves = inductscan.load_icl_curves(tmp_path / "results")
    figure = inductscan.plot_icl_curves(curves)
    figure.canvas.draw()
    axes, bar = figure.axes
    steps = sorted(curves["step"].unique())
    ticks = [label.get_text() for label in bar.get_yticklabels()]
    assert ticks[0] == "0" and ticks[-1] == f"{steps[-1]:,}" and len(ticks) <= 6
    assert not [label.get_text() for label in bar.yaxis.get_minorticklabels() if label.get_text()]
    first_line = axes.get_lines()[0]  # step 0: the colour bar's first colour, not step 1's
    assert first_line.get_color() == pytest.approx(matplotlib.colormaps["viridis"](0.0))
    positions = [label.get_text() for label in axes.get_xticklabels() if label.get_text()]
    assert positions == ["2", "3", "5", "10", "20", "30", "50"]  # positions 2..64, no overlapping minor labels
    assert not [label.get_text() for label in axes.xaxis.get_minorticklabels() if label.get_text()]


def test_the_icl_plot_names_its_landmarks_and_times_the_fall(tmp_path):
    # on the former log grid: a logistic of width 0.35 still climbs over the dense window (phases says so)
    write_synthetic_scan(tmp_path / "results", steps=TOY_LOG_STEPS, midpoints={0: 400, 1: 900})
    table = inductscan.load_results(tmp_path / "results")
    axes = inductscan.plot_icl_score(table).axes[0]
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    assert "-0.15: above it before the phase change (Olsson et al.)" in legend
    assert "-0.4: below it after the phase change" in legend
    phases = inductscan.find_phase_changes(table, "icl_score")
    midpoints = sorted(line.get_xdata()[0] for line in axes.get_lines() if line.get_label() == "_midpoint")
    assert midpoints == pytest.approx(sorted(phases["midpoint_tokens"]))


def test_the_loss_pca_panel_names_its_tokens_in_words():
    losses = {seed: np.random.default_rng(seed).normal(3, 1, size=(4, 3, 10)) for seed in (0, 1)}
    figure = inductscan.plot_loss_pca(token_table(losses, steps=[10, 20, 40, 80]), top=2)
    text = figure.axes[1].texts[0].get_text()
    assert text.startswith("PC1: the 2 tokens weighing most\nexample ")
    assert "\n\nPC2: the 2 tokens weighing most\n" in text
    assert all(line.startswith(("PC", "example ")) for line in text.splitlines() if line)
    with pytest.raises(ConfigError, match="^top must be >= 1, got 0$"):  # not taken for the default
        inductscan.plot_loss_pca(token_table(losses, steps=[10, 20, 40, 80]), top=0)


def test_a_fraction_of_the_toy_suites_training_comes_from_its_manifest(tmp_path):
    # The toy suite's results name each run's folder (its `repo`); the suite folder above them
    # holds the manifest `inductscan toy-suite` writes, with the training's steps and tokens per step.
    config = ToyConfig(train_steps=3000)
    (tmp_path / "toy").mkdir()
    write_manifest(tmp_path / "toy", config, [0, 1])
    results = tmp_path / "results"
    write_synthetic_scan(
        results, steps=TOY_LOG_STEPS, midpoints={0: 300, 1: 900}, suite="toy", repo=str(tmp_path / "toy")
    )
    whole = 3000 * config.batch * config.context
    result = CliRunner().invoke(main, ["phases", str(results), "--x", "fraction", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [row["total_tokens"] for row in rows] == [whole, whole]
    for row in rows:
        assert row["midpoint_fraction"] == pytest.approx(row["midpoint_tokens"] / whole)
    output = tmp_path / "compare.png"
    plot = CliRunner().invoke(main, ["plot", str(results), "-o", str(output), "--kind", "compare", "--x", "fraction"])
    assert plot.exit_code == 0 and output.is_file(), plot.output
    elsewhere = tmp_path / "moved"  # a toy run whose folder is gone: its training is not known
    write_synthetic_scan(elsewhere, steps=TOY_LOG_STEPS, midpoints={0: 300}, suite="toy", repo=str(tmp_path / "gone"))
    missing = CliRunner().invoke(main, ["phases", str(elsewhere), "--x", "fraction"])
    assert missing.exit_code == 2 and "total training tokens of toy are not catalogued" in missing.output
