"""The report's token-loss section (inductscan/report_token_losses.py) of a real scan of tiny
checkpoints with --token-losses: its embedded data against numpy on the stored losses, its charts in
a real headless Chromium, and its absence from the page of a scan without token losses."""

from __future__ import annotations

import re

import numpy as np
import pytest

import inductscan
from inductscan import report_token_losses
from inductscan.compare import principal_components
from inductscan.testing import browser
from tests.conftest import make_local_suite
from tests.results.test_token_losses import CONTEXT, EXAMPLES, SEEDS, STEPS, scan, stored_ids, token_file
from tests.test_report import needs_chromium, page_data

TOKENS = EXAMPLES * (CONTEXT - 1)  # 252 predicted tokens per checkpoint


def rounding(values) -> float:
    """The page's rounding error: half a unit of the 4th significant digit of the largest magnitude."""
    return 0.5 * 10.0 ** (np.floor(np.log10(np.abs(values).max())) - 3) + 1e-9


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    """(results with token losses, results without, root): two seeds of seven checkpoints each, scanned
    with --token-losses; seed 0's first two checkpoints scanned without it."""
    root = tmp_path_factory.mktemp("report-token-losses")
    suite = make_local_suite(root / "suite", seeds=SEEDS, steps=STEPS)
    data = token_file(root / "tokens.parquet")
    scan(suite, root / "results", data)
    scan(suite, root / "plain", data, seeds=[0], steps=[0, 10], token_losses=False)
    return root / "results", root / "plain", root


@pytest.fixture(scope="module")
def page(scanned):
    results, _, root = scanned
    return inductscan.write_report(results, root / "report.html").path


def matrix(losses, seed: int) -> np.ndarray:
    """(steps, tokens) of one seed, tokens in (example, position) order: numpy on the stored rows."""
    rows = losses[losses.seed == seed].sort_values(["step", "example", "position"])
    return rows["loss"].to_numpy(dtype=float).reshape(len(STEPS), TOKENS)


def token_order(losses):
    first = losses[(losses.seed == SEEDS[0]) & (losses.step == STEPS[0])].sort_values(["example", "position"])
    return list(zip(first["example"], first["position"]))


def test_the_scatter_is_both_seeds_log_probabilities_at_each_step(page, scanned):
    results, _, _ = scanned
    losses = inductscan.load_token_losses(results)
    scatter = page_data(page)["token_losses"]["scatter"]
    assert scatter["steps"] == list(STEPS) and scatter["tokens"] == scatter["tokens_shown"] == TOKENS
    a, b = -matrix(losses, 0), -matrix(losses, 1)
    tolerance = rounding(np.concatenate([a, b]))  # one scale for every step: 2 decimals here
    for index, step in enumerate(STEPS):
        np.testing.assert_allclose(scatter["x"][index], a[index], atol=tolerance)
        np.testing.assert_allclose(scatter["y"][index], b[index], atol=tolerance)
        r = np.corrcoef(a[index], b[index])[0, 1]
        assert (
            scatter["titles"][index] == f"seed 0 vs seed 1 at step {step:,}: Pearson r = {r:.3f} over {TOKENS} tokens"
        )
        apart = np.argsort(-np.abs(a[index] - b[index]), kind="stable")[: report_token_losses.SCATTER_OUTLIERS]
        np.testing.assert_allclose(scatter["outliers"][index]["x"], a[index][apart], atol=tolerance)
        np.testing.assert_allclose(scatter["outliers"][index]["y"], b[index][apart], atol=tolerance)
    ids = stored_ids(results)
    example, position = token_order(losses)[apart[0]]
    token = int(ids[example, position - 1])  # position p predicts the p-th token
    assert scatter["outliers"][-1]["text"][0] == f"example {example}, position {position} (token {token})"
    figure = scatter["figure"]  # drawn at the last step
    assert figure["data"][0]["x"] == scatter["x"][-1] and figure["layout"]["title"]["text"] == scatter["titles"][-1]


