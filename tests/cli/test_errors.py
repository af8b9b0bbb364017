"""Library errors name parameters; the command line names the same failure by its flag, the map
written once (inductscan/cli/errors.py); and each failure's exit status."""

from __future__ import annotations

import json
import re

import pytest

import inductscan
from inductscan.cli import main
from inductscan.cli.errors import FLAGS, flag, one_line
from inductscan.errors import ConfigError, InductscanError, parameter
from inductscan.icl import IclConfig
from inductscan.plan import PlanArguments, ScanConfig, plan_scan

from .conftest import one_line_error


def test_flags_are_the_parameter_names_with_dashes_unless_mapped():
    assert flag("threads") == "--threads"
    assert flag("head_effects_top") == "--head-effects-top"
    assert flag("icl.examples") == "--icl-examples"  # a field of ScanConfig.icl
    assert flag("icl") == "--icl-dataset" and flag("output") == "-o"
    assert all(value.startswith("-") for value in FLAGS.values())


def test_a_message_names_the_parameter_for_python_and_the_flag_for_the_command_line():
    error = ConfigError(f"{parameter('max_disk')} cannot bound the disk with {parameter('keep_weights')}")
    assert str(error) == "max_disk cannot bound the disk with keep_weights"
    assert one_line(error) == "error: --max-disk cannot bound the disk with --keep-weights"
    assert str(ConfigError(f"{parameter('icl.context')} too short")) == "context too short"
    assert str(InductscanError("no parameter named")) == "no parameter named"


# A library call, and the command that makes the same call: the message names the parameter, then the flag.
SAME_FAILURES = [
    (lambda: ScanConfig(threads=0), ["--threads", "0"], "threads must be >= 1, got 0"),
    (lambda: ScanConfig(prefetch=-1), ["--prefetch", "-1"], "prefetch must be >= 0, got -1"),
    (
        lambda: ScanConfig(max_disk=10**9, keep_weights=True),
        ["--max-disk", "1GB", "--keep-weights"],
        "max_disk cannot bound the disk when keep_weights keeps every checkpoint; choose one",
    ),
    (
        lambda: ScanConfig(token_losses=True),
        ["--token-losses"],
        "token_losses stores the losses of the ICL examples: it needs icl",
    ),
    (
        lambda: IclConfig("x", examples=0),
        ["--icl-dataset", "x", "--icl-examples", "0"],
        "examples must be >= 1, got 0",
    ),
]


@pytest.mark.parametrize(("call", "options", "message"), SAME_FAILURES)
def test_the_same_failure_through_the_library_and_the_command_line(runner, tmp_path, call, options, message):
    with pytest.raises(ConfigError) as raised:
        call()
    assert str(raised.value) == message
    result = runner.invoke(main, ["scan", str(tmp_path), "--out", str(tmp_path / "out"), *options])
    shown = one_line_error(result)
    assert shown == one_line(raised.value) and shown != f"error: {message}"


PLAN_FAILURES = [
    (PlanArguments(every=0), ["--every", "0"], "every must be >= 1, got 0", "--every must be"),
    (PlanArguments(shard="5/2"), ["--shard", "5/2"], "shard must be I/N with 0 <= I < N", "--shard must be"),
    (
        PlanArguments(tokens_per_step=-3),
        ["--tokens-per-step", "-3"],
        "tokens_per_step must be >= 0",
        "--tokens-per-step",
    ),
]


@pytest.mark.parametrize(("arguments", "options", "message", "flagged"), PLAN_FAILURES)
def test_plan_errors_name_the_plan_arguments(runner, scanned, arguments, options, message, flagged):
    folder, out = scanned
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        plan_scan(str(folder), arguments)
    shown = one_line_error(runner.invoke(main, ["scan", str(folder), "--out", str(out), *options]))
    assert shown.startswith(f"error: {flagged}")


def test_exit_statuses(runner, tmp_path, scanned):
    folder, out = scanned
    assert runner.invoke(main, ["query", str(out), "--best"]).exit_code == 0
    assert runner.invoke(main, ["query", str(tmp_path / "none")]).exit_code == 2  # bad input
    assert runner.invoke(main, ["query", str(out), "--seed", "x"]).exit_code == 2  # a usage error
    assert runner.invoke(main, ["query", str(out), "--seed", ""]).exit_code == 2  # no seed is not every seed
    assert runner.invoke(main, ["status", str(out), "--suite", str(folder), "--steps", "0"]).exit_code == 0


def test_the_results_package_names_parameters_too(runner, scanned):
    from inductscan.results import sql

    _, scanned = scanned
    with pytest.raises(ConfigError) as raised:
        sql.select(scanned, {}, top=0)
    assert str(raised.value) == "top must be >= 1, got 0"
    result = runner.invoke(main, ["query", str(scanned), "--top", "0"])
    assert one_line_error(result) == one_line(raised.value) == "error: --top must be >= 1, got 0"


