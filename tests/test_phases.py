"""Phase-change timing on curves whose answer is known: logistics, flat noise, coarse steps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import inductscan
from inductscan import metrics, phase_view, phases, report_html
from inductscan.errors import ConfigError
from inductscan.suites import get_suite
from inductscan.toy import ToyConfig
from inductscan.vocabulary import RUN_KEYS

PYTHIA_STEPS = np.array(get_suite("pythia-160m").steps)  # 0, 1, 2, 4, ..., 512, 1000, 2000, ..., 143000
STANFORD_STEPS = np.array(get_suite("stanford-gpt2-small").steps)
TOY_STEPS = np.array(ToyConfig().save_steps())  # log-spaced, and every 25 steps over 1600..2600
# The toy suite's schedule before its dense window: step 0 and 31 log-spaced steps, 10 .. 3000
TOY_LOG_STEPS = np.array(ToyConfig(dense_from=0, dense_to=0).save_steps())


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
def test_noisy_logistic_with_dips_is_timed_within_one_checkpoint_interval(
    steps, per_step, midpoint_step, width, noise, seed
):
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
    rises_at_once = phases.curve_timing(
        steps, steps * 8, np.array([0.0, 0.9, 0.9, 0.9, 0.9]), threshold=0.4, min_rise=0.05
    )
    assert rises_at_once["phase_change"] and rises_at_once["rising_at_start"] and not rises_at_once["rising_at_end"]
    assert rises_at_once["note"] == (
        "already rising at the first checkpoint (no early plateau seen): scan steps between 0 and 10, if the run has "
        "any, to time it"
    )
    assert (rises_at_once["midpoint_step_before"], rises_at_once["midpoint_step_after"]) == (0, 10)
    assert np.isnan(rises_at_once["midpoint_step"]) and np.isnan(rises_at_once["midpoint_tokens"])
    still_rising = phases.curve_timing(
        steps, steps * 8, np.array([0.0, 0.0, 0.0, 0.1, 0.9]), threshold=0.4, min_rise=0.05
    )
    assert still_rising["rising_at_end"] and not still_rising["rising_at_start"]
    assert still_rising["note"] == "still rising at the last checkpoint (no late plateau seen): scan further to time it"
    assert np.isnan(still_rising["midpoint_step"]) and still_rising["midpoint_step_before"] == 40
    too_few = phases.curve_timing(steps[:2], steps[:2], np.array([0.0, 1.0]), threshold=0.4, min_rise=0.05)
    assert not too_few["phase_change"] and too_few["note"] == "too few checkpoints to time it: 2"


CUT_AT = 1200  # stanford-gpt2-small --step-range 0:1200: 33 checkpoints, ever closer in log steps


@pytest.mark.parametrize("noise, seed", [(0.0, 0), (0.01, 1), (0.02, 2)])
@pytest.mark.parametrize("midpoint_step", [1500, 1800])
def test_a_scan_that_ends_mid_rise_says_still_rising_and_bounds_the_midpoint(noise, seed, midpoint_step):
    # A logistic whose midpoint lies past the last scanned checkpoint: the curve shows its lower
    # part only, and the last checkpoints, all that could show a late plateau, still climb. Its
    # midpoint cannot be timed; the honest answer is a lower bound.
    steps = STANFORD_STEPS[STANFORD_STEPS <= CUT_AT]
    truth = midpoint_step * 524_288
    values = logistic(steps, 524_288, midpoint=np.log(truth), width=0.4, noise=noise, seed=seed)
    row = phases.curve_timing(steps, steps * 524_288, values, threshold=0.4, min_rise=0.05)
    assert row["phase_change"] and row["rising_at_end"] and not row["rising_at_start"]
    assert row["note"] == "still rising at the last checkpoint (no late plateau seen): scan further to time it"
    for level in phases.LEVELS:  # no level is given as if known
        assert np.isnan(row[f"{level}_step"]) and np.isnan(row[f"{level}_tokens"])
    assert row["midpoint_step_before"] < midpoint_step  # "after step N": true
    assert row["late"] < 0.73 - 0.2  # only where the scan stopped


@pytest.mark.parametrize("noise, seed", [(0.0, 0), (0.01, 1), (0.02, 2)])
def test_a_scan_that_starts_mid_rise_says_already_rising_and_bounds_the_midpoint(noise, seed):
    steps = STANFORD_STEPS[STANFORD_STEPS >= 1100]  # --step-range 1100:400000; the midpoint was at step 900
    truth = 900 * 524_288
    values = logistic(steps, 524_288, midpoint=np.log(truth), width=0.5, noise=noise, seed=seed)
    row = phases.curve_timing(steps, steps * 524_288, values, threshold=0.4, min_rise=0.05)
    assert row["phase_change"] and row["rising_at_start"] and not row["rising_at_end"]
    assert (
        row["note"] == "already rising at the first checkpoint (no early plateau seen): scan earlier steps to time it"
    )
    assert np.isnan(row["midpoint_step"]) and row["midpoint_step_after"] > 900  # "before step N": true
    view = phase_view.readable(
        pd.DataFrame([row | {"suite": "s", "run": "r", "seed": 0, "metric": "induction", "threshold": 0.4}])
    )
    assert (
        view.iloc[0]["midpoint"]
        == f"before {phase_view.amount(row['midpoint_tokens_after'])} (step {row['midpoint_step_after']})"
    )
    assert view.iloc[0]["early"].startswith("<= ")


def test_a_scan_cut_mid_rise_through_find_phase_changes_and_readable():
    steps = STANFORD_STEPS[STANFORD_STEPS <= CUT_AT]
    cut = logistic(steps, 524_288, midpoint=np.log(1500 * 524_288), width=0.4, noise=0.01, seed=3)
    whole = logistic(steps, 524_288, midpoint=np.log(300 * 524_288), width=0.4, noise=0.01, seed=4)
    table = synthetic_table(steps, {(0, 0, 0): cut, (1, 0, 0): whole}, per_step=524_288)
    runs = inductscan.find_phase_changes(table)
    assert list(runs["rising_at_end"]) == [True, False] and runs["phase_change"].all()
    assert runs["midpoint_step"].isna().tolist() == [True, False]
    view = phase_view.readable(runs)
    bound = runs.iloc[0]
    assert view.iloc[0]["midpoint"] == (
        f"after {phase_view.amount(bound['midpoint_tokens_before'])} (step {bound['midpoint_step_before']})"
    )
    assert view.iloc[0]["late"] == f">= {bound['late']:.3f}" and "still rising" in view.iloc[0]["note"]
    assert view.iloc[1]["midpoint"].endswith(
        f"(steps {runs.iloc[1]['midpoint_step_before']}-{runs.iloc[1]['midpoint_step_after']})"
    )


def test_a_rise_in_two_stages_gets_a_note_and_a_logistic_none():
    # 0.02 -> 0.25 around step 200, held there, then -> 0.8 around step 30,000 (Pythia's grid): the
    # onset (10% of 0.78) falls in the first stage, the midpoint and end in the second.
    x = np.log(np.maximum(PYTHIA_STEPS, 1))
    values = 0.02 + 0.23 / (1 + np.exp(-(x - np.log(200)) / 0.3)) + 0.55 / (1 + np.exp(-(x - np.log(30_000)) / 0.2))
    row = phases.curve_timing(PYTHIA_STEPS, PYTHIA_STEPS * 2_097_152, values, threshold=0.4, min_rise=0.05)
    assert row["phase_change"] and not (row["rising_at_start"] or row["rising_at_end"])
    assert row["note"] == "two-stage rise: the onset comes long before the midpoint (an early, partial rise)"
    assert row["onset_step"] < 1000 < 20_000 < row["midpoint_step"]  # the bounds are exact: both plateaus seen
    # a large first stage (70% of the rise) around step 300, a small second one around step 15,000
    later = 0.02 + 0.55 / (1 + np.exp(-(x - np.log(300)) / 0.2)) + 0.23 / (1 + np.exp(-(x - np.log(15_000)) / 0.3))
    row = phases.curve_timing(PYTHIA_STEPS, PYTHIA_STEPS * 2_097_152, later, threshold=0.4, min_rise=0.05)
    assert row["note"] == "two-stage rise: the end comes long after the midpoint (a slow, late second rise)"
    one = logistic(PYTHIA_STEPS, 2_097_152, midpoint=np.log(8000 * 2_097_152), width=0.5, noise=0.0, seed=0)
    assert phases.curve_timing(PYTHIA_STEPS, PYTHIA_STEPS * 2_097_152, one, threshold=0.4, min_rise=0.05)["note"] == ""


def test_first_above_threshold_counts_a_value_exactly_at_the_threshold():
    steps = TOY_STEPS
    values = np.select([steps < 540, steps < 960], [0.02, 0.4], 0.7)  # exactly 0.4 from step 540
    row = phases.curve_timing(steps, steps * 10, values, threshold=0.4, min_rise=0.05)
    assert row["first_above_threshold_step"] == 540 and row["first_above_threshold_tokens"] == 5400
    falling = phases.curve_timing(steps, steps, -values, threshold=-0.4, min_rise=0.05, direction="falls")
    assert falling["first_above_threshold_step"] == 540  # at or below -0.4


@pytest.mark.parametrize(
    "values",
    [[0.02, 0.45, 0.87], [0.02, 0.02, 0.87], [0.02, 0.02, 0.45, 0.87], [0.02, 0.87, 0.87, 0.87]],
    ids=["3, midway", "3, step", "4, over two intervals", "4, step"],
)
def test_an_obvious_rise_on_three_or_four_checkpoints_is_too_few_to_time_not_no_change(values):
    # Each curve is non-decreasing, so smoothing leaves it as it is: its plateaus are 0.02 and 0.87,
    # a rise of 0.85, but three differences or fewer cannot tell that from noise.
    steps = TOY_STEPS[-len(values) :]  # 2550, 2575, 2600, 3000: the toy suite's --step-range 2550:3000
    row = phases.curve_timing(steps, steps * 2048, np.array(values), threshold=0.4, min_rise=0.05)
    assert not row["phase_change"]
    assert row["note"] == f"too few checkpoints to time it: {len(values)}"
    assert (row["early"], row["late"]) == pytest.approx((0.02, 0.87))
    assert "midpoint_step" not in row


def test_a_run_cut_to_four_checkpoints_says_too_few_through_find_phase_changes():
    steps = TOY_STEPS[-4:]
    table = synthetic_table(steps, {(0, 1, 1): np.array([0.02, 0.02, 0.45, 0.87]), (1, 1, 1): np.full(4, 0.02)})
    runs = inductscan.find_phase_changes(table)
    assert list(runs["note"]) == ["too few checkpoints to time it: 4", phases.NO_CHANGE]
    assert not runs["phase_change"].any()
    assert list(runs["checkpoints"]) == [4, 4] and runs.iloc[0]["first_above_threshold_step"] == 2600
    # the report's phase table answers "too few checkpoints" for the rise, never "no"
    assert [phases.verdict(row) for _, row in runs.iterrows()] == ["too few checkpoints", "no"]
    labels = [f"seed {seed}" for seed in runs["seed"]]
    table_html = report_html.phase_table(
        runs, "induction", "tokens", list(runs[RUN_KEYS].itertuples(index=False, name=None)), labels
    )
    assert "<td>too few checkpoints</td>" in table_html and table_html.count("<td>no</td>") == 1


def test_a_flat_curve_of_three_checkpoints_still_has_no_phase_change():
    # the running median sets the middle checkpoint to median(0.05, 0.06, 0.05) = 0.05: no rise at all
    steps = TOY_STEPS[-3:]
    row = phases.curve_timing(steps, steps, np.array([0.05, 0.06, 0.05]), threshold=0.4, min_rise=0.05)
    assert not row["phase_change"] and row["note"] == phases.NO_CHANGE
    single = phases.curve_timing(steps[:1], steps[:1], np.array([0.9]), threshold=0.4, min_rise=0.05)
    assert not single["phase_change"] and single["note"] == "too few checkpoints to time it: 1"


DOUBLING_STEPS = 100 * 2 ** np.arange(10)  # 100, 200, ..., 51200: no checkpoint within log 1.25 of another


def test_a_clean_sigmoid_over_most_of_ten_checkpoints_is_timed():
    # A logistic in log steps centred halfway between 1600 and 3200, its 10%-90% rise spanning 4 of
    # the 9 intervals (5%-95%: about 6 of them). It is increasing, so smoothing and the monotone
    # fit leave it as it is, and it is symmetric about its centre (v[9 - i] = 0.89 - v[i]): the
    # plateaus mirror each other, the 50% level is the logistic's own, and it falls halfway
    # (geometrically) between 1600 and 3200. Its 10% level (about 0.115) lies between the values at
    # 400 (0.071) and 800 (0.157); by symmetry its 90% level between 6400 and 12800.
    position = np.log(DOUBLING_STEPS / (1600 * np.sqrt(2)))
    width = 4 * np.log(2) / (2 * np.log(9))  # 10%-90% of a logistic spans 2 ln(9) widths
    values = 0.02 + 0.85 / (1 + np.exp(-position / width))
    row = phases.curve_timing(DOUBLING_STEPS, DOUBLING_STEPS * 1000, values, threshold=0.4, min_rise=0.05)
    assert row["phase_change"] and row["note"] == ""
    assert row["early"] + row["late"] == pytest.approx(0.89)
    assert (row["midpoint_step_before"], row["midpoint_step_after"]) == (1600, 3200)
    assert row["midpoint_step"] == pytest.approx(1600 * np.sqrt(2))
    assert (row["onset_step_before"], row["onset_step_after"]) == (400, 800)
    assert (row["end_step_before"], row["end_step_after"]) == (6400, 12800)
    assert row["onset_step"] * row["end_step"] == pytest.approx(row["midpoint_step"] ** 2)


@pytest.mark.parametrize("seed", range(10))
def test_a_flat_noisy_curve_of_ten_checkpoints_is_not_timed(seed):
    values = 0.05 + np.random.default_rng(seed).normal(0, 0.03, len(DOUBLING_STEPS))
    row = phases.curve_timing(DOUBLING_STEPS, DOUBLING_STEPS, values, threshold=0.4, min_rise=0.05)
    assert not row["phase_change"] and "midpoint_step" not in row
    assert row["note"] == phases.NO_CHANGE or row["note"].startswith("too few checkpoints to time it: 10, whose change")


def test_a_clean_rise_over_most_of_a_short_curve_is_not_called_no_change():
    # Its differences are 0, 0.1, 0.2, 0.3, 0.4, 0: their median, 0.15, is the rise's, and so is the
    # noise they give: 1.4826 x 0.15 / sqrt(2) = 0.157, and 8 x 0.157 = 1.26 exceeds the rise of 1.
    # Outside the rise (where the curve, its own fit, climbs by less than 5% of 1) lie only the two
    # zero differences at its ends: too few to measure the noise on, so not "no phase change".
    steps = DOUBLING_STEPS[:7]
    values = np.array([0.0, 0.0, 0.1, 0.3, 0.6, 1.0, 1.0])
    row = phases.curve_timing(steps, steps, values, threshold=0.4, min_rise=0.05)
    assert phases.noise_level(values) == pytest.approx(1.4826 * 0.15 / np.sqrt(2))
    assert not row["phase_change"]
    # the rise of 1 and the noise of 0.157 named: many checkpoints, but a change within the noise
    assert row["note"] == "too few checkpoints to time it: 7, whose change (1) is less than 8 times their noise (0.16)"
    assert (row["early"], row["late"]) == (0.0, 1.0)


def synthetic_table(steps, curves: dict[tuple[int, int, int], np.ndarray], per_step=100) -> pd.DataFrame:
    """A table shaped like load_results': curves keyed by (seed, layer, head)."""
    rows = []
    for (seed, layer, head), values in curves.items():
        for step, value in zip(steps, values):
            rows.append(
                {
                    "seed": seed,
                    "step": step,
                    "layer": layer,
                    "head": head,
                    "suite": "synthetic",
                    "run": f"seed{seed}",
                    "tokens": step * per_step,
                    "induction": value,
                    "in_context_gain": 4 * value,
                }
            )
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
    assert (later_row["midpoint_step_before"], later_row["midpoint_step_after"]) == (2025, 2050)
    assert later_row["first_above_threshold_step"] == 2050
    gain = inductscan.find_phase_changes(table, "in_context_gain", threshold=2.0)
    assert gain.iloc[0]["late"] == pytest.approx(2.8) and gain.iloc[0]["first_above_threshold_step"] == 1160


