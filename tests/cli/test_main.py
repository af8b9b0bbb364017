"""The ``inductscan`` group: every command has help with an example, the console script and
``python -m inductscan.cli`` start it (a fresh process is what is tested there)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from inductscan.cli import main

COMMANDS = sorted(main.commands)


def test_the_commands_are_the_documented_ones():
    assert COMMANDS == sorted(
        ["compact", "compare", "pattern", "phases", "plot", "query", "report", "scan", "status", "suites", "toy-suite"]
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(runner, command):
    result = runner.invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output and f"inductscan {command}" in result.output


def test_the_console_script_and_python_dash_m_run_the_command_line():
    script = Path(sys.executable).parent / "inductscan"
    for command in ([str(script)], [sys.executable, "-m", "inductscan.cli"]):
        done = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and done.stdout.startswith("inductscan, version "), done.stderr
    bad = subprocess.run([str(script), "query", "/nonexistent-results"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr == "error: no results folder at /nonexistent-results\n"
