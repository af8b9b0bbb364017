"""``inductscan phases`` (inductscan/cli/timing.py) prints what inductscan.phase_changes returns."""

from __future__ import annotations

import io
import json
import shutil

import pandas as pd
import pytest

import inductscan
from inductscan.cli import main
from inductscan.errors import ConfigError

from .conftest import one_line_error


@pytest.mark.parametrize(
    ("options", "arguments"),
    [
        ([], {}),
        (["--metric", "in_context_gain"], {"metric": "in_context_gain"}),
        (["--per-head", "--seed", "1"], {"per_head": True, "seed": [1]}),
        (["--x", "fraction", "--total-tokens", "1000000"], {"x": "fraction", "total_tokens": 10**6}),
    ],
)
def test_the_command_prints_the_library_table(runner, scanned, options, arguments):
    _, out = scanned
    table = inductscan.phase_changes(out, **arguments)
    shown = runner.invoke(main, ["phases", str(out), *options, "--format", "csv"])
    assert shown.exit_code == 0, shown.output
    pd.testing.assert_frame_equal(
        pd.read_csv(io.StringIO(shown.output)), pd.read_csv(io.StringIO(table.timing.to_csv(index=False)))
    )
    readable = runner.invoke(main, ["phases", str(out), *options])
    assert readable.output.splitlines()[0] == table.header()
    assert len(readable.output.splitlines()) == 2 + len(table.timing)  # the header, the columns, a row each


def test_phase_changes_reads_several_folders_and_refuses_a_checkpoint_held_twice(scanned, tmp_path):
    _, out = scanned
    one = inductscan.phase_changes(out)
    assert list(one.timing["seed"]) == [0, 1] and not one.empty
    with pytest.raises(ConfigError, match="is given twice: give each results folder once$"):
        inductscan.phase_changes([out, out])
    shutil.copytree(out, tmp_path / "copy")
    with pytest.raises(ConfigError, match="give each checkpoint once .* suite/seed to select"):
        inductscan.phase_changes([out, tmp_path / "copy"])


def test_errors_name_the_parameter_or_the_flag(runner, scanned):
    _, out = scanned
    with pytest.raises(ConfigError, match="^total_tokens applies only with x fraction"):
        inductscan.phase_changes(out, total_tokens=5)
    one_line_error(
        runner.invoke(main, ["phases", str(out), "--total-tokens", "5"]), "--total-tokens applies only with --x"
    )
    empty = runner.invoke(main, ["phases", str(out), "--seed", "9", "--format", "json"])
    assert empty.exit_code == 0 and json.loads(empty.output) == []  # still json
    assert inductscan.phase_changes(out, seed=[9]).empty
    assert json.loads(runner.invoke(main, ["phases", str(out), "--format", "json"]).output)[0]["metric"] == "induction"
