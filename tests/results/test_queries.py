"""Selections of a results table at their edges: a misspelt suite or run is named, not an empty
answer; a threshold equal to a stored score keeps its row; tied heads and identical weights are
settled as the docstrings promise. The tables are written by the scan's own writer, with scores
chosen by hand so that the expected answers need no computation."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

import inductscan
from inductscan.cli import main
from inductscan.errors import ConfigError
from inductscan.icl import IclConfig, IclExamples
from inductscan.metrics import HEAD_METRICS
from inductscan.probe import ProbeConfig, TokenSpec, make_probe
from inductscan.report import best_per_checkpoint
from inductscan.results import token_losses
from inductscan.results.write import write_scores

PROBE = make_probe(ProbeConfig(length=8, batch=2), TokenSpec(0, 96))
CHECKPOINT = {"loss_first": 5.0, "loss_repeat": 4.0, "in_context_gain": 1.0}


def write(out, suite: str, run: str, seed: int, step: int, induction: torch.Tensor, sha256: str | None = None):
    """One checkpoint's rows: ``induction`` (layer, head) as given, the other scores zero."""
    identity = dict(suite=suite, repo=f"org/{run}", run=run, revision=f"step{step}", seed=seed, step=step,
                    tokens=100 * step)  # fmt: skip
    heads = {name: torch.zeros_like(induction) for name in HEAD_METRICS} | {"induction": induction}
    write_scores(out, identity, heads, CHECKPOINT, weights_sha256=sha256 or f"{step:064d}", probe=PROBE,
                       dtype="float32")  # fmt: skip


@pytest.fixture
def folder(tmp_path):
    """Two suites: stanford-gpt2-small's alias run (seed 21) and a local run (seed 0)."""
    out = tmp_path / "results"
    values = torch.tensor([[0.1, 0.2, 0.3], [0.3, 0.05, 0.3]], dtype=torch.float64)  # a three-way tie at 0.3
    for step in (0, 10):
        write(out, "stanford-gpt2-small", "alias-gpt2-small-x21", 21, step, values)
        write(out, "local", "output-3fa2b1c9", 0, step, values / 2)
    return out


def error_line(result, *fragments: str) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    "command",
    [["query"], ["query", "--best"], ["phases"], ["plot", "-o", "{tmp}/t.png"], ["report", "-o", "{tmp}/r.html"]],
    ids=["query", "query-best", "phases", "plot", "report"],
)
def test_a_misspelt_suite_or_run_is_named_with_what_the_folder_holds(folder, tmp_path, command):
    runner = CliRunner()
    words = [word.format(tmp=tmp_path) for word in command]

    def invoke(*selection: str):
        return runner.invoke(main, [words[0], str(folder), *words[1:], *selection])

    error_line(invoke("--run", "nope"), "no run 'nope' in", "runs held: alias-gpt2-small-x21, output-3fa2b1c9")
    error_line(invoke("--run", "output"), "no run 'output'", "did you mean output-3fa2b1c9?")  # its -HASH left out
    error_line(invoke("--suite", "locall"), "no suite 'locall'", "suites held: local, stanford-gpt2-small",
               "did you mean local?")  # fmt: skip
    error_line(invoke("--suite", "stanford-gpt2-smal"), "did you mean stanford-gpt2-small?")
    error_line(invoke("--suite", "pythia-160n"), "did you mean pythia-160m?", "not scanned into")  # the catalog's
    error_line(invoke("--suite", "local", "--run", "alias-gpt2-small-x21"), "runs held: output-3fa2b1c9")
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob("*.html"))
    empty = invoke("--seed", "5")  # a seed that matches nothing is an empty answer, as before
    assert empty.exit_code == 0, empty.output
    assert invoke("--suite", "local", "--run", "output-3fa2b1c9").exit_code == 0


def test_a_suite_held_by_one_of_several_folders_is_no_typo(folder, tmp_path):
    other = tmp_path / "other"
    write(other, "pythia-160m", "pythia-160m", 1234, 0, torch.full((2, 3), 0.5, dtype=torch.float64))
    runner = CliRunner()
    held = runner.invoke(main, ["phases", str(folder), str(other), "--suite", "pythia-160m", "--format", "json"])
    assert held.exit_code == 0, held.output
    assert [row["suite"] for row in json.loads(held.output)] == ["pythia-160m"]
    error_line(
        runner.invoke(main, ["phases", str(folder), str(other), "--suite", "pythia-160"]),
        f"in {folder} or {other}",
        "local, pythia-160m, stanford-gpt2-small",
        "did you mean pythia-160m?",
    )


def test_the_python_api_names_them_too_and_load_results_stays_a_filter(folder):
    with pytest.raises(inductscan.errors.NotHeldError, match="no suite 'toyy'") as raised:
        inductscan.query(folder, suite="toyy")
    assert isinstance(raised.value, LookupError) and raised.value.held == ["local", "stanford-gpt2-small"]
    assert inductscan.load_results(folder, suite="toyy").empty  # a raw filter: documented as an empty frame


