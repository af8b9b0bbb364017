"""Scores of a user's own (docs/custom_scores.md): registered from a module outside the package (a
file given to scan --score-module, or an installed distribution's entry point), computed in the
scan's forward pass, and read by query, phases, plot and report like the package's own, without
the user's code. Values are checked against transformers' own model (eager attention)."""

from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

import inductscan
from inductscan import custom_scores, metrics
from inductscan.cli import main
from inductscan.errors import ConfigError
from inductscan.results.schema import SCHEMA
from inductscan.vocabulary import DERIVED

from .conftest import make_local_suite

LENGTH = 8  # the probe: BOS + 8 tokens x 4 repeats
MODULE = """
import inductscan


def first_token(pattern, layout):
    # mean attention of the repeats' queries to position 0: (batch, head, query, key) -> (head,)
    return pattern[:, :, layout.offset + layout.length :, 0].mean(dim=(0, 2))


def last_repeat_loss(token_losses, layout):
    # the mean loss of predicting the last repeat's tokens: (batch, position - 1) -> one number
    start = layout.offset + (layout.repeats - 1) * layout.length
    return token_losses[:, start - 1 :].mean()


inductscan.register_score(
    "first_token", unit="attention probability", threshold=0.5, min_rise=0.05, version="{version}",
    label="attention to the first token", function=first_token,
)
inductscan.register_score(
    "last_repeat_loss", level="checkpoint", unit="nats", direction="falls", min_rise=0.1, version="1",
    function=last_repeat_loss,
)
"""
CUSTOM = ["first_token", "last_repeat_loss"]


@pytest.fixture(autouse=True)
def forget_scores():
    """No score registered (or learnt from a folder) by one test is known to another."""
    custom_scores.reset()
    modules = set(sys.modules)
    yield
    custom_scores.reset()
    for name in set(sys.modules) - modules:
        if name.startswith("my_scores"):
            del sys.modules[name]


def write_module(folder, version: str = "1", name: str = "my_scores"):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(MODULE).replace("{version}", version))
    return path


def scan(out, suite, *extra: str):
    return CliRunner().invoke(
        main, ["scan", str(suite), "--out", str(out), "--probe-length", str(LENGTH), "--quiet", *extra]
    )


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    return make_local_suite(tmp_path_factory.mktemp("custom") / "suite", seeds=(0, 1), steps=(0, 10, 20))


@pytest.fixture
def scanned(tmp_path, suite):
    """The suite scanned with the user's module, and into another folder without it."""
    module = write_module(tmp_path / "user")
    result = scan(tmp_path / "mine", suite, "--score-module", str(module))
    assert result.exit_code == 0, result.output
    custom_scores.reset()  # a later command reads as a new process would, without the module
    plain = scan(tmp_path / "plain", suite)
    assert plain.exit_code == 0, plain.output
    return tmp_path / "mine", tmp_path / "plain"


def hand_first_token(attention: np.ndarray) -> np.ndarray:
    """The module's first_token by explicit loops; attention (batch, head, P, P), BOS at 0."""
    batch, heads, positions, _ = attention.shape
    queries = range(1 + LENGTH, positions)
    return np.array([np.mean([attention[b, h, q, 0] for b in range(batch) for q in queries]) for h in range(heads)])


def hand_last_repeat_loss(logits: np.ndarray, ids: np.ndarray) -> float:
    """Cross-entropy of each token of the last repeat (positions 1 + 3L .. P - 1) from the position before."""
    positions = ids.shape[1]
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    losses = [
        -log_probabilities[b, p - 1, ids[b, p]] for b in range(len(ids)) for p in range(1 + 3 * LENGTH, positions)
    ]
    return float(np.mean(losses))