def test_the_curves_are_the_tokens_whose_loss_changes_most(page, scanned):
    results, _, _ = scanned
    losses = inductscan.load_token_losses(results)
    curves = page_data(page)["token_losses"]["curves"]["runs"]
    assert [run["label"] for run in curves] == ["seed 0", "seed 1"]
    order = token_order(losses)
    count = report_token_losses.CURVE_TOKENS
    for seed, run in zip(SEEDS, curves):
        values = matrix(losses, seed)[1:]  # step 0 has no tokens seen: no place on a log axis
        change = np.abs(values[-1] - values[0])
        chosen = np.argsort(-change, kind="stable")[:count]
        traces = run["figure"]["data"]
        assert len(traces) == count
        names = [re.match(r"example (\d+), position (\d+)", trace["hovertemplate"]).groups() for trace in traces]
        assert [tuple(map(int, name)) for name in names] == [order[index] for index in chosen]
        for trace, index in zip(traces, chosen):
            assert trace["x"] == [step * 100 for step in STEPS[1:]]
            np.testing.assert_allclose(trace["y"], values[:, index], atol=rounding(values[:, chosen]))
        shapes = inductscan.curve_shapes(losses, count=count).shapes
        shapes = shapes[shapes.run == f"seed {seed}"]["shape"].tolist()
        assert [trace["name"] for trace in traces] == shapes
        share = np.mean(np.array(shapes) == "S-shaped")
        assert f"({share:.0%} S-shaped, {1 - share:.0%} smooth)" in run["figure"]["layout"]["title"]["text"]


def test_the_loss_pca_is_numpys_svd_of_the_stacked_losses(page, scanned):
    results, _, _ = scanned
    losses = inductscan.load_token_losses(results)
    pca = page_data(page)["token_losses"]["pca"]
    stacked = np.concatenate([matrix(losses, seed) for seed in SEEDS])  # (seeds x steps, tokens)
    centred = stacked - stacked.mean(axis=0)
    u, singular, vt = np.linalg.svd(centred, full_matrices=False)
    explained = singular**2 / np.sum(singular**2)
    np.testing.assert_allclose(pca["explained"], explained[:2], rtol=1e-6)
    assert f"PC1 ({explained[0]:.1%} of the variance)" == pca["figure"]["layout"]["xaxis"]["title"]["text"]
    traces = pca["figure"]["data"]
    assert [trace["name"] for trace in traces] == ["seed 0", "seed 1"]
    coordinates = u[:, :2] * singular[:2]  # each component's sign is arbitrary: matched below
    for component, axis in enumerate(("x", "y")):
        shown = np.concatenate([trace[axis] for trace in traces])  # seed 0's checkpoints, then seed 1's
        sign = np.sign(shown @ coordinates[:, component])
        np.testing.assert_allclose(shown, sign * coordinates[:, component], atol=rounding(coordinates))
    order = token_order(losses)
    heaviest = [order[index] for index in np.argsort(-np.abs(vt[0]))[: report_token_losses.PCA_TOKENS]]
    assert [(example, position) for name, example, position, _ in pca["top"] if name == "pc1"] == heaviest


def test_the_scatter_embeds_a_bounded_sample(scanned, tmp_path, monkeypatch):
    results, _, _ = scanned
    monkeypatch.setattr(report_token_losses, "MAX_SCATTER_TOKENS", 50)
    monkeypatch.setattr(report_token_losses, "MAX_SCATTER_STEPS", 3)
    summary = inductscan.write_report(results, tmp_path / "small.html")
    scatter = page_data(summary.path)["token_losses"]["scatter"]
    assert scatter["steps"] == [0, 40, 320] and scatter["tokens_shown"] == 50 and scatter["tokens"] == TOKENS
    assert all(len(values) == 50 for values in scatter["x"] + scatter["y"])
    losses = inductscan.load_token_losses(results)
    shown = np.unique(np.linspace(0, TOKENS - 1, 50).round().astype(int))
    tolerance = rounding(np.concatenate([matrix(losses, seed) for seed in SEEDS]))
    np.testing.assert_allclose(scatter["x"][-1], -matrix(losses, 0)[-1][shown], atol=tolerance)
    r = np.corrcoef(matrix(losses, 0)[-1], matrix(losses, 1)[-1])[0, 1]  # over every token, not the sample
    assert f"Pearson r = {r:.3f} over {TOKENS} tokens" in scatter["titles"][-1]
    text = summary.path.read_text()
    assert f"50 of the {TOKENS} tokens are drawn" in text and "3 of the 7 steps both seeds hold" in text


def test_one_seed_says_so_in_place_of_the_scatter(scanned, tmp_path):
    results, _, _ = scanned
    summary = inductscan.write_report(results, tmp_path / "one.html", seed=1)
    data = page_data(summary.path)["token_losses"]
    assert data["scatter"] == {
        "note": "Only seed 1 holds token losses here: the seed-against-seed scatter needs two seeds"
    }
    assert [run["label"] for run in data["curves"]["runs"]] == ["seed 1"] and len(data["pca"]["figure"]["data"]) == 1
    text = summary.path.read_text()
    assert 'id="token-scatter"' not in text and "the seed-against-seed scatter needs two seeds" in text


