"""What the command line's tests share: click's runner, and a results folder scanned once per
test module from a tiny local suite (two seeds, three steps, a short probe)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from inductscan.cli import main
from inductscan.testing import make_local_suite


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    root = tmp_path_factory.mktemp("scanned")
    folder = make_local_suite(root / "suite", seeds=(0, 1), steps=(0, 10, 20))
    out = root / "results"
    result = CliRunner().invoke(main, ["scan", str(folder), "--out", str(out), "--probe-length", "8", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "6 checkpoints" in result.output and "6 scored" in result.output
    return folder, out


def one_line_error(result, *fragments, status: int = 2) -> str:
    """The one line ``error: ...`` a failed command prints (stdout empty), holding every fragment."""
    assert result.exit_code == status, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]