def test_values_equal_the_function_applied_to_transformers_attention(scanned, suite):
    from transformers import GPT2LMHeadModel

    out, _ = scanned
    ids = inductscan.load_probe(out)
    results = inductscan.load_results(out).droplevel("run")
    for seed, step in ((0, 0), (1, 20)):
        model = GPT2LMHeadModel.from_pretrained(
            suite / f"seed{seed}" / f"checkpoint-{step}", attn_implementation="eager"
        )
        with torch.no_grad():
            output = model(ids, output_attentions=True)
        expected_loss = hand_last_repeat_loss(output.logits.double().numpy(), ids.numpy())
        for layer, attention in enumerate(output.attentions):
            rows = results.loc[("local", seed, step, layer)]
            np.testing.assert_allclose(
                rows["first_token"].to_numpy(), hand_first_token(attention.double().numpy()), atol=1e-6
            )
            np.testing.assert_allclose(rows["last_repeat_loss"].to_numpy(), expected_loss, rtol=1e-5)


def test_columns_follow_the_tables_own_and_leave_the_built_in_ones_unchanged(scanned):
    out, plain = scanned
    mine = inductscan.load_results(out)
    assert list(mine.columns[-len(CUSTOM) - 2 : -2]) == CUSTOM  # then the two derived columns
    theirs = inductscan.load_results(plain)
    shared = [name for name in theirs.columns if name not in ("scored_at", "custom_scores")]
    assert list(mine.columns[: len(theirs.columns) - 2]) == list(theirs.columns[:-2])  # the same columns first
    pd.testing.assert_frame_equal(mine[shared], theirs[shared])
    assert (mine["custom_scores"] == json.dumps({"first_token": "1", "last_repeat_loss": "1"})).all()
    assert theirs["custom_scores"].isna().all()
    declared = json.loads((out / "custom_scores" / "first_token.json").read_text())
    assert declared["label"] == "attention to the first token" and declared["version"] == "1"


def test_query_phases_plot_and_report_read_them_without_the_module(scanned, tmp_path):
    out, _ = scanned
    (tmp_path / "user" / "my_scores.py").unlink()  # reading must not need it
    runner = CliRunner()
    listed = runner.invoke(main, ["query", str(out), "--seed", "0", "--format", "csv"])
    assert listed.exit_code == 0, listed.output
    header = listed.output.splitlines()[0].split(",")
    assert header[-len(CUSTOM) :] == CUSTOM  # by default after the table's own scores
    chosen = runner.invoke(main, ["query", str(out), "--columns", "step,layer,head,first_token", "--format", "csv"])
    assert chosen.exit_code == 0 and chosen.output.splitlines()[0] == "step,layer,head,first_token", chosen.output
    best = runner.invoke(main, ["query", str(out), "--best", "--columns", "step,first_token", "--format", "json"])
    assert best.exit_code == 0, best.output
    for metric in CUSTOM:
        timed = runner.invoke(main, ["phases", str(out), "--metric", metric, "--format", "csv"])
        assert timed.exit_code == 0, timed.output
        assert timed.output.count(f",{metric},") == 2, timed.output  # one row a seed, its metric named
    per_head = runner.invoke(main, ["phases", str(out), "--metric", "first_token", "--per-head"])
    assert per_head.exit_code == 0, per_head.output
    for kind in ("timing", "heatmap", "seeds"):
        drawn = runner.invoke(
            main, ["plot", str(out), "-o", str(tmp_path / f"{kind}.png"), "--kind", kind, "--metric", "first_token"]
        )
        assert drawn.exit_code == 0, drawn.output
        assert (tmp_path / f"{kind}.png").stat().st_size > 0
    reported = runner.invoke(main, ["report", str(out), "-o", str(tmp_path / "report.html")])
    assert reported.exit_code == 0, reported.output
    page = (tmp_path / "report.html").read_text()
    assert "attention to the first token" in page and "last_repeat_loss" in page
    assert "<dt>users&#x27; scores</dt><dd>first_token version 1, last_repeat_loss version 1</dd>" in page
    timing = inductscan.find_phase_changes(out, metric="last_repeat_loss")  # the Python API, from the path
    assert list(timing["metric"].unique()) == ["last_repeat_loss"]


