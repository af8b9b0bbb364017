"""The HTML report: its data against the scores written, its bad inputs, and the page itself in a
real headless Chromium (Debian's chromium package; the browser tests skip, saying why, without it)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import inductscan
from inductscan import report
from inductscan.cli import main
from inductscan.metrics import HEAD_EFFECTS
from inductscan.phase_view import amount
from inductscan.plan import ScanConfig, plan
from inductscan.results.records import write_failure
from inductscan.runner import run_scan
from inductscan.suites import get_suite, local_suite
from inductscan.testing import browser
from inductscan.testing.synthetic import write_synthetic_scan
from inductscan.toy import ToyConfig

from .conftest import make_local_suite

# the toy suite's former grid, 32 log-spaced steps 0 .. 3000: these logistics (width 0.35 in log steps)
# still climb a little over the dense window of its present one, where many checkpoints show it
STEPS = ToyConfig(dense_from=0, dense_to=0).save_steps()
TOKENS_PER_STEP = 2048
MIDPOINTS = {0: 400, 1: 900}  # each seed's phase change, in steps
LAYERS, HEADS = 2, 4
needs_chromium = pytest.mark.skipif(
    browser.find_chromium() is None,
    reason="chromium is not installed (apt-get install chromium; .ci/run installs it): the page is not opened",
)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A results folder with a phase change in each of two seeds, ICL curves and one failure."""
    root = tmp_path_factory.mktemp("report")
    written = write_synthetic_scan(
        root / "results", steps=STEPS, midpoints=MIDPOINTS, layers=LAYERS, heads=HEADS, failed_step=5
    )
    summary = inductscan.write_report(root / "results", root / "report.html")
    return root, written, summary


def page_data(page: Path) -> dict:
    text = page.read_text()
    found = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', text, re.S)
    return json.loads(found.group(1))


def test_the_page_holds_plotly_once_and_fetches_nothing(synthetic):
    import plotly.offline

    _, _, summary = synthetic
    text = summary.path.read_text()
    assert summary.notice is None and summary.size == summary.path.stat().st_size
    assert text.count(plotly.offline.get_plotlyjs()) == 1
    assert not re.search(r"<(script|img|iframe)[^>]*\bsrc=|<link\b", text, re.I)
    assert text.count("</script>") == 4  # the error recorder, the data, Plotly, the page's script


def test_timing_curves_are_the_best_head_per_checkpoint(synthetic):
    root, written, summary = synthetic
    figure = page_data(summary.path)["timing"]["induction"]
    assert [trace["name"] for trace in figure["data"]] == ["seed 0", "seed 1"]
    steps = np.asarray(STEPS)
    for seed, trace in zip(MIDPOINTS, figure["data"]):
        scores = written[seed]["induction"].reshape(len(steps), -1)  # (steps, layer * head)
        shown = steps > 0  # step 0 has no place on a log axis
        np.testing.assert_array_equal(trace["x"], steps[shown] * TOKENS_PER_STEP)
        np.testing.assert_allclose(trace["y"], scores.max(axis=1)[shown], atol=1e-4)
        best = scores.argmax(axis=1)[shown]
        np.testing.assert_array_equal([row[1] * HEADS + row[2] for row in trace["customdata"]], best)
    assert figure["layout"]["xaxis"]["type"] == "log"


def test_the_band_and_midpoint_of_each_run_bracket_its_true_midpoint(synthetic):
    _, _, summary = synthetic
    shapes = page_data(summary.path)["timing"]["induction"]["layout"]["shapes"]
    bands = [shape for shape in shapes if shape["type"] == "rect"]
    midpoints = [shape["x0"] for shape in shapes if shape["type"] == "line" and shape["xref"] == "x"]
    assert len(bands) == 2 and len(midpoints) == 2
    for band, midpoint, truth in zip(bands, midpoints, MIDPOINTS.values()):
        assert band["x0"] < midpoint < band["x1"]
        assert truth * TOKENS_PER_STEP / 1.3 < midpoint < truth * TOKENS_PER_STEP * 1.3  # about one checkpoint
    thresholds = [shape["y0"] for shape in shapes if shape["type"] == "line" and shape["yref"] == "y"]
    assert thresholds == [0.4]