def test_metrics_that_cannot_be_timed_are_refused():
    table = synthetic_table(TOY_STEPS, {(0, 0, 0): np.zeros(len(TOY_STEPS))})
    with pytest.raises(ConfigError, match=r"cannot time metric 'inductoin'; did you mean induction\? choose one of"):
        phases.find_phase_changes(pd.DataFrame(), metric="inductoin")
    with pytest.raises(ConfigError, match="cannot time metric 'nope'"):
        inductscan.find_phase_changes(table, "nope")
    with pytest.raises(ConfigError, match="checkpoint score"):
        inductscan.find_phase_changes(table, "in_context_gain", per_head=True)
    with pytest.raises(ConfigError, match="min_rise"):
        inductscan.find_phase_changes(table, min_rise=-1)
    with pytest.raises(ConfigError, match="no icl_score values: scan with icl to score"):
        inductscan.find_phase_changes(table.assign(icl_score=np.nan), "icl_score")


def icl_table(steps, score: np.ndarray) -> pd.DataFrame:
    """synthetic_table with one head and ``icl_score`` (nats) given step by step."""
    table = synthetic_table(steps, {(0, 0, 0): np.full(len(steps), 0.02)})
    return table.assign(icl_score=pd.Series(score, index=steps).loc[table.index.get_level_values("step")].to_numpy())