def test_a_scan_with_another_version_or_without_the_score_is_refused(scanned, suite, tmp_path):
    out, plain = scanned
    other = write_module(tmp_path / "user", version="2", name="my_scores_v2")
    changed = scan(out, suite, "--score-module", str(other))
    assert changed.exit_code == 2
    assert "score first_token version 1 there, 2 here" in changed.output, changed.output
    custom_scores.reset()
    without = scan(out, suite)
    assert without.exit_code == 2
    assert "score first_token version 1 there, none here" in without.output, without.output
    assert "score last_repeat_loss version 1 there, none here" in without.output
    added = scan(plain, suite, "--score-module", str(write_module(tmp_path / "user", name="my_scores_again")))
    assert added.exit_code == 2 and "score first_token version none there, 1 here" in added.output, added.output


def test_an_installed_distributions_entry_point_registers_its_scores(tmp_path, suite):
    site = tmp_path / "site"
    write_module(site, name="my_scores_plugin")
    info = site / "my_scores_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-scores-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[inductscan.scores]\nmine = my_scores_plugin\n")
    sys.path.insert(0, str(site))
    try:
        summary = inductscan.scan(
            str(suite), tmp_path / "out", seeds=[0], steps=[10], config=inductscan.ScanConfig(probe_length=LENGTH)
        )
    finally:
        sys.path.remove(str(site))
    assert summary.scored == 1
    frame = inductscan.load_results(tmp_path / "out", columns=CUSTOM)
    assert frame["first_token"].notna().all() and frame["last_repeat_loss"].notna().all()


def test_a_bad_registration_or_result_is_refused_in_one_line(tmp_path, suite):
    with pytest.raises(ConfigError, match="one of inductscan's own"):
        inductscan.register_score("induction", unit="x", min_rise=0.1, version="1", function=len)
    with pytest.raises(ConfigError, match="score name 'probe' is a column of the table already"):
        inductscan.register_score("probe", unit="x", min_rise=0.1, version="1", function=len)
    with pytest.raises(ConfigError, match="lower-case letters"):
        inductscan.register_score("First", unit="x", min_rise=0.1, version="1", function=len)
    with pytest.raises(ConfigError, match="level must be one of"):
        inductscan.register_score("mine", level="layer", unit="x", min_rise=0.1, version="1", function=len)
    assert "mine" not in metrics.all_metrics()
    inductscan.register_score(
        "two_values", unit="x", min_rise=0.1, version="1", function=lambda pattern, layout: pattern[0, :2, 0, 0]
    )
    with pytest.raises(
        ConfigError, match=r"score two_values: its function returned shape \(2,\), expected one value per head \(4,\)"
    ):
        inductscan.scan(
            str(suite), tmp_path / "out", seeds=[0], steps=[0], config=inductscan.ScanConfig(probe_length=LENGTH)
        )
    # the failed scan wrote no row, so it keeps no claim on the folder's settings: mended, and its
    # version raised as docs/custom_scores.md says, the score scans into the same folder
    assert not (tmp_path / "out" / "settings" / "local.json").exists()
    # nor a declaration of the score: a later scan without it would read as a column of a score that ran
    assert not (tmp_path / "out" / "custom_scores" / "two_values.json").exists()
    inductscan.register_score(
        "two_values", unit="x", min_rise=0.1, version="2", function=lambda pattern, layout: pattern[0, :, 0, 0]
    )
    summary = inductscan.scan(
        str(suite), tmp_path / "out", seeds=[0], steps=[0], config=inductscan.ScanConfig(probe_length=LENGTH)
    )
    assert summary.scored == 1 and (tmp_path / "out" / "settings" / "local.json").exists()
    inductscan.unregister_score("two_values")
    assert "two_values" not in metrics.all_metrics()


