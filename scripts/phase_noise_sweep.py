"""How well inductscan.phases times synthetic phase changes, and how often it invents one.

Two experiments, on the real checkpoint grids (toy, Pythia, Stanford):

1. Rising curves: a logistic in log tokens (known midpoint; width such that 10%-90% of the rise
   spans 9-26% of the scanned log-token range, both plateaus inside it) plus Gaussian noise and a
   dip (one or two checkpoints pulled down by 0.1-0.3) at a random place. Reports how often the detected
   midpoint lies within one checkpoint interval of the truth, and the worst error.
2. Flat curves: noise only. Reports how often a phase change is (wrongly) reported, for several
   multiples of the noise level (phases.NOISE_MULTIPLE is the one in use).

    python scripts/phase_noise_sweep.py [--trials 400]
"""

from __future__ import annotations

import argparse

import numpy as np

from inductscan import phases
from inductscan.suites import get_suite
from inductscan.toy import ToyConfig


def grids() -> dict[str, tuple[np.ndarray, int]]:
    """Each grid's steps and tokens per step."""
    toy = ToyConfig()
    return {
        "toy (32)": (np.array(toy.save_steps()), toy.batch * toy.context),
        "pythia (154)": (np.array(get_suite("pythia-160m").steps), 2_097_152),
        "stanford (609)": (np.array(get_suite("stanford-gpt2-small").steps), 524_288),
    }


def interval_error(tokens: np.ndarray, truth: float, found: float) -> float:
    """|found - truth| in log tokens, divided by the checkpoint interval that contains the truth."""
    positive = tokens[tokens > 0]
    index = np.clip(np.searchsorted(positive, truth), 1, len(positive) - 1)
    width = np.log(positive[index]) - np.log(positive[index - 1])
    return abs(np.log(found) - np.log(truth)) / width


def rising_trial(steps: np.ndarray, per_step: int, generator: np.random.Generator, noise: float) -> tuple[float, bool]:
    """The midpoint's error in checkpoint intervals, and whether the dip fell inside the rise."""
    tokens = steps * per_step
    positive = np.log(tokens[tokens > 0])
    width = generator.uniform(0.02, 0.06) * (positive[-1] - positive[0])  # the rise spans 4 widths: 8-24%
    truth = generator.uniform(positive[0] + 5 * width, positive[-1] - 5 * width)  # both plateaus in range
    x = np.log(np.maximum(tokens, 1))
    values = 0.03 + 0.7 / (1 + np.exp(-(x - truth) / width)) + generator.normal(0, noise, len(tokens))
    dip = generator.integers(1, len(values) - 2)
    dipped = slice(dip, dip + generator.integers(1, 3))
    values[dipped] -= generator.uniform(0.1, 0.3)
    in_rise = bool(np.any(np.abs(x[dipped] - truth) <= 2.2 * width))  # 10%-90% of a logistic: +-2.2 widths
    row = phases.curve_timing(steps, tokens, values, threshold=0.4, min_rise=0.05)
    if not row["phase_change"]:
        return float("inf"), in_rise
    return interval_error(tokens, float(np.exp(truth)), row["midpoint_tokens"]), in_rise


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
            errors = np.array([error for error, _ in trials])
            outside = np.array([error for error, in_rise in trials if not in_rise])
            print(
                f"  {name:15} noise {noise:.2f}: within one interval {np.mean(errors <= 1):6.1%} "
                f"(dip outside the rise: {np.mean(outside <= 1):6.1%}), "
                f"median {np.median(errors):.2f}, worst {errors.max():.2f}"
            )
    print("flat noise: share of curves whose fitted rise exceeds k noise levels")
    for name, (steps, _) in grids().items():
        rises = np.array([flat_rise(steps, generator, 0.02) for _ in range(arguments.trials)])
        shares = "  ".join(f"k={k:g}: {np.mean(rises > k):6.1%}" for k in (4, 6, 8, 10))
        print(f"  {name:15} {shares}   (in use: k={phases.NOISE_MULTIPLE:g})")


if __name__ == "__main__":
    main()
