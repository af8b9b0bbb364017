"""The comparison analyses on data whose answer is known: correlations against numpy's, curve
shapes of constructed curves, principal components of a constructed loss matrix, and timing
fractions of the catalogued suites' whole training."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import inductscan
from inductscan import compare
from inductscan.errors import ConfigError
from inductscan.suites import get_suite
from inductscan.timing_compare import add_fractions, run_totals, totals

PYTHIA_STEPS = np.array(get_suite("pythia-160m").steps)
STANFORD_STEPS = np.array(get_suite("stanford-gpt2-small").steps)


def token_table(losses: dict[int, np.ndarray], steps, per_step: int = 100) -> pd.DataFrame:
    """A frame shaped like load_token_losses': losses[seed] is (steps, examples, positions - 1)."""
    rows = []
    for seed, values in losses.items():
        for index, step in enumerate(steps):
            for example in range(values.shape[1]):
                for offset, loss in enumerate(values[index, example]):
                    rows.append(("local", f"seed{seed}", seed, step, step * per_step, example, offset + 2, loss))
    return pd.DataFrame(rows, columns=["suite", "run", "seed", "step", "tokens", "example", "position", "loss"])


def test_the_scatter_correlation_is_numpys_and_the_outliers_differ_most():
    generator = np.random.default_rng(0)
    shared = generator.normal(-3, 1, size=(1, 3, 20))
    losses = {seed: np.repeat(-(shared + generator.normal(0, 0.5, shared.shape)), 2, axis=0) for seed in (4, 7)}
    losses[7][1, 2, 5] += 9.0  # one token the later step of seed 7 finds much harder
    table = token_table(losses, steps=[10, 20])
    scatter = inductscan.seed_scatter(table)
    assert scatter.step == 20 and scatter.labels == ("seed 4", "seed 7")
    a, b = -losses[4][1].reshape(-1), -losses[7][1].reshape(-1)
    assert scatter.correlation == pytest.approx(np.corrcoef(a, b)[0, 1], abs=1e-12)
    outlier = scatter.outliers(1).iloc[0]
    assert (outlier["example"], outlier["position"]) == (2, 7)
    expected = np.argsort(-np.abs(a - b), kind="stable")[:5]
    assert list(scatter.outliers(5)["difference"]) == pytest.approx(list((a - b)[expected]))
    early = inductscan.seed_scatter(table, seeds=(7, 4), step=10)
    assert early.labels == ("seed 7", "seed 4")
    assert early.correlation == pytest.approx(np.corrcoef(-losses[7][0].ravel(), -losses[4][0].ravel())[0, 1])
    with pytest.raises(ConfigError, match="step 15 is not a step of both seeds"):
        inductscan.seed_scatter(table, step=15)
    with pytest.raises(ConfigError, match="no token losses of seed"):
        inductscan.seed_scatter(table, seeds=(4, 5))


def logistic(x, centre, width, low=1.0, high=6.0):
    return low + (high - low) / (1 + np.exp((x - centre) / width))


def test_a_logistic_in_log_tokens_is_s_shaped_and_a_straight_line_smooth():
    generator = np.random.default_rng(1)
    x = np.log(PYTHIA_STEPS[1:] * 2_097_152.0)  # every Pythia checkpoint after step 0
    noise = 0.05
    curves = np.stack(
        [logistic(x, centre, width) for centre, width in ((x[40], 0.3), (x[80], 0.6), (x[100], 0.2))]
        + [8.0 - 0.2 * (x - x[0]) for _ in range(3)]
        + [np.full_like(x, 4.0) for _ in range(2)],
        axis=1,
    )
    curves = curves + generator.normal(0, noise, curves.shape)
    shapes = inductscan.classify_curves(x, curves)
    assert list(shapes["shape"]) == ["S-shaped"] * 3 + ["smooth"] * 5
    # few checkpoints (the toy's first few) still tell a sharp drop from a line
    short = np.log(np.array([1, 2, 4, 8, 16, 32, 64, 128], dtype=float))
    both = np.stack([logistic(short, short[4], 0.2), 5 - 0.3 * short], axis=1) + generator.normal(0, 0.02, (8, 2))
    assert list(inductscan.classify_curves(short, both)["shape"]) == ["S-shaped", "smooth"]
    with pytest.raises(ConfigError, match="too few checkpoints to tell a curve's shape: 5"):
        inductscan.classify_curves(short[:5], both[:5])