def test_a_model_run_through_transformers_gets_them_from_its_own_attention(tmp_path):
    from transformers import AutoModelForCausalLM

    from inductscan.testing import gpt_neo_model

    suite = make_local_suite(tmp_path / "neo", seeds=(0,), steps=(10,), factory=gpt_neo_model)
    result = scan(tmp_path / "out", suite, "--score-module", str(write_module(tmp_path / "user")))
    assert result.exit_code == 0, result.output
    ids = inductscan.load_probe(tmp_path / "out")
    results = inductscan.load_results(tmp_path / "out", columns=CUSTOM)
    model = AutoModelForCausalLM.from_pretrained(suite / "seed0" / "checkpoint-10", attn_implementation="eager")
    with torch.no_grad():
        output = model(ids, output_attentions=True)
    for layer, attention in enumerate(output.attentions):
        rows = results.xs(layer, level="layer")
        np.testing.assert_allclose(
            rows["first_token"].to_numpy(), hand_first_token(attention.double().numpy()), atol=1e-6
        )
    expected = hand_last_repeat_loss(output.logits.double().numpy(), ids.numpy())
    np.testing.assert_allclose(results["last_repeat_loss"].to_numpy(), expected, rtol=1e-5)


def test_a_score_module_file_never_stands_in_for_an_imported_module(tmp_path, suite):
    (tmp_path / "json.py").write_text("raise AssertionError('never run')\n")
    result = scan(tmp_path / "out", suite, "--score-module", str(tmp_path / "json.py"))
    assert result.exit_code == 2
    assert (
        "cannot import --score-module" in result.output and "a module named json is imported already" in result.output
    )
    missing = scan(tmp_path / "out", suite, "--score-module", "no_such_scores_module")
    assert missing.exit_code == 2 and "cannot import --score-module no_such_scores_module" in missing.output
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_a_score_module_that_fails_is_one_line_naming_its_line(tmp_path, suite, monkeypatch):
    """The user's own code failing on import (a registration without its unit) is one line that
    names the error and the line of the file; a module named as a file of the working folder, not
    on the path, gets a hint to give the file."""
    (tmp_path / "broken_scores.py").write_text(
        "import inductscan\n\ninductscan.register_score('broken', version='1', function=len)\n"
    )
    monkeypatch.chdir(tmp_path)
    failed = scan(tmp_path / "out", suite, "--score-module", "broken_scores.py")
    assert failed.exit_code == 2 and len(failed.output.splitlines()) == 1, failed.output
    assert "TypeError" in failed.output and "missing 2 required keyword-only arguments" in failed.output
    assert f"{tmp_path / 'broken_scores.py'}, line 3)" in failed.output
    assert not (tmp_path / "out").exists()
    monkeypatch.setattr(sys, "path", [entry for entry in sys.path if entry not in ("", ".", str(tmp_path))])
    with pytest.raises(ConfigError, match=r"give score_modules broken_scores\.py, or put its folder on PYTHONPATH"):
        custom_scores.import_modules(["broken_scores"])


def test_the_reserved_names_are_the_tables_other_columns():
    """custom_scores spells them out (it must not import pyarrow): checked against the schema here."""
    others = {name for name in SCHEMA.names if name not in metrics.METRICS} | set(DERIVED)
    assert custom_scores.RESERVED == others


def test_folders_with_and_without_a_score_join_for_the_packages_own(tmp_path, suite):
    """The versions of a user's score keep apart only the rows that read it."""
    mine = scan(tmp_path / "a", suite, "--seeds", "0", "--score-module", str(write_module(tmp_path / "user")))
    assert mine.exit_code == 0, mine.output
    custom_scores.reset()
    plain = scan(tmp_path / "b", suite, "--seeds", "1")
    assert plain.exit_code == 0, plain.output
    joined = CliRunner().invoke(main, ["phases", str(tmp_path / "a"), str(tmp_path / "b"), "--format", "csv"])
    assert joined.exit_code == 0, joined.output
    assert joined.output.count(",induction,") == 2  # a row for each folder's seed
