"""Phase-change timing on curves whose answer is known: logistics, flat noise, coarse steps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import inductscan
from inductscan import phases
from inductscan.errors import ConfigError
from inductscan.suites import get_suite
from inductscan.toy import ToyConfig

PYTHIA_STEPS = np.array(get_suite("pythia-160m").steps)  # 0, 1, 2, 4, ..., 512, 1000, 2000, ..., 143000
STANFORD_STEPS = np.array(get_suite("stanford-gpt2-small").steps)
TOY_STEPS = np.array(ToyConfig().save_steps())


def test_isotonic_fit_matches_the_min_max_formula():
    # the least-squares non-decreasing fit is max over k <= i of min over j >= i of mean(y[k..j])
    generator = np.random.default_rng(0)
    for _ in range(20):
        values = generator.normal(size=9).cumsum() * generator.choice([-1, 1])
        expected = [
            max(min(values[k : j + 1].mean() for j in range(i, len(values))) for k in range(i + 1))
            for i in range(len(values))
        ]
        np.testing.assert_allclose(phases.isotonic_increasing(values), expected, atol=1e-12)


def test_running_median_keeps_a_steep_step_and_removes_short_dips():
    positions = np.log(np.arange(1, 15, dtype=float))  # log-spaced: +-25% reaches no neighbour past index 8
    step = np.array([0.0] * 5 + [1.0] * 9)
    np.testing.assert_array_equal(phases.running_median(step, positions), step)
    dipped = step.copy()
    dipped[[8, 9]] = [0.2, 0.1]
    np.testing.assert_array_equal(phases.running_median(dipped, positions), step)
    spiked = step.copy()
    spiked[1] = 0.9
    np.testing.assert_array_equal(phases.running_median(spiked, positions), step)


def test_noise_level_estimates_the_standard_deviation():
    generator = np.random.default_rng(1)
    values = np.concatenate([np.zeros(300), np.ones(300)]) + generator.normal(0, 0.05, 600)
    assert phases.noise_level(values) == pytest.approx(0.05, rel=0.15)  # the jump itself is ignored


def logistic(steps, per_step, *, midpoint, width, noise, seed, early=0.03, late=0.73):
    """A logistic in log tokens (midpoint, width in log tokens) with Gaussian noise."""
    x = np.log(np.maximum(steps * per_step, 1))
    values = early + (late - early) / (1 + np.exp(-(x - midpoint) / width))
    return values + np.random.default_rng(seed).normal(0, noise, len(steps))


def interval_around(tokens, truth):
    """The checkpoint interval that holds ``truth``, in log tokens."""
    after = np.searchsorted(tokens, truth)
    return np.log(tokens[after]) - np.log(tokens[after - 1])


@pytest.mark.parametrize(
    "steps, per_step, midpoint_step, width, noise",
    [
        (TOY_STEPS, 2048, 400, 0.3, 0.02),
        (PYTHIA_STEPS, 2_097_152, 1500, 0.5, 0.02),
        (PYTHIA_STEPS, 2_097_152, 30_000, 0.3, 0.02),
        (STANFORD_STEPS, 524_288, 3000, 0.4, 0.01),
        (STANFORD_STEPS, 524_288, 60_000, 0.3, 0.01),
    ],
)
@pytest.mark.parametrize("seed", range(5))
def test_noisy_logistic_with_dips_is_timed_within_one_checkpoint_interval(steps, per_step, midpoint_step, width,
                                                                           noise, seed):  # fmt: skip
    tokens = steps * per_step
    truth = midpoint_step * per_step
    values = logistic(steps, per_step, midpoint=np.log(truth), width=width, noise=noise, seed=seed)
    rising = np.flatnonzero((values > 0.2) & (values < 0.6))
    values[rising[len(rising) // 2]] -= 0.06  # a small one-checkpoint dip in the middle of the rise
    values[-4:-2] -= 0.25  # a two-checkpoint dip on the late plateau
    row = phases.curve_timing(steps, tokens, values, threshold=0.4, min_rise=0.05)
    assert row["phase_change"] and row["note"] == ""
    error = abs(np.log(row["midpoint_tokens"]) - np.log(truth))
    assert error <= interval_around(tokens, truth)
    assert row["midpoint_step_before"] <= row["midpoint_step"] <= row["midpoint_step_after"]
    assert row["midpoint_tokens"] == pytest.approx(row["midpoint_step"] * per_step)
    assert row["onset_tokens"] < row["midpoint_tokens"] < row["end_tokens"]
    assert row["early"] == pytest.approx(0.03, abs=3 * noise) and row["late"] == pytest.approx(0.73, abs=3 * noise)


@pytest.mark.parametrize(
    "steps, per_step, midpoint_step",
    [(TOY_STEPS, 2048, 400), (PYTHIA_STEPS, 2_097_152, 8000), (STANFORD_STEPS, 524_288, 20_000)],
    ids=["toy", "pythia", "stanford"],
)
def test_onset_and_end_of_a_clean_logistic_are_its_10_and_90_percent_points(steps, per_step, midpoint_step):
    tokens, truth, width = steps * per_step, midpoint_step * per_step, 0.4
    values = logistic(steps, per_step, midpoint=np.log(truth), width=width, noise=0.0, seed=0)
    row = phases.curve_timing(steps, tokens, values, threshold=0.4, min_rise=0.05)
    # the logistic's 10% and 90% points lie log(9) widths either side of its midpoint
    for name, offset in (("onset", -np.log(9) * width), ("midpoint", 0.0), ("end", np.log(9) * width)):
        expected = truth * np.exp(offset)
        assert abs(np.log(row[f"{name}_tokens"] / expected)) <= interval_around(tokens, expected), name
        assert row[f"{name}_tokens_before"] <= row[f"{name}_tokens"] <= row[f"{name}_tokens_after"]


@pytest.mark.parametrize("noise", [0.0, 0.005, 0.03])
@pytest.mark.parametrize("steps", [TOY_STEPS, PYTHIA_STEPS, STANFORD_STEPS], ids=["toy", "pythia", "stanford"])
def test_a_flat_curve_has_no_phase_change(steps, noise):
    values = 0.05 + np.random.default_rng(2).normal(0, noise, len(steps))
    row = phases.curve_timing(steps, steps * 1000, values, threshold=0.4, min_rise=0.05)
    assert not row["phase_change"]
    assert row["note"] == phases.NO_CHANGE
    assert "midpoint_step" not in row and row["first_above_threshold_step"] is pd.NA


def test_a_step_on_the_coarse_pythia_grid_is_bracketed_by_its_two_checkpoints():
    values = np.where(PYTHIA_STEPS <= 4000, 0.02, 0.8)
    row = phases.curve_timing(PYTHIA_STEPS, PYTHIA_STEPS * 2_097_152, values, threshold=0.4, min_rise=0.05)
    assert row["phase_change"] and row["note"] == ""
    for name in phases.LEVELS:
        assert (row[f"{name}_step_before"], row[f"{name}_step_after"]) == (4000, 5000)
        assert 4000 < row[f"{name}_step"] < 5000
    assert row["onset_step"] < row["midpoint_step"] < row["end_step"]
    assert row["midpoint_step"] == pytest.approx(np.sqrt(4000 * 5000))  # halfway in log steps
    assert row["first_above_threshold_step"] == 5000
    assert row["first_above_threshold_tokens"] == 5000 * 2_097_152
    # in the power-of-two stretch: between 512 and 1000
    values = np.where(PYTHIA_STEPS <= 512, 0.0, 1.0)
    row = phases.curve_timing(PYTHIA_STEPS, PYTHIA_STEPS * 2_097_152, values, threshold=0.4, min_rise=0.05)
    assert (row["midpoint_step_before"], row["midpoint_step_after"]) == (512, 1000)


def test_unobserved_plateaus_are_said_and_step_zero_has_no_logarithm():
    steps = np.array([0, 10, 20, 40, 80])
    rises_at_once = phases.curve_timing(steps, steps * 8, np.array([0.0, 0.9, 0.9, 0.9, 0.9]), threshold=0.4,
                                        min_rise=0.05)  # fmt: skip
    assert rises_at_once["phase_change"] and phases.EARLY_UNSEEN in rises_at_once["note"]
    assert (rises_at_once["midpoint_step_before"], rises_at_once["midpoint_step_after"]) == (0, 10)
    assert np.isnan(rises_at_once["midpoint_step"]) and np.isnan(rises_at_once["midpoint_tokens"])
    still_rising = phases.curve_timing(steps, steps * 8, np.array([0.0, 0.0, 0.0, 0.1, 0.9]), threshold=0.4,
                                       min_rise=0.05)  # fmt: skip
    assert phases.LATE_UNSEEN in still_rising["note"]
    too_few = phases.curve_timing(steps[:2], steps[:2], np.array([0.0, 1.0]), threshold=0.4, min_rise=0.05)
    assert not too_few["phase_change"] and "needs 3 checkpoints" in too_few["note"]


def synthetic_table(steps, curves: dict[tuple[int, int, int], np.ndarray], per_step=100) -> pd.DataFrame:
    """A table shaped like load_results': curves keyed by (seed, layer, head)."""
    rows = []
    for (seed, layer, head), values in curves.items():
        for step, value in zip(steps, values):
            rows.append({"seed": seed, "step": step, "layer": layer, "head": head, "suite": "synthetic",
                         "run": f"seed{seed}", "tokens": step * per_step, "induction": value,
                         "in_context_gain": 4 * value})  # fmt: skip
    return pd.DataFrame(rows).set_index(["seed", "step", "layer", "head"]).sort_index()