def test_a_falling_score_is_timed_as_it_falls_in_its_own_units():
    # Olsson et al.'s ICL score falls from about -0.05 to -0.45 at the phase change: a logistic in
    # log steps, halfway (-0.25) at step 800 of a log grid (the toy's former one: the dense window
    # would set the late plateau on steps 1600-2600, still short of it). Its midpoint is where the
    # rising mirror image would put it, and its plateaus and threshold stay in nats, negative.
    declared = metrics.METRICS["icl_score"]
    steps = TOY_LOG_STEPS
    x = np.log(np.maximum(steps, 1))
    score = -0.05 - 0.4 / (1 + np.exp(-(x - np.log(800)) / 0.3))
    score[np.argmin(np.abs(score - declared.threshold))] = declared.threshold  # one checkpoint exactly at -0.25
    runs = inductscan.find_phase_changes(icl_table(steps, score), "icl_score")
    row = runs.iloc[0]
    assert row["phase_change"] and row["note"] == "" and row["threshold"] == -0.25
    assert row["early"] == pytest.approx(-0.05, abs=0.01) and row["late"] == pytest.approx(-0.45, abs=0.01)
    mirror = phases.curve_timing(steps, steps * 100, -score, threshold=0.25, min_rise=declared.min_rise)
    for level in phases.LEVELS:
        assert row[f"{level}_step"] == pytest.approx(mirror[f"{level}_step"])
    assert abs(np.log(row["midpoint_step"] / 800)) < np.log(960 / 790)  # within the checkpoint interval around it
    assert row["first_above_threshold_step"] == steps[np.flatnonzero(score <= -0.25)[0]]  # at or below, -0.25 included
    view = phase_view.readable(runs)
    assert "first <= -0.25" in view.columns and view.iloc[0]["early"] == f"{row['early']:.3f}"
    flat = inductscan.find_phase_changes(icl_table(steps, np.full(len(steps), -0.1)), "icl_score")
    assert flat.iloc[0]["note"] == phases.NO_CHANGE


