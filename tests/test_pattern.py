"""One head's attention at one checkpoint (`inductscan pattern`, `report --patterns`): the values are
transformers' own eager attention for the same checkpoint and probe ids, the figure draws them and
marks exactly the cells the induction score weighs, and bad input is one line (exit 2)."""

from __future__ import annotations

import base64
import io
import re
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from matplotlib.collections import PatchCollection
from matplotlib.image import imread

import inductscan
from inductscan.cli import main
from inductscan.plan import ScanConfig, plan
from inductscan.runner import run_scan
from inductscan.suites import local_suite
from inductscan.testing import browser, gptj_model, llama_model

from .conftest import gpt2_model, make_local_suite, neox_model, place_in_hub_cache, run_cli
from .test_hub import REPO, stanford_like

LENGTH = 8  # the probe: [BOS] + 8 random tokens x 4 repeats = 33 positions
TOLERANCE = 1e-5


def scan(root, factory=gpt2_model, seeds=(0, 1), steps=(0, 10)):
    """A local suite of tiny random models, scanned with a short probe; (its folder, the results)."""
    folder = make_local_suite(root / "suite", seeds=seeds, steps=steps, factory=factory)
    run_scan(plan(local_suite(folder)), root / "results", ScanConfig(probe_length=LENGTH), progress=False)
    return folder, root / "results"


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    return scan(tmp_path_factory.mktemp("pattern"))