def test_heatmap_grids_are_every_head_at_every_step(synthetic):
    _, written, summary = synthetic
    runs = page_data(summary.path)["runs"]
    assert [run["label"] for run in runs] == ["seed 0", "seed 1"]
    for seed, run in zip(MIDPOINTS, runs):
        assert run["steps"] == list(STEPS) and run["checkpoints"] == len(STEPS)
        assert run["tokens"] == [step * TOKENS_PER_STEP for step in STEPS]
        for metric in report.HEATMAP_METRICS:
            np.testing.assert_allclose(np.asarray(run["grids"][metric], dtype=float), written[seed][metric], atol=1e-3)


def test_per_head_timing_shows_the_head_that_changes_in_each_seed(synthetic):
    _, _, summary = synthetic
    data = page_data(summary.path)
    traces = data["per_head"]["data"]
    assert [trace["name"] for trace in traces] == ["seed 0", "seed 1"]
    assert [trace["x"] for trace in traces] == [[f"{LAYERS - 1}.1"]] * 2  # the synthetic induction head
    heads = LAYERS * HEADS  # two runs of 8 heads: 16 curves of one head each, the same head changing in both
    assert data["per_head_note"] == (
        f"2 of the {2 * heads} head curves (2 runs x {heads} heads) have a phase change of their own induction "
        f"score; 1 of the {heads} heads change in at least one run"
    )


def test_icl_curves_header_and_failures(synthetic):
    _, _, summary = synthetic
    data = page_data(summary.path)
    assert len(data["icl"]) == 2 and len(data["icl"][0]["data"]) == report.MAX_ICL_STEPS + 1  # + the colour bar
    shown = [name for name in report.CURVE_METRICS if name not in HEAD_EFFECTS]  # empty without --head-effects
    assert [metric["name"] for metric in data["metrics"]] == shown  # icl_score included
    text = summary.path.read_text()
    for expected in ("synthetic", "8 random tokens x 4 repeats", f"inductscan {inductscan.__version__}"):
        assert expected in text
    assert "weights are not finite (a synthetic failure)" in text and "1 checkpoint(s) (listed at the end)" in text


def test_phase_table_sorts_by_the_numbers_it_shows(synthetic):
    _, _, summary = synthetic
    table = re.search(r'data-metric="induction"><table class="sortable">(.*?)</table>', summary.path.read_text())
    rows = re.findall(r"<tr>(.*?)</tr>", table.group(1))
    assert "<th>midpoint</th>" in rows[0] and len(rows) == 3
    phases = inductscan.find_phase_changes(inductscan.load_results(summary.path.parent / "results"))
    for row, midpoint in zip(rows[1:], phases["midpoint_tokens"]):
        keys = [float(key) for key in re.findall(r'data-sort="([^"]+)"', row)]
        assert midpoint in keys


def test_a_run_still_rising_at_its_last_checkpoint_is_bounded_and_said_so(tmp_path):
    # seed 1's heads form at step 1100, the scan stops at 1200: its late plateau is not seen
    steps = [step for step in STEPS if step <= 1200]
    write_synthetic_scan(tmp_path / "results", steps=steps, midpoints={0: 300, 1: 1100}, layers=LAYERS, heads=HEADS)
    summary = inductscan.write_report(tmp_path / "results", tmp_path / "report.html")
    text = summary.path.read_text()
    phases = inductscan.find_phase_changes(inductscan.load_results(tmp_path / "results"))
    still = phases.iloc[1]
    assert still["rising_at_end"] and not phases.iloc[0]["rising_at_end"]
    notice = "seed 1: still rising at the last checkpoint (no late plateau seen): scan further to time it (induction)"
    assert f'<p class="notice">{notice}</p>' in text
    table = re.search(r'data-metric="induction"><table class="sortable">(.*?)</table>', text).group(1)
    row = re.findall(r"<tr>(.*?)</tr>", table)[2]
    bound = still["midpoint_tokens_before"]
    assert f'<td data-sort="{float(bound)!r}">after {amount(bound)} (step {still["midpoint_step_before"]})</td>' in row
    layout = page_data(summary.path)["timing"]["induction"]["layout"]
    assert len([shape for shape in layout["shapes"] if shape["type"] == "rect"]) == 1  # seed 0's onset-end only
    dashed = [shape["x0"] for shape in layout["shapes"] if shape.get("line", {}).get("dash") == "dashdot"]
    assert dashed == [bound]
    (arrow,) = layout["annotations"]
    assert arrow["ax"] == pytest.approx(np.log10(bound)) and arrow["x"] > arrow["ax"]  # pointing to later tokens
    assert "still rising at the last checkpoint" in arrow["hovertext"]


