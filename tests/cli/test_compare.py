"""``inductscan compare`` (inductscan/cli/compare.py) and inductscan.compare_seeds, on a folder
scanned without token losses: the refusals, named by parameter and by flag."""

from __future__ import annotations

import pytest

import inductscan
from inductscan.cli import main
from inductscan.errors import ConfigError, NotHeldError, OutputError

from .conftest import one_line_error


def test_two_seeds_or_none(runner, scanned):
    _, out = scanned
    with pytest.raises(ConfigError, match=r"^seeds: expected two seeds, got \[1\]"):
        inductscan.compare_seeds(out, seeds=[1])
    result = runner.invoke(main, ["compare", str(out), "--seed", "1"])
    assert result.exit_code == 2 and "Invalid value for --seed: expected two seeds, A,B, got '1'" in result.output


def test_no_token_losses_and_an_unknown_suite(runner, scanned):
    _, out = scanned
    with pytest.raises(OutputError, match="no token losses in"):
        inductscan.compare_seeds(out)
    one_line_error(runner.invoke(main, ["compare", str(out)]), "no token losses in", "--token-losses")
    with pytest.raises(NotHeldError, match="no suite 'nope'"):
        inductscan.compare_seeds(out, suite="nope")
    one_line_error(runner.invoke(main, ["compare", str(out), "--suite", "nope"]), "no suite 'nope'")