def test_too_few_checkpoints_say_why_in_place_of_the_curves(scanned, tmp_path):
    results, _, _ = scanned
    summary = inductscan.write_report(results, tmp_path / "short.html", step_range=(0, 40))
    data = page_data(summary.path)["token_losses"]
    assert data["curves"] == {
        "note": "No per-token loss curves: too few checkpoints to tell a curve's shape: 3 (with tokens seen > 0); "
        "need 6"
    }
    assert data["scatter"]["steps"] == [0, 10, 20, 40] and len(data["pca"]["figure"]["data"]) == 2


def test_a_report_without_token_losses_has_no_token_loss_section(scanned):
    _, plain, root = scanned
    summary = inductscan.write_report(plain, root / "plain.html")
    text = summary.path.read_text()
    assert "token_losses" not in page_data(summary.path)
    body = text[: text.index('<script type="application/json"')]
    assert "Token losses" not in body and 'id="token-' not in body


@needs_chromium
def test_the_page_draws_the_token_loss_charts(page):
    drawn = browser.selftest(page)
    assert drawn["errors"] == [] and not [message for message in drawn["console"] if "Uncaught" in message]
    assert drawn["charts"] == 7  # timing, heatmap, clicked heads, ICL (no head changes), scatter, curves, PCA
    tokens = drawn["token_losses"]
    data = page_data(page)["token_losses"]
    outliers = report_token_losses.SCATTER_OUTLIERS
    assert tokens["scatter"]["traces"] == 3 and tokens["scatter"]["points"] == TOKENS + outliers
    assert tokens["scatter"]["title"] == data["scatter"]["titles"][-1] and tokens["scatter_step_label"] == "step 320"
    assert (
        tokens["scatter_x_before"] == data["scatter"]["x"][-1] and tokens["scatter_x_after"] == data["scatter"]["x"][0]
    )
    assert (
        tokens["scatter_title_after"] == data["scatter"]["titles"][0] and tokens["scatter_step_label_after"] == "step 0"
    )
    assert tokens["curves"]["traces"] == tokens["curves"]["lines"] == report_token_losses.CURVE_TOKENS
    assert tokens["curves"]["title"].startswith("seed 0: ") and tokens["curves_title_after"].startswith("seed 1: ")
    assert tokens["pca"]["traces"] == 2 and tokens["pca"]["points"] == len(SEEDS) * len(STEPS)


@needs_chromium
def test_the_page_of_one_seed_draws_without_its_scatter(scanned, tmp_path):
    results, _, _ = scanned
    summary = inductscan.write_report(results, tmp_path / "one.html", seed=0)
    drawn = browser.selftest(summary.path)
    assert drawn["errors"] == [] and not [message for message in drawn["console"] if "Uncaught" in message]
    assert drawn["charts"] == 6 and drawn["token_losses"]["scatter"] is None
    assert drawn["token_losses"]["curves"]["lines"] == report_token_losses.CURVE_TOKENS


@pytest.mark.parametrize("shape", [(30, 200), (200, 30), (12, 50)], ids=["wide", "tall", "rank-one"])
def test_principal_components_are_numpys_svd(shape):
    generator = np.random.default_rng(1)
    matrix = generator.normal(size=shape)
    if shape == (12, 50):  # one direction of variance: the second and third components have none
        matrix = np.outer(generator.normal(size=12), generator.normal(size=50)) + 3.0
    scores, components, explained = principal_components(matrix, 3)
    centred = matrix - matrix.mean(axis=0)
    u, singular, vt = np.linalg.svd(centred, full_matrices=False)
    np.testing.assert_allclose(explained, singular[:3] ** 2 / np.sum(singular**2), atol=1e-12)
    for index in range(3):
        if singular[index] < 1e-9 * singular[0]:  # no direction: zeros rather than rounding's noise
            assert not components[index].any() and not scores[:, index].any()
            continue
        sign = np.sign(components[index] @ vt[index])
        np.testing.assert_allclose(components[index], sign * vt[index], atol=1e-10)
        np.testing.assert_allclose(scores[:, index], sign * u[:, index] * singular[index], atol=1e-9)