def test_a_falling_score_has_a_phase_table(synthetic):
    _, _, summary = synthetic
    table = re.search(r'data-metric="icl_score">(.*?)</div>', summary.path.read_text()).group(1)
    assert table.startswith('<table class="sortable">') and "<th>first &lt;= -0.25</th>" in table
    phases = inductscan.find_phase_changes(inductscan.load_results(summary.path.parent / "results"), "icl_score")
    assert phases["phase_change"].all()
    for midpoint in phases["midpoint_tokens"]:
        assert f'data-sort="{float(midpoint)!r}"' in table


def test_subsample_spreads_evenly_and_keeps_both_ends():
    chosen = report.subsample(609, report.MAX_HEATMAP_STEPS)
    assert len(chosen) == report.MAX_HEATMAP_STEPS and chosen[0] == 0 and chosen[-1] == 608
    assert np.diff(chosen).max() - np.diff(chosen).min() <= 1
    np.testing.assert_array_equal(report.subsample(7, 120), np.arange(7))


def test_rounding_keeps_four_significant_digits_of_the_range():
    assert report.rounded(np.array([0.123456, 0.0001234, np.nan])) == [0.1235, 0.0001, None]
    assert report.rounded(np.array([1234.567, -2.5])) == [1235.0, -2.0]