def test_find_phase_changes_per_run_follows_the_best_head_and_per_head_names_the_heads():
    steps = TOY_STEPS
    rise = np.where(steps >= 1000, 0.7, 0.02)
    later = np.where(steps >= 2050, 0.5, 0.03)
    flat = np.full(len(steps), 0.04)
    table = synthetic_table(steps, {(0, 0, 0): flat, (0, 1, 1): rise, (0, 1, 0): later, (1, 0, 0): flat})
    runs = inductscan.find_phase_changes(table)
    assert list(runs["seed"]) == [0, 1]
    seed0, seed1 = runs.iloc[0], runs.iloc[1]
    assert seed0["phase_change"] and (seed0["midpoint_step_before"], seed0["midpoint_step_after"]) == (960, 1160)
    assert not seed1["phase_change"] and seed1["note"] == phases.NO_CHANGE
    heads = inductscan.find_phase_changes(table, per_head=True)
    changed = heads[heads["phase_change"]]
    assert set(zip(changed["seed"], changed["layer"], changed["head"])) == {(0, 1, 1), (0, 1, 0)}
    later_row = changed[changed["head"] == 0].iloc[0]
    assert (later_row["midpoint_step_before"], later_row["midpoint_step_after"]) == (1700, 2050)
    assert later_row["first_above_threshold_step"] == 2050
    gain = inductscan.find_phase_changes(table, "in_context_gain", threshold=2.0)
    assert gain.iloc[0]["late"] == pytest.approx(2.8) and gain.iloc[0]["first_above_threshold_step"] == 1160


def test_metrics_that_cannot_be_timed_are_refused():
    table = synthetic_table(TOY_STEPS, {(0, 0, 0): np.zeros(len(TOY_STEPS))})
    with pytest.raises(ConfigError, match="loss_repeat falls"):
        inductscan.find_phase_changes(table.assign(loss_repeat=1.0), "loss_repeat")
    with pytest.raises(ConfigError, match="checkpoint score"):
        inductscan.find_phase_changes(table, "in_context_gain", per_head=True)
    with pytest.raises(ConfigError, match="min_rise"):
        inductscan.find_phase_changes(table, min_rise=-1)


def test_readable_view_shows_tokens_and_brackets():
    steps = TOY_STEPS
    table = synthetic_table(steps, {(0, 1, 1): np.where(steps >= 1000, 0.7, 0.02)}, per_step=1_000_000)
    view = phases.readable(inductscan.find_phase_changes(table))
    assert view.iloc[0]["midpoint"].endswith("(steps 960-1160)")
    assert view.iloc[0]["midpoint"].split()[0].endswith("B")  # ~1.06e9 tokens
    assert view.iloc[0]["first >= 0.4"] == "step 1160"