def transformers_attention(checkpoint, ids: torch.Tensor, layer: int, head: int) -> np.ndarray:
    """The head's attention probabilities from transformers' own model (eager attention), (batch, query, key)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(checkpoint, attn_implementation="eager", dtype=torch.float32).eval()
    with torch.no_grad():
        attentions = model(ids, output_attentions=True).attentions
    return attentions[layer][:, head].double().numpy()


def marked_by_hand(positions: int, length: int, offset: int = 1) -> set[tuple[int, int]]:
    """docs/scores.md: induction averages A[q, q - L + 1] over the queries of repeats 2..R."""
    return {(query, query - length + 1) for query in range(offset + length, positions)}


def test_the_pattern_is_transformers_own_attention_for_gpt2(scanned):
    folder, results = scanned
    ids = inductscan.load_probe(results)
    expected = transformers_attention(folder / "seed1" / "checkpoint-10", ids, layer=2, head=1)
    mean = inductscan.head_pattern(results, 10, 2, 1, seed=1)
    assert mean.values.shape == (1 + 4 * LENGTH,) * 2
    np.testing.assert_allclose(mean.values, expected.mean(axis=0), atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(np.asarray(mean), expected.mean(axis=0), atol=TOLERANCE, rtol=0)
    one = inductscan.head_pattern(results, 10, 2, 1, seed=1, sequence=3)
    np.testing.assert_allclose(one.values, expected[3], atol=TOLERANCE, rtol=0)
    streamed = inductscan.head_pattern(results, 10, 2, 1, seed=1, layer_by_layer=True)  # each layer read as reached
    np.testing.assert_allclose(streamed.values, expected.mean(axis=0), atol=TOLERANCE, rtol=0)
    # the hand-listed cells of transformers' mean pattern average to the scan's recorded score
    recorded = inductscan.load_results(results, seed=1, step=10, layer=2, head=1, columns=["induction"])
    queries, keys = zip(*marked_by_hand(len(expected[0]), LENGTH))
    assert expected.mean(axis=0)[list(queries), list(keys)].mean() == pytest.approx(
        recorded["induction"].item(), abs=1e-6
    )
    assert mean.recorded_induction == recorded["induction"].item()


@pytest.mark.parametrize(
    "factory", [neox_model, llama_model, gptj_model], ids=["gpt-neox", "llama", "gptj-through-transformers"]
)
def test_the_pattern_is_transformers_own_attention_for_other_families(tmp_path, factory):
    folder, results = scan(tmp_path, factory=factory, seeds=(0,), steps=(5,))
    ids = inductscan.load_probe(results)
    layer, head = 1, 3
    expected = transformers_attention(folder / "seed0" / "checkpoint-5", ids, layer, head)
    found = inductscan.head_pattern(results, 5, layer, head)
    np.testing.assert_allclose(found.values, expected.mean(axis=0), atol=TOLERANCE, rtol=0)


def test_the_figure_draws_the_values_and_marks_the_induction_cells(scanned):
    folder, results = scanned
    ids = inductscan.load_probe(results)
    expected = transformers_attention(folder / "seed0" / "checkpoint-0", ids, layer=1, head=2).mean(axis=0)
    figure = inductscan.plot_head_pattern(inductscan.head_pattern(results, 0, 1, 2, seed=0))
    axes = figure.axes[0]
    (image,) = axes.images
    drawn = image.get_array()  # what the AxesImage holds: the values, the cells above the diagonal masked
    positions = len(expected)
    future = np.triu(np.ones((positions, positions), dtype=bool), k=1)
    np.testing.assert_array_equal(np.ma.getmaskarray(drawn), future)
    np.testing.assert_allclose(drawn.data[~future], expected[~future], atol=TOLERANCE, rtol=0)
    (outlines,) = [artist for artist in axes.collections if isinstance(artist, PatchCollection)]
    corners = {tuple(path.get_extents().p0) for path in outlines.get_paths()}  # (key - 0.5, query - 0.5)
    cells = {(round(y + 0.5), round(x + 0.5)) for x, y in corners}
    assert cells == marked_by_hand(positions, LENGTH) and len(outlines.get_paths()) == len(cells)


def test_the_command_writes_a_png(scanned, tmp_path):
    _, results = scanned
    output = tmp_path / "pattern.png"
    arguments = ["pattern", str(results), "--step", "10", "--layer", "1", "--head", "0", "--seed", "0"]
    result = CliRunner().invoke(main, [*arguments, "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert result.output.count("\n") == 1 and result.output.strip().endswith(f"written to {output}")
    assert "step 10 (mean of the probe's sequences; induction" in result.output
    pixels = imread(output)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100 and pixels.std() > 0.05


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--step", "15", "--layer", "0", "--head", "0", "--seed", "0"], "no scored checkpoint at step 15 in run "),
        (["--step", "10", "--layer", "3", "--head", "0", "--seed", "0"], "--layer 3 is out of range: the checkpoint "
         "has 3 layers (0 .. 2)"),
        (["--step", "10", "--layer", "0", "--head", "-1", "--seed", "0"], "--head -1 is out of range"),
        (["--step", "10", "--layer", "0", "--head", "0", "--seed", "0", "--sequence", "10"], "--sequence 10 is out "
         "of range: the probe has 10 sequences"),
        (["--step", "10", "--layer", "0", "--head", "0"], "step 10 is scored in 2 runs"),
        (["--step", "10", "--layer", "0", "--head", "0", "--run", "nope"], "no run 'nope' in "),
        (["--step", "10", "--layer", "0", "--head", "0", "--seed", "0", "-o", "{tmp}/pattern.txt"], "cannot tell the "
         "image format"),
        (["--step", "10", "--layer", "0", "--head", "0", "--seed", "0", "--device", "tpu"], "device 'tpu'"),
    ],
    ids=["step", "layer", "head", "sequence", "several-runs", "unknown-run", "suffix", "device"],
)  # fmt: skip
def test_bad_input_is_one_line(scanned, tmp_path, arguments, message):
    _, results = scanned
    arguments = [argument.format(tmp=tmp_path) for argument in arguments]
    output = [] if "-o" in arguments else ["-o", str(tmp_path / "pattern.png")]
    result = CliRunner().invoke(main, ["pattern", str(results), *arguments, *output])
    assert result.exit_code == 2, result.output
    assert message in result.output and result.output.count("\n") == 1 and "Traceback" not in result.output


def test_a_checkpoint_gone_or_changed_since_the_scan_is_one_line(tmp_path):
    folder, results = scan(tmp_path, seeds=(0,), steps=(0, 10))
    arguments = ["pattern", str(results), "--layer", "0", "--head", "0", "-o", str(tmp_path / "pattern.png")]
    gpt2_model(777).save_pretrained(folder / "seed0" / "checkpoint-10")  # other weights under the same name
    changed = CliRunner().invoke(main, [*arguments, "--step", "10"])
    assert changed.exit_code == 2 and changed.output.count("\n") == 1
    assert "have changed since the scan (sha256" in changed.output
    shutil.rmtree(folder / "seed0" / "checkpoint-0")
    gone = CliRunner().invoke(main, [*arguments, "--step", "0"])
    assert gone.exit_code == 2 and gone.output.count("\n") == 1
    assert re.match(r"error: cannot re-run seed0-\w+ step 0: .*no step 0", gone.output)
    assert not (tmp_path / "pattern.png").exists()


def test_a_hub_checkpoint_is_found_in_the_cache_and_its_absence_is_one_line(tmp_path):
    hf_home = tmp_path / "hf-home"
    for step in (0, 10):
        made = stanford_like(tmp_path, step)
        files = {name: made / name for name in ("config.json", "pytorch_model.bin")}
        place_in_hub_cache(hf_home, REPO, f"checkpoint-{step}", files)
    env = {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    results = tmp_path / "results"
    scanned = run_cli("scan", "stanford-gpt2-small", "--seeds", "21", "--steps", "0,10", "--out", str(results),
                      "--quiet", env=env)  # fmt: skip
    assert scanned.returncode == 0, scanned.stderr + scanned.stdout
    output = tmp_path / "hub.png"
    arguments = ["pattern", str(results), "--step", "10", "--layer", "1", "--head", "1", "-o", str(output)]
    blobs = hf_home / "hub" / f"models--{REPO.replace('/', '--')}" / "blobs"
    held = sorted(blobs.iterdir())
    drawn = run_cli(*arguments, env=env)
    assert drawn.returncode == 0, drawn.stderr + drawn.stdout
    assert "alias-gpt2-small-x21 (seed 21) step 10" in drawn.stdout and imread(output).size > 0
    assert sorted(blobs.iterdir()) == held  # found in the cache: what the command did not download stays
    shutil.rmtree(hf_home / "hub")
    gone = run_cli(*arguments, env=env)
    assert gone.returncode == 2 and gone.stderr.count("\n") == 1, gone.stderr
    assert gone.stderr.startswith("error: cannot re-run alias-gpt2-small-x21 step 10: ") and "cache" in gone.stderr


def pattern_images(page) -> list[bytes]:
    encoded = re.findall(r'<img class="pattern" alt="[^"]*" src="data:image/png;base64,([^"]+)"', page.read_text())
    return [base64.b64decode(text) for text in encoded]


def test_the_report_embeds_the_top_heads_patterns(scanned, tmp_path):
    _, results = scanned
    page = tmp_path / "report.html"
    result = CliRunner().invoke(main, ["report", str(results), "-o", str(page), "--patterns", "1"])
    assert result.exit_code == 0, result.output
    images = pattern_images(page)
    assert len(images) == 2  # one head for each of the two runs
    for image in images:
        assert imread(io.BytesIO(image), format="png").shape[0] > 100
    text = page.read_text()
    assert "no phase change in the scanned range: its last checkpoint" in text  # random models: step 10
    best = inductscan.query(results, step_range=(10, 10), best=True)
    for row in best.itertuples():
        assert f"layer {row.layer} head {row.head}: induction {row.induction:.3f}" in text
    plain = tmp_path / "plain.html"
    assert CliRunner().invoke(main, ["report", str(results), "-o", str(plain)]).exit_code == 0
    assert pattern_images(plain) == [] and "Attention patterns" not in plain.read_text()


@pytest.mark.skipif(browser.find_chromium() is None, reason="chromium is not installed (apt-get install chromium)")
def test_the_report_s_patterns_render_in_a_browser(scanned, tmp_path):
    _, results = scanned
    summary = inductscan.write_report(results, tmp_path / "report.html", seed=0, patterns=2)
    page = browser.selftest(summary.path)
    assert page["errors"] == [] and not [message for message in page["console"] if "Uncaught" in message]
    assert len(page["pattern_widths"]) == 2 and all(width > 100 for width in page["pattern_widths"])


@pytest.mark.parametrize(
    "midpoint, expected",
    [(420.0, 400), (450.0, 500), (float("nan"), 500)],
    ids=["nearer-the-earlier", "nearer-the-later-in-log-steps", "only-bounded"],
)
def test_the_report_shows_the_checkpoint_nearest_the_midpoint(midpoint, expected):
    import pandas as pd

    from inductscan.report_patterns import pattern_checkpoint

    steps = [0, 100, 400, 500, 1000]
    phase = pd.Series(
        {"phase_change": True, "midpoint_step": midpoint, "midpoint_step_before": 400, "midpoint_step_after": 500}
    )
    assert pattern_checkpoint(phase, steps)[0] == expected  # log(450/400) = 0.118 > log(500/450) = 0.105
    from_zero = phase.copy()
    from_zero[["midpoint_step", "midpoint_step_before", "midpoint_step_after"]] = [50.0, 0, 100]
    assert pattern_checkpoint(from_zero, steps)[0] == 100  # step 0 has no place on a log axis
    flat = pd.Series({"phase_change": False, "note": "no phase change in the scanned range"})
    assert pattern_checkpoint(flat, steps) == (1000, "no phase change in the scanned range: its last checkpoint")
    too_few = pd.Series({"phase_change": False, "note": "too few checkpoints to time it: 4"})
    assert pattern_checkpoint(too_few, steps) == (1000, "too few checkpoints to time its rise: its last checkpoint")


def test_a_damaged_probe_record_is_one_line(scanned, tmp_path):
    _, made = scanned
    results = tmp_path / "results"
    shutil.copytree(made, results)
    (probe,) = (results / "probes").glob("*.json")
    probe.write_text("garbage, not the probe's record")
    arguments = ["pattern", str(results), "--step", "10", "--layer", "1", "--head", "0", "--seed", "0"]
    result = CliRunner().invoke(main, [*arguments, "-o", str(tmp_path / "pattern.png")])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and result.output.startswith(f"error: {probe} is damaged (")
    assert "the probe's token ids cannot be read" in result.output and not (tmp_path / "pattern.png").exists()