def test_readable_view_shows_tokens_and_brackets():
    steps = TOY_STEPS
    table = synthetic_table(steps, {(0, 1, 1): np.where(steps >= 1000, 0.7, 0.02)}, per_step=1_000_000)
    view = phase_view.readable(inductscan.find_phase_changes(table))
    assert view.iloc[0]["midpoint"].endswith("(steps 960-1160)")
    assert view.iloc[0]["midpoint"].split()[0].endswith("B")  # ~1.06e9 tokens
    assert view.iloc[0]["first >= 0.4"] == "step 1160"


def gain_table(steps, gain: np.ndarray) -> pd.DataFrame:
    """synthetic_table with one head and ``in_context_gain`` (nats) given step by step."""
    table = synthetic_table(steps, {(0, 0, 0): np.full(len(steps), 0.02)})
    return table.assign(
        in_context_gain=pd.Series(gain, index=steps).loc[table.index.get_level_values("step")].to_numpy()
    )


def test_in_context_gain_is_timed_with_its_own_threshold_and_min_rise():
    declared = metrics.METRICS["in_context_gain"]
    steps = TOY_STEPS
    gain = np.select([steps < 540, steps < 960], [0.02, 0.6], 4.4)  # 0.6 nats from step 540, 4.4 from 960
    runs = inductscan.find_phase_changes(gain_table(steps, gain), "in_context_gain")
    assert runs.iloc[0]["threshold"] == declared.threshold == 1.0
    assert runs.iloc[0]["first_above_threshold_step"] == 960  # 0.6 < 1 nat <= 4.4
    assert runs.iloc[0]["phase_change"]
    explicit = inductscan.find_phase_changes(gain_table(steps, gain), "in_context_gain", 0.4)
    assert explicit.iloc[0]["threshold"] == 0.4 and explicit.iloc[0]["first_above_threshold_step"] == 540
    # a 0.1-nat step is below in_context_gain's min_rise (0.15 nat), though above induction's 0.05
    small = gain_table(steps, np.where(steps < 960, 0.02, 0.12))
    assert declared.min_rise > 0.1 > metrics.METRICS["induction"].min_rise
    assert inductscan.find_phase_changes(small, "in_context_gain").iloc[0]["note"] == phases.NO_CHANGE
    assert inductscan.find_phase_changes(small, "in_context_gain", min_rise=0.05).iloc[0]["phase_change"]
    induction = inductscan.find_phase_changes(synthetic_table(steps, {(0, 0, 0): np.where(steps < 960, 0.02, 0.12)}))
    assert induction.iloc[0]["phase_change"] and induction.iloc[0]["threshold"] == 0.4


