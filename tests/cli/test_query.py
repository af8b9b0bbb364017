"""``inductscan query`` and ``inductscan compact`` (inductscan/cli/query.py)."""

from __future__ import annotations

import json

import pytest

import inductscan
from inductscan.cli import main

from .conftest import one_line_error


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_query_formats_and_filters(runner, scanned, fmt):
    _, out = scanned
    result = runner.invoke(main, ["query", str(out), "--seed", "1", "--layer", "2", "--format", fmt])
    assert result.exit_code == 0, result.output
    if fmt == "json":
        rows = json.loads(result.output)
        assert len(rows) == 3 * 4 and {row["seed"] for row in rows} == {1} and {row["layer"] for row in rows} == {2}
    elif fmt == "csv":
        assert result.output.splitlines()[0].startswith("suite,run,seed,step,tokens,layer,head,induction")
        assert len(result.output.splitlines()) == 1 + 12


def test_query_best_top_and_threshold(runner, scanned):
    _, out = scanned
    best = json.loads(runner.invoke(main, ["query", str(out), "--best", "--format", "json"]).output)
    assert len(best) == 6
    frame = inductscan.load_results(out).reset_index()
    for row in best:
        same = frame[(frame.seed == row["seed"]) & (frame.step == row["step"])]
        assert row["induction"] == pytest.approx(same.induction.max())
    top = json.loads(runner.invoke(main, ["query", str(out), "--top", "3", "--format", "json"]).output)
    assert [row["induction"] for row in top] == pytest.approx(sorted(frame.induction, reverse=True)[:3], abs=1e-14)
    threshold = frame.induction.median()
    above = json.loads(
        runner.invoke(main, ["query", str(out), "--min-induction", str(threshold), "--format", "json"]).output
    )
    assert len(above) == (frame.induction >= threshold).sum()


def test_bad_queries_give_one_line(runner, tmp_path, scanned):
    _, out = scanned
    one_line_error(runner.invoke(main, ["query", str(out), "--columns", "nonsense"]), "unknown column")
    one_line_error(runner.invoke(main, ["query", str(tmp_path / "nowhere")]), "no results folder")
    one_line_error(runner.invoke(main, ["query", str(out), "--sql", "SELECT 1", "--step-range", "0:5"]), "--step-range")
    one_line_error(runner.invoke(main, ["query", str(out), "--suite", "toyy"]), "no suite 'toyy'")


def test_compact_folds_and_says_so(runner, scanned):
    _, out = scanned
    result = runner.invoke(main, ["compact", str(out)])
    assert result.exit_code == 0 and result.output.startswith(f"compacted {out}: ")
    assert len(inductscan.load_results(out)) == 6 * 3 * 4


@pytest.mark.parametrize(
    "columns, best, repeated",
    [("step,step", False, "step"), ("seed,step,layer,step", True, "step"), ("step,hazard,hazard", False, "hazard")],
    ids=["plain", "best", "derived"],
)
def test_a_column_named_twice_is_refused(runner, scanned, columns, best, repeated):
    _, out = scanned
    arguments = ["query", str(out), "--columns", columns, *(["--best"] if best else [])]
    one_line_error(runner.invoke(main, arguments), f"--columns names {repeated} more than once")
    with pytest.raises(inductscan.errors.ConfigError, match=f"columns names {repeated} more than once"):
        inductscan.query(out, columns=columns, best=best)
