"""How well inductscan.phases times synthetic phase changes, and how often it invents one.

Four experiments, on the real checkpoint grids (toy, Pythia, Stanford):

1. Rising curves: a logistic in log tokens (known midpoint; width such that 10%-90% of the rise
   spans 9-26% of the scanned log-token range, both plateaus inside it) plus Gaussian noise and a
   dip (one or two checkpoints pulled down by 0.1-0.3) at a random place. Reports how often the detected
   midpoint lies within one checkpoint interval of the truth, the worst error of those timed, and
   how often the curve is said to be still rising at an edge (a bound, no midpoint: counted as
   not within one interval).
2. Flat curves: noise only. Reports how often a phase change is (wrongly) reported, for several
   multiples of the noise level (phases.NOISE_MULTIPLE is the one in use).
3. Complete curves: those of experiment 1 whose plateaus (within 5% of their level) each hold at
   least four checkpoints besides step 0, and the same with a spike (one or two checkpoints pushed up by 0.1-0.3)
   instead of the dip: how often one is wrongly said to be still rising at its first or last
   checkpoint, or to rise in two stages. Still rising must be never while the dip or spike lies
   outside the first and last five checkpoints (one at an edge is a rise or a fall there, as far
   as the checkpoints can tell); a dip inside the rise can make a real shelf (two stages).
4. Cut curves: the same logistics scanned only up to a checkpoint where 20-90% of the rise is done
   (or only from one where 10-80% is done, as ``--step-range`` leaves them): how often the rise is
   said to be still rising at that edge, and how often it is timed as if complete, with its
   midpoint more than one checkpoint interval from the truth (a wrong answer).

    python scripts/phase_noise_sweep.py [--trials 400]
"""

from __future__ import annotations

import argparse

import numpy as np

from inductscan import phase_edges, phases
from inductscan.suites import get_suite
from inductscan.toy import ToyConfig


def grids() -> dict[str, tuple[np.ndarray, int]]:
    """Each grid's steps and tokens per step."""
    toy = ToyConfig()
    return {
        f"toy ({len(toy.save_steps())})": (np.array(toy.save_steps()), toy.batch * toy.context),
        "pythia (154)": (np.array(get_suite("pythia-160m").steps), 2_097_152),
        "stanford (609)": (np.array(get_suite("stanford-gpt2-small").steps), 524_288),
    }


def interval_error(tokens: np.ndarray, truth: float, found: float) -> float:
    """|found - truth| in log tokens, divided by the checkpoint interval that contains the truth."""
    positive = tokens[tokens > 0]
    index = np.clip(np.searchsorted(positive, truth), 1, len(positive) - 1)
    width = np.log(positive[index]) - np.log(positive[index - 1])
    return abs(np.log(found) - np.log(truth)) / width


def logistic(x: np.ndarray, truth: float, width: float, generator: np.random.Generator, noise: float) -> np.ndarray:
    """A rise of 0.7 from 0.03, centred on ``truth`` (log tokens), with Gaussian noise."""
    return 0.03 + 0.7 / (1 + np.exp(-(x - truth) / width)) + generator.normal(0, noise, len(x))


def rising_trial(
    steps: np.ndarray,
    per_step: int,
    generator: np.random.Generator,
    noise: float,
    *,
    spike: bool = False,
    margin: int = 1,
    plateau_checkpoints: int = 0,
) -> tuple[float, bool, dict]:
    """The midpoint's error in checkpoint intervals, whether the dip fell inside the rise, and the row.

    The dip (a spike with ``spike``) starts at least ``margin`` checkpoints from the first and
    ends at least ``margin`` - 1 from the last; each plateau (within 5% of its level) holds at
    least ``plateau_checkpoints`` checkpoints besides step 0."""
    tokens = steps * per_step
    positive = np.log(tokens[tokens > 0])
    x = np.log(np.maximum(tokens, 1))
    while True:
        width = generator.uniform(0.02, 0.06) * (positive[-1] - positive[0])  # the rise spans 4 widths: 8-24%
        truth = generator.uniform(positive[0] + 5 * width, positive[-1] - 5 * width)  # both plateaus in range
        on_plateaus = (np.abs(x - truth) >= np.log(19) * width) & (tokens > 0)  # past the 5% (95%) point; not step 0
        if min(np.sum(on_plateaus & (x < truth)), np.sum(on_plateaus & (x > truth))) >= plateau_checkpoints:
            break
    values = logistic(x, truth, width, generator, noise)
    length = generator.integers(1, 3)
    dip = generator.integers(margin, len(values) - length - margin + 2)
    dipped = slice(dip, dip + length)
    values[dipped] += (1 if spike else -1) * generator.uniform(0.1, 0.3)
    in_rise = bool(np.any(np.abs(x[dipped] - truth) <= 2.2 * width))  # 10%-90% of a logistic: +-2.2 widths
    row = phases.curve_timing(steps, tokens, values, threshold=0.4, min_rise=0.05)
    if not row["phase_change"] or np.isnan(row["midpoint_tokens"]):
        return float("inf"), in_rise, row
    return interval_error(tokens, float(np.exp(truth)), row["midpoint_tokens"]), in_rise, row