def losses_folder(tmp_path, seeds=(0, 1)):
    out = tmp_path / "losses"
    examples = IclExamples(IclConfig("t.parquet", examples=2, context=24), torch.zeros(2, 24, dtype=torch.int64),
                           None, "input_ids")  # fmt: skip
    for seed in seeds:
        for step in (0, 10):
            identity = dict(suite="local", run=f"run-{seed}", seed=seed, step=step, tokens=0)
            token_losses.write(out, identity, torch.full((2, 23), float(seed + step)), examples)
            write(out, "local", f"run-{seed}", seed, step, torch.zeros(2, 3, dtype=torch.float64))
    return out


def test_compare_names_absent_seeds_alike_whether_one_or_both_are(tmp_path):
    out = losses_folder(tmp_path)
    runner = CliRunner()
    one = error_line(runner.invoke(main, ["compare", str(out), "--seed", "0,5"]), "seed(s) 5;", "seeds 0, 1")
    both = error_line(runner.invoke(main, ["compare", str(out), "--seed", "5,7"]), "seed(s) 5, 7;", "seeds 0, 1")
    assert one.replace("5;", "") == both.replace("5, 7;", "")
    error_line(runner.invoke(main, ["compare", str(out), "--suite", "locall"]), "did you mean local?")
    fine = runner.invoke(main, ["compare", str(out), "--seed", "0,1"])
    assert fine.exit_code == 0 and "seed 0 vs seed 1 at step 10" in fine.output, fine.output


def test_a_threshold_equal_to_a_stored_score_keeps_its_row(folder):
    """--min-induction keeps heads *at least* that inductive: 0.3 is stored, exactly, three times."""
    runner = CliRunner()
    answer = runner.invoke(main, ["query", str(folder), "--suite", "stanford-gpt2-small", "--min-induction", "0.3",
                                  "--columns", "step,layer,head,induction", "--format", "json"])  # fmt: skip
    rows = json.loads(answer.output)
    assert [(row["step"], row["layer"], row["head"]) for row in rows] == [
        (step, layer, head) for step in (0, 10) for layer, head in ((0, 2), (1, 0), (1, 2))
    ]
    assert {row["induction"] for row in rows} == {0.3}
    api = inductscan.query(folder, suite="local", min_induction=0.15, columns=["layer", "head"])
    assert sorted(set(zip(api["layer"], api["head"]))) == [(0, 2), (1, 0), (1, 2)]  # 0.3 / 2 == 0.15, stored


def test_best_of_tied_heads_is_the_lowest_layer_then_head(folder):
    """Heads 0.2, 1.0 and 1.2 tie at the highest induction: the best is 0.2, by the command line,
    the Python API and the pandas path alike."""
    runner = CliRunner()
    answer = runner.invoke(main, ["query", str(folder), "--best", "--columns", "suite,step,layer,head",
                                  "--format", "json"])  # fmt: skip
    best = {(row["suite"], row["step"]): (row["layer"], row["head"]) for row in json.loads(answer.output)}
    assert best == {(suite, step): (0, 2) for suite in ("local", "stanford-gpt2-small") for step in (0, 10)}
    api = inductscan.query(folder, best=True, columns=["layer", "head"])
    assert set(zip(api["layer"], api["head"])) == {(0, 2)}
    frame = inductscan.load_results(folder)
    shuffled = frame.sample(frac=1.0, random_state=0)  # the pandas path sorts before it chooses
    pandas_best = best_per_checkpoint(shuffled.reset_index(), "induction")
    assert set(zip(pandas_best["layer"], pandas_best["head"])) == {(0, 2)}


def test_same_weights_as_names_the_earliest_other_step_of_three(tmp_path):
    out = tmp_path / "results"
    values = torch.zeros(1, 2, dtype=torch.float64)
    for step, sha in ((0, "a"), (10, "a"), (20, "b"), (30, "a"), (40, "b")):
        write(out, "local", "run", 0, step, values, sha256=sha * 64)
    write(out, "local", "other", 1, 10, values, sha256="a" * 64)  # another run's identical weights: no match
    frame = inductscan.load_results(out, columns=["same_weights_as"]).reset_index()
    found = frame.set_index(["run", "step"]).same_weights_as.groupby(level=["run", "step"]).first()
    assert pd.isna(found[("other", 10)])
    assert found["run"].to_dict() == {0: 10, 10: 0, 20: 40, 30: 0, 40: 20}
    queried = inductscan.query(out, run="run", columns=["step", "same_weights_as"]).groupby("step").first()
    assert queried.same_weights_as.to_dict() == {0: 10, 10: 0, 20: 40, 30: 0, 40: 20}


def test_sql_from_python_answers_as_the_command_does_and_columns_may_be_one_string(folder):
    statement = "SELECT suite, count(*) AS n, max(induction) AS best FROM scores GROUP BY suite ORDER BY suite"
    frame = inductscan.sql(folder, statement)
    shown = CliRunner().invoke(main, ["query", str(folder), "--sql", statement, "--format", "json"])
    assert frame.to_dict(orient="records") == json.loads(shown.output)
    assert list(frame.columns) == ["suite", "n", "best"] and frame["n"].sum() == len(inductscan.load_results(folder))
    with pytest.raises(ConfigError, match="^statement is empty"):
        inductscan.sql(folder, ";")
    listed = inductscan.query(folder, columns=["step", "layer"])
    assert inductscan.query(folder, columns="step, layer").equals(listed)