def test_a_probe_setting_is_named_as_the_scan_takes_it(runner, scanned, tmp_path):
    from inductscan.probe import ProbeConfig

    with pytest.raises(ConfigError) as raised:
        ProbeConfig(length=0)
    assert str(raised.value) == "probe_length must be an integer >= 2, got 0"  # ScanConfig's name for it
    folder, _ = scanned
    result = runner.invoke(main, ["scan", str(folder), "--out", str(tmp_path / "out"), "--probe-length", "0"])
    assert one_line_error(result) == "error: --probe-length must be an integer >= 2, got 0"


def test_an_option_that_does_nothing_alone_or_an_empty_answer_is_refused(runner, scanned, tmp_path):
    folder, out = scanned
    alone = runner.invoke(main, ["scan", str(folder), "--out", str(tmp_path / "o"), "--head-effects-top", "3"])
    assert one_line_error(alone) == "error: --head-effects-top needs --head-effects"
    assert not (tmp_path / "o").exists()
    assert one_line_error(runner.invoke(main, ["query", str(out), "--sql", " "])).startswith("error: --sql is empty")
    unnamed = runner.invoke(main, ["suites", "--results", str(out)])
    assert one_line_error(unnamed).startswith("error: --results shows one listed suite's runs and steps: name")
    missing = runner.invoke(main, ["suites", "pythia-160m", "--results", str(tmp_path / "missing")])
    assert one_line_error(missing) == f"error: no results folder at {tmp_path / 'missing'}"


def test_query_answers_sql_rows_or_a_derived_frame_as_the_command_prints_them(scanned):
    from inductscan.results.answers import answer
    from inductscan.results.rows import Rows

    _, out = scanned
    counted = answer(out, statement="SELECT count(*) AS n FROM scores")
    assert isinstance(counted, Rows) and counted.columns == ["n"] and counted.rows[0][0] > 0
    with pytest.raises(ConfigError, match="^statement takes no other selection option \\(got seed\\)$"):
        answer(out, statement="SELECT 1", seed=0)
    best = answer(out, best=True, seed=1, columns=["seed", "step", "layer", "head"])
    assert isinstance(best, Rows) and {row[0] for row in best.rows} == {1} and len(best.rows) == 3
    derived = answer(out, best=True, columns=["seed", "step", "same_weights_as"])  # pandas derives it
    assert list(derived.columns) == ["seed", "step", "same_weights_as"] and len(derived) == 6


def test_a_seed_the_folder_lacks_is_named_with_the_seeds_it_holds(runner, scanned, tmp_path):
    _, out = scanned
    status = runner.invoke(main, ["status", str(out), "--seeds", "7"])
    assert one_line_error(status).endswith("matches the chosen seeds and steps (seeds held: 0, 1)")
    head = ["--step", "0", "--layer", "0", "--head", "0", "--seed", "7", "-o", str(tmp_path / "p.png")]
    pattern = runner.invoke(main, ["pattern", str(out), *head])
    assert one_line_error(pattern).endswith("no scored checkpoint of the selection (seeds held: 0, 1)")


def test_a_folder_given_twice_or_its_table_given_for_it_is_named(runner, scanned, tmp_path):
    _, out = scanned
    twice = runner.invoke(main, ["phases", str(out), f"{out}/"])
    assert one_line_error(twice) == f"error: {out} is given twice: give each results folder once"
    table = runner.invoke(main, ["query", str(out / "scores")])
    shown = one_line_error(table)
    assert shown == f"error: {out / 'scores'} is the scores table of the results folder {out}: give {out}"
    plotted = ["plot", str(out), "--kind", "seed-scatter", "--seed", "0,1", "-o", str(tmp_path / "s.png")]
    assert one_line_error(runner.invoke(main, plotted)).endswith(
        "no token losses of seed(s) 0, 1; the table holds no token losses (scanned without them)"
    )


def test_python_arguments_of_the_wrong_type_are_named_in_one_line(scanned):
    _, out = scanned
    failures = [
        (lambda: inductscan.status(out, seeds="0,1"), "seeds must be an integer or a list of integers, got '0,1'"),
        (lambda: PlanArguments(steps=[0, "10"]), "steps must be an integer or a list of integers, got [0, '10']"),
        (lambda: inductscan.sql(out, None), "statement must be a string of SQL, got None"),
        (lambda: inductscan.compare_seeds(out, seeds=[0, 0]), "seeds: expected two different seeds, got [0, 0]"),
        (lambda: inductscan.compare_seeds(out, seeds=0), "seeds: expected two seeds, got 0"),
        (lambda: inductscan.compare_seeds(out, step="10"), "step must be an integer, got '10'"),
        (lambda: inductscan.compare_seeds(out, top="3"), "top must be >= 1, got '3'"),
    ]
    for call, message in failures:
        with pytest.raises(ConfigError) as raised:
            call()
        assert str(raised.value) == message


def test_phases_with_no_rows_stays_machine_readable(runner, scanned):
    _, out = scanned
    shown = runner.invoke(main, ["phases", str(out), "--seed", "7", "--format", "json"])
    assert shown.exit_code == 0 and json.loads(shown.output) == []
    assert runner.invoke(main, ["phases", str(out), "--seed", "7"]).output == "no rows match\n"