def test_plotly_and_torch_stay_out_of_the_import_and_of_a_report(synthetic, tmp_path):
    root, _, _ = synthetic
    code = (
        "import sys, inductscan, inductscan.cli; print('plotly' in sys.modules); "
        f"inductscan.write_report({str(root / 'results')!r}, {str(tmp_path / 'page.html')!r}); "
        "print('plotly' in sys.modules, 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert done.stdout.split() == ["False", "True", "False"]


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    """A real scan of tiny random models: no phase change."""
    root = tmp_path_factory.mktemp("report-scan")
    folder = make_local_suite(root / "suite", seeds=(0,), steps=(0, 10, 20))
    suite = local_suite(folder, tokens_per_step=1000)
    run_scan(plan(suite), root / "results", ScanConfig(probe_length=8), progress=False)
    return root / "results"


def test_report_command_on_a_scan_without_a_phase_change(scanned, tmp_path):
    output = tmp_path / "report.html"
    result = CliRunner().invoke(main, ["report", str(scanned), "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"report written to {output} (") and result.output.count("\n") == 1
    text = output.read_text()
    assert "no phase change in the scanned range, in any run" in text
    data = page_data(output)
    assert data["per_head"] is None and data["icl"] is None
    assert data["per_head_note"] == "no head's induction score has a phase change in the scanned range"


def test_report_of_an_empty_folder_or_selection_says_so(scanned, tmp_path):
    empty = tmp_path / "empty"
    identity = {"suite": "synthetic", "repo": "a/b", "run": "b", "revision": "step5", "seed": 0, "step": 5, "tokens": 0}
    write_failure(empty, identity, kind="skipped", reason="the revision does not exist")
    result = CliRunner().invoke(main, ["report", str(empty), "-o", str(tmp_path / "empty.html")])
    assert result.exit_code == 2, result.output  # as README.md's table of exit statuses says: no results is bad input
    (line,) = result.output.splitlines()
    assert line == f"error: {empty} holds no scored checkpoints: scan into it first (the page written to " \
        f"{tmp_path / 'empty.html'} says so)"  # fmt: skip
    text = (tmp_path / "empty.html").read_text()
    assert "holds no scored checkpoints: scan into it first" in text and "the revision does not exist" in text
    assert page_data(tmp_path / "empty.html") is None
    result = CliRunner().invoke(main, ["report", str(scanned), "-o", str(tmp_path / "none.html"), "--seed", "7"])
    assert result.exit_code == 0 and "no scored checkpoint matches the selection" in result.output


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["{missing}", "-o", "{tmp}/report.html"], "no results folder at"),
        (["{scan}", "-o", "{tmp}/a-file/report.html"], "a-file is a file, not a folder; choose another -o"),
        (["{scan}", "-o", "{tmp}/report.png"], "the report is an HTML page: name it .html"),
        (["{scan}", "-o", "{tmp}/pages/report.html"], "pages does not exist; create it, or choose another -o"),
    ],
    ids=["missing-folder", "unwritable", "not-html", "missing-output-folder"],
)
def test_bad_input_is_one_line(scanned, tmp_path, arguments, message):
    (tmp_path / "a-file").write_text("")
    paths = {"missing": str(tmp_path / "missing"), "tmp": str(tmp_path), "scan": str(scanned)}
    result = CliRunner().invoke(main, ["report", *(argument.format(**paths) for argument in arguments)])
    assert result.exit_code == 2
    assert message in result.output and result.output.count("\n") == 1 and "Traceback" not in result.output
    assert not (tmp_path / "pages").exists()


@needs_chromium
def test_the_page_draws_its_charts_and_its_slider_changes_the_heatmap(synthetic):
    _, written, summary = synthetic
    page = browser.selftest(summary.path)
    assert page["errors"] == [] and not [message for message in page["console"] if "Uncaught" in message]
    assert page["charts"] == 5  # timing, heatmap, clicked heads, per-head timing, ICL
    assert page["hidden_charts"] == []
    assert page["dom"].count('class="main-svg"') >= 10  # each chart draws two SVG layers at least
    assert page["timing_traces"] == 2
    last, first = written[0]["induction"][-1], written[0]["induction"][0]  # the slider goes from the last step to 0
    np.testing.assert_allclose(np.asarray(page["z_before"], dtype=float), last, atol=1e-3)
    np.testing.assert_allclose(np.asarray(page["z_after"], dtype=float), first, atol=1e-3)
    assert page["step_label_before"].startswith("step 3,000") and page["step_label_after"].startswith("step 0,")
    assert page["curves_after_click"] == page["curves_before_click"] + 1
    assert page["sorted_column"] == "onset"
    assert [float(key) for key in page["sorted_keys"]] == sorted(float(key) for key in page["sorted_keys"])
    assert page["metric_chosen"] == "icl_score" and page["tables_shown"] == ["icl_score"]
    assert page["timing_title"].startswith("ICL score")
    assert page["heatmap_title"] == "induction of every head: seed 1, step 3,000"  # a head score, the last step


@needs_chromium
def test_a_screenshot_of_the_page_is_not_blank(synthetic, tmp_path):
    _, _, summary = synthetic
    from matplotlib.image import imread

    console = browser.screenshot(summary.path, tmp_path / "report.png", width=1280, height=1600)
    assert not [message for message in console if "Uncaught" in message]
    pixels = imread(tmp_path / "report.png")[..., :3]  # (height, width, RGB) in [0, 1]
    assert pixels.shape[:2] == (1600, 1280)
    not_white = (pixels < 0.9).any(axis=-1).mean()
    assert pixels.std() > 0.05 and not_white > 0.05  # text, lines and the heatmap's colours


@needs_chromium
def test_the_page_of_an_empty_folder_opens_without_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    summary = inductscan.write_report(tmp_path / "empty", tmp_path / "empty.html")
    page = browser.selftest(summary.path)
    assert page["errors"] == [] and not [message for message in page["console"] if "Uncaught" in message]
    assert page["charts"] == 0 and "holds no scored checkpoints" in page["dom"]


@pytest.mark.slow
def test_a_full_stanford_suite_gives_a_page_under_20_mb(tmp_path):
    steps = get_suite("stanford-gpt2-small").steps  # 609
    midpoints = {seed: 2000 * 1.2**seed for seed in range(10)}
    write_synthetic_scan(tmp_path / "results", steps=steps, midpoints=midpoints, layers=12, heads=12, icl=False)
    summary = inductscan.write_report(tmp_path / "results", tmp_path / "report.html")
    assert summary.size < 20e6
    runs = page_data(summary.path)["runs"]
    assert len(runs) == 10 and all(len(run["steps"]) == report.MAX_HEATMAP_STEPS for run in runs)
    assert all(run["checkpoints"] == len(steps) for run in runs)
    if browser.find_chromium():
        page = browser.selftest(summary.path)
        assert page["errors"] == [] and page["charts"] == 4  # no ICL curves
        assert page["hidden_charts"] == ["icl"]  # and no empty chart's height where they would be