def cut_trial(
    steps: np.ndarray, per_step: int, generator: np.random.Generator, noise: float, at_end: bool
) -> tuple[bool, bool]:
    """A logistic scanned up to (``at_end``) or from a checkpoint in the middle of its rise: whether
    the timing says so, and whether it instead times the cut curve as complete and wrong."""
    tokens = steps * per_step
    positive = np.log(tokens[tokens > 0])
    width = generator.uniform(0.02, 0.06) * (positive[-1] - positive[0])
    done = generator.uniform(0.2, 0.9) if at_end else generator.uniform(0.1, 0.8)  # of the rise, at the cut
    x = np.log(np.maximum(tokens, 1))
    if at_end:  # the cut at a checkpoint with 5 widths of early plateau and more than 10 checkpoints before it
        cut = generator.integers(max(10, np.searchsorted(positive, positive[0] + 12 * width) + 1), len(x))
        kept = slice(0, cut + 1)
    else:  # scanned from a checkpoint with at least 5 widths of late plateau after it
        cut = generator.integers(1, np.searchsorted(x, x[-1] - 12 * width))
        kept = slice(cut, None)
    truth = x[cut] - width * np.log(done / (1 - done))  # the logistic has done `done` of its rise at the cut
    values = logistic(x, truth, width, generator, noise)
    row = phases.curve_timing(steps[kept], tokens[kept], values[kept], threshold=0.4, min_rise=0.05)
    said = bool(row["rising_at_end" if at_end else "rising_at_start"])
    timed = row["phase_change"] and not np.isnan(row.get("midpoint_tokens", np.nan))
    wrong = bool(timed and interval_error(tokens, float(np.exp(truth)), row["midpoint_tokens"]) > 1)
    return said, wrong


def flat_rise(steps: np.ndarray, generator: np.random.Generator, noise: float) -> float:
    """The rise of pure noise, in units of the estimated noise level."""
    values = 0.03 + generator.normal(0, noise, len(steps))
    smoothed = phases.running_median(values, np.log(np.maximum(steps, 1)))
    early, late = phases.plateaus(smoothed, phases.isotonic_increasing(smoothed))
    return (late - early) / phases.noise_level(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    generator = np.random.default_rng(arguments.seed)
    print("rising logistic + noise + dip: midpoint error in checkpoint intervals")
    for name, (steps, per_step) in grids().items():
        for noise in (0.01, 0.03):
            trials = [rising_trial(steps, per_step, generator, noise) for _ in range(arguments.trials)]
            errors = np.array([error for error, _, _ in trials])
            outside = np.array([error for error, in_rise, _ in trials if not in_rise])
            bounded = np.mean([row["rising_at_start"] or row["rising_at_end"] for _, _, row in trials])
            timed = errors[np.isfinite(errors)]
            print(
                f"  {name:15} noise {noise:.2f}: within one interval {np.mean(errors <= 1):6.1%} "
                f"(dip outside the rise: {np.mean(outside <= 1):6.1%}), "
                f"median {np.median(errors):.2f}, worst timed {timed.max():.2f}; said still rising {bounded:5.1%}"
            )
    print("flat noise: share of curves whose fitted rise exceeds k noise levels")
    for name, (steps, _) in grids().items():
        rises = np.array([flat_rise(steps, generator, 0.02) for _ in range(arguments.trials)])
        shares = "  ".join(f"k={k:g}: {np.mean(rises > k):6.1%}" for k in (4, 6, 8, 10))
        print(f"  {name:15} {shares}   (in use: k={phases.NOISE_MULTIPLE:g})")
    print("complete curves (each plateau on 4 checkpoints or more): share said still rising at an edge")
    print("/ said to rise in two stages (all; with the dip or spike outside the rise)")
    for name, (steps, per_step) in grids().items():
        for noise in (0.01, 0.03):
            shares = []
            for margin, where in ((5, "away from the edges"), (1, "anywhere")):
                trials = [
                    rising_trial(steps, per_step, generator, noise, spike=spike, margin=margin, plateau_checkpoints=4)
                    for spike in (False, True)
                    for _ in range(arguments.trials)
                ]
                edge = np.mean([row["rising_at_start"] or row["rising_at_end"] for _, _, row in trials])
                two_stage = np.mean(["two-stage" in row["note"] for _, _, row in trials])
                outside = np.mean(["two-stage" in row["note"] for _, in_rise, row in trials if not in_rise])
                shares.append(f"dip or spike {where}: {edge:5.1%} / {two_stage:4.1%} ({outside:4.1%})")
            print(f"  {name:15} noise {noise:.2f}: " + ", ".join(shares))
    print("cut curves: share said still rising at the cut (and timed as complete but wrong)")
    for name, (steps, per_step) in grids().items():
        for noise in (0.01, 0.03):
            shares = []
            for at_end in (True, False):
                trials = np.array(
                    [cut_trial(steps, per_step, generator, noise, at_end) for _ in range(arguments.trials)]
                )
                said, wrong = trials.mean(axis=0)
                shares.append(f"{'last' if at_end else 'first'} checkpoint {said:6.1%} (wrong {wrong:5.1%})")
            print(f"  {name:15} noise {noise:.2f}: " + ", ".join(shares))
    share, errors = phase_edges.EDGE_SLOPE_SHARE, phase_edges.EDGE_ERRORS
    print(f"  (in use: a slope of {share:g} of the rise's mean + {errors:g} standard errors)")


if __name__ == "__main__":
    main()
