"""The shared options' parsers (inductscan/cli/options.py): text to the library's Python values."""

from __future__ import annotations

import click
import pytest

from inductscan.cli.options import integers, plan_arguments, selection, size, step_range, token_range
from inductscan.errors import ConfigError
from inductscan.plan import PlanArguments


def test_integers_and_ranges():
    assert integers("1, 2,3", "--seeds") == [1, 2, 3]
    assert integers("all", "--seeds") is None and integers(None, "--seeds") is None
    assert step_range("10:20", "--step-range") == (10, 20)
    assert step_range(":20", "--step-range") == (0, 20) and step_range("5:", "--step-range") == (5, 2**62)
    for bad in ("20:10", "10", "a:b"):
        with pytest.raises(click.BadParameter, match="expected A:B"):
            step_range(bad, "--step-range")
    with pytest.raises(click.BadParameter, match="comma-separated integers"):
        integers("1,x", "--seeds")


def test_sizes_and_token_ranges():
    assert size("20GB", "--max-disk") == 20 * 10**9
    assert size("800MiB", "--max-disk") == 800 * 2**20
    assert size("1234", "--max-disk") == 1234 and size("1.5 K", "--max-disk") == 1500
    with pytest.raises(click.BadParameter, match="a size like 20GB"):
        size("20 parsecs", "--max-disk")
    assert token_range("32:127") == (32, 127) and token_range(None) is None
    with pytest.raises(ConfigError, match="--probe-tokens must be LOW:HIGH"):
        token_range("127:32")


def test_the_plan_and_selection_options_make_the_library_values():
    assert plan_arguments("1,2", None, "0:100", 2, None, "0/4") == PlanArguments(
        seeds=[1, 2], step_range=(0, 100), every=2, shard="0/4"
    )
    assert plan_arguments(None, None, None, None, None, None) == PlanArguments()
    assert selection("toy", None, "0", "5:") == {"suite": "toy", "run": None, "seed": [0], "step_range": (5, 2**62)}