def test_curve_shapes_pick_the_tokens_that_change_most_and_count_the_shares():
    steps = [10, 20, 40, 80, 160, 320, 640, 1280]
    x = np.log(np.array(steps) * 100.0)
    flat = np.full((len(steps), 1, 6), 3.0)
    flat[:, 0, 0] = logistic(x, x[4], 0.15)  # drops by 5 nats: S-shaped
    flat[:, 0, 1] = 7.0 - 0.8 * (x - x[0])  # drops ~5.8 nats along a line: smooth
    flat[:, 0, 2] = 3.0 + 0.01 * np.arange(len(steps))  # barely moves
    shapes = inductscan.curve_shapes(token_table({0: flat}, steps), count=2)
    chosen = shapes.shapes.set_index("position")
    assert sorted(chosen.index) == [2, 3]
    assert chosen.loc[2, "shape"] == "S-shaped" and chosen.loc[3, "shape"] == "smooth"
    assert chosen.loc[3, "change"] == pytest.approx(flat[-1, 0, 1] - flat[0, 0, 1])
    assert shapes.shares().loc["seed 0"].to_dict() == {"S-shaped": 0.5, "smooth": 0.5}


def test_the_first_component_of_a_rank_one_loss_matrix_is_its_direction():
    generator = np.random.default_rng(2)
    steps = list(range(0, 60, 10))
    direction = generator.normal(size=12)
    direction /= np.linalg.norm(direction)
    base = generator.normal(3.0, 0.5, size=12)
    progress = {0: np.linspace(0, 4, len(steps)), 1: np.linspace(0, 2, len(steps))}
    losses = {
        seed: (base + amount[:, None] * direction + generator.normal(0, 1e-3, (len(steps), 12))).reshape(
            len(steps), 2, 6
        )
        for seed, amount in progress.items()
    }
    analysis = inductscan.loss_pca(token_table(losses, steps))
    loadings = analysis.components.loc["pc1"].to_numpy()
    sign = np.sign(loadings @ direction)
    np.testing.assert_allclose(sign * loadings, direction, atol=1e-2)
    assert analysis.explained[0] > 0.99
    amounts = np.concatenate(list(progress.values()))
    coordinates = sign * analysis.trajectory["pc1"].to_numpy()
    np.testing.assert_allclose(coordinates, amounts - amounts.mean(), atol=1e-2)  # projections of centred rows
    top = analysis.top_tokens(3)
    strongest = np.argsort(-np.abs(direction))[:3]
    expected = [(index // 6, index % 6 + 2) for index in strongest]
    assert list(zip(top[top.component == "pc1"].example, top[top.component == "pc1"].position)) == expected


def test_the_catalog_knows_each_suites_whole_training():
    assert get_suite("stanford-gpt2-small").total_tokens == 400_000 * 512 * 1024
    assert get_suite("stanford-gpt2-medium").total_tokens == 400_000 * 512 * 1024
    assert get_suite("pythia-160m-seeds").total_tokens == 143_000 * 1024 * 2048
    assert get_suite("pythia-12b-deduped").total_tokens == 143_000 * 1024 * 2048
    for name in ("stanford-gpt2-small", "pythia-1b"):  # the last checkpoint is the whole training
        suite = get_suite(name)
        assert suite.steps[-1] * suite.tokens_per_step == suite.total_tokens
    assert totals(["pythia-70m", "toy"], total_tokens=5000) == {"pythia-70m": 143_000 * 2_097_152, "toy": 5000}
    with pytest.raises(ConfigError, match="total training tokens of local, toy are not catalogued: pass total_tokens"):
        totals(["local", "pythia-70m", "toy"])


def synthetic_results(suite: str, steps, per_step: int, midpoints: dict[int, int]) -> pd.DataFrame:
    """A table shaped like load_results': one head per seed, a logistic rise at each seed's midpoint step."""
    rows = []
    for seed, midpoint in midpoints.items():
        x = np.log(np.maximum(steps, 1) * per_step)
        values = 0.03 + 0.7 / (1 + np.exp(-(x - np.log(midpoint * per_step)) / 0.3))
        for step, value in zip(steps, values):
            rows.append((suite, f"{suite}-{seed}", seed, step, step * per_step, 0, 0, value))
    columns = ["suite", "run", "seed", "step", "tokens", "layer", "head", "induction"]
    return pd.DataFrame(rows, columns=columns).set_index(["suite", "run", "seed", "step", "layer", "head"])


def test_timing_across_suites_in_tokens_and_as_a_fraction_of_training():
    results = pd.concat(
        [
            synthetic_results("pythia-160m-seeds", PYTHIA_STEPS, 2_097_152, {1: 1500, 2: 3000}),
            synthetic_results("stanford-gpt2-small", STANFORD_STEPS, 524_288, {21: 5000}),
        ]
    )
    timing = inductscan.compare_timing(results, x="fraction")
    assert list(timing["suite"]) == ["pythia-160m-seeds"] * 2 + ["stanford-gpt2-small"]
    whole = {"pythia-160m-seeds": 143_000 * 2_097_152, "stanford-gpt2-small": 400_000 * 524_288}
    for _, row in timing.iterrows():
        for level in ("onset", "midpoint", "end"):
            assert row[f"{level}_fraction"] == pytest.approx(row[f"{level}_tokens"] / whole[row["suite"]])
    assert timing["midpoint_fraction"].iloc[0] == pytest.approx(1500 / 143_000, rel=0.1)
    tokens = inductscan.compare_timing(results)
    assert "midpoint_fraction" not in tokens.columns
    figure = inductscan.plot_compare(timing, x="fraction")
    bars = [collection for collection in figure.axes[0].containers]
    middles = [container.lines[0].get_xdata()[0] for container in bars]
    assert middles == pytest.approx(list(timing["midpoint_fraction"]))
    assert figure.axes[0].get_xscale() == "linear"
    figure = inductscan.plot_compare(tokens)
    assert figure.axes[0].get_xscale() == "log"
    assert [container.lines[0].get_xdata()[0] for container in figure.axes[0].containers] == pytest.approx(
        list(tokens["midpoint_tokens"])
    )
    local = synthetic_results("local", PYTHIA_STEPS, 100, {0: 1500})
    with pytest.raises(ConfigError, match="total training tokens of local are not catalogued"):
        inductscan.compare_timing(local, x="fraction")
    fractions = add_fractions(inductscan.find_phase_changes(local), total_tokens=143_000 * 100)
    assert fractions["midpoint_fraction"].iloc[0] == pytest.approx(fractions["midpoint_tokens"].iloc[0] / 14_300_000)
    with pytest.raises(ConfigError, match="x must be one of tokens, fraction"):
        inductscan.compare_timing(local, x="steps")


def test_pearson_is_nan_for_a_constant_sample():
    assert np.isnan(compare.pearson(np.ones(5), np.arange(5)))


def test_the_analyses_import_neither_torch_nor_matplotlib():
    import subprocess
    import sys

    code = (
        "import sys, inductscan.compare, inductscan.timing_compare, inductscan.results.token_losses; "
        "print('torch' in sys.modules, 'matplotlib' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


def test_a_runs_training_comes_from_the_catalog_its_manifest_or_the_user(tmp_path):
    from inductscan.toy import ToyConfig, write_manifest

    (tmp_path / "toy").mkdir()
    config = ToyConfig(train_steps=2000)
    write_manifest(tmp_path / "toy", config, [0])
    runs = pd.DataFrame(
        {"suite": ["pythia-70m", "toy", "local"], "run": ["pythia-70m", "seed0", "mine"], "seed": [1234, 0, 0]}
    )
    folders = {("toy", "seed0", 0): str(tmp_path / "toy" / "seed0"), ("local", "mine", 0): str(tmp_path / "mine")}
    found = run_totals(runs, total_tokens=777, folders=folders)
    assert found.tolist() == [143_000 * 2_097_152, 2000 * config.batch * config.context, 777]
    with pytest.raises(ConfigError, match="total training tokens of local are not catalogued"):
        run_totals(runs, folders=folders)


def test_a_fraction_is_refused_for_a_run_that_counts_no_tokens():
    uncounted = synthetic_results("local", PYTHIA_STEPS, 100, {0: 1500}).assign(tokens=0)  # no --tokens-per-step
    timed = inductscan.find_phase_changes(uncounted)
    assert timed["phase_change"].all() and timed["midpoint_tokens_after"].tolist() == [0]
    with pytest.raises(ConfigError, match="local counts no tokens, so its phase change has no fraction of training"):
        add_fractions(timed, total_tokens=10_000)