def test_a_sharp_rise_with_a_short_clean_late_plateau_is_timed_not_said_still_rising():
    # The toy suite's seed 0 as scanned on its former grid (32 log-spaced checkpoints): a flat,
    # slowly sagging curve, then the heads form between steps 2050 and 2480 and the last two
    # checkpoints agree (0.552, 0.560). The checkpoints past the end crossing are all on the
    # plateau: its midpoint is timed, with no note.
    steps = TOY_LOG_STEPS
    values = np.concatenate([np.linspace(0.024, 0.017, len(steps) - 3), [0.161, 0.552, 0.56]])
    row = phases.curve_timing(steps, steps * 2048, values, threshold=0.4, min_rise=0.05)
    assert row["phase_change"] and row["note"] == "" and not (row["rising_at_start"] or row["rising_at_end"])
    assert (row["midpoint_step_before"], row["midpoint_step_after"]) == (2050, 2480)


def test_a_last_checkpoint_high_by_noise_alone_makes_no_late_plateau_of_its_own():
    # A complete logistic on Pythia's grid whose last checkpoint is 3.5 noise levels high: the
    # running median's end-point rule pulls it back to its neighbours' line, so the late plateau
    # stays the plateau's, the end crossing stays inside, and nothing is said to be still rising.
    noise = 0.03
    values = logistic(PYTHIA_STEPS, 2_097_152, midpoint=np.log(8000 * 2_097_152), width=0.4, noise=noise, seed=5)
    values[-1] = 0.73 + 3.5 * noise
    smoothed = phases.running_median(values, phases.log_steps(PYTHIA_STEPS))
    assert abs(smoothed[-1] - 0.73) < 2 * noise
    row = phases.curve_timing(PYTHIA_STEPS, PYTHIA_STEPS * 2_097_152, values, threshold=0.4, min_rise=0.05)
    assert row["phase_change"] and row["note"] == "" and row["late"] == pytest.approx(0.73, abs=noise)
    step = np.where(PYTHIA_STEPS < 143_000, 0.02, 0.9)  # a real step at the last checkpoint, far above any noise
    assert phases.running_median(step, phases.log_steps(PYTHIA_STEPS))[-1] == 0.9
