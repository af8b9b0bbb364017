"""Fixtures: tiny real checkpoints made by the tests themselves (no downloads, no mocks)."""

from __future__ import annotations

import collections
import fcntl
import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from inductscan.testing import (  # noqa: F401 (the tests import them from here)
    gpt2_model,
    make_local_suite,
    neox_model,
    perturb,
    place_in_hub_cache,
    save_checkpoint,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files with the most slow tests first (the toy suite's file trains it for minutes), each
    file's tests in their order: ``make test``'s two workers (``--dist loadfile
    --no-loadscope-reorder``) each start on a long file, and the short files fill in around them."""
    slow = collections.Counter(item.path for item in items if item.get_closest_marker("slow"))
    items.sort(key=lambda item: -slow[item.path])


@contextmanager
def one_ray_cluster_at_a_time(tmp_path_factory):
    """Held while a test's Ray cluster runs: ``make test`` runs two pytest-xdist workers (a file's
    tests on one), and two clusters starting at once on one machine could find each other. The
    lock file is in the directory every worker's temporary directory is made in."""
    with open(tmp_path_factory.getbasetemp().parent / "ray-cluster.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture
def ray_alone(tmp_path_factory):
    with one_ray_cluster_at_a_time(tmp_path_factory):
        yield


@pytest.fixture(autouse=True, scope="session")
def quiet_transformers():
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()


@pytest.fixture
def gpt2_suite(tmp_path: Path) -> Path:
    return make_local_suite(tmp_path / "gpt2-suite")


def run_cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the installed command in a fresh process (huggingface_hub reads HF_* at import)."""
    environment = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "inductscan.cli", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
        cwd=REPO_ROOT,
    )


def invoke_cli(*args: str) -> subprocess.CompletedProcess:
    """The command run in this process by click's runner, its result shaped as :func:`run_cli`'s
    (returncode, stdout, stderr): for the tests where a fresh process is not the point (it costs
    seconds of imports). An exception the CLI does not turn into an exit status is raised here."""
    from click.testing import CliRunner

    from inductscan.cli import main

    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return subprocess.CompletedProcess(["inductscan", *args], result.exit_code, result.stdout, result.stderr)


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data))


# A scan through the command line, as a user runs it (tests/test_identity.py, test_runner.py, results/test_settings.py)
PROBE = ["--probe-length", "8", "--probe-batch", "4"]


@pytest.fixture
def runner():
    from click.testing import CliRunner

    return CliRunner()


def scan(runner, source, out, *more):
    from inductscan.cli import main

    return runner.invoke(main, ["scan", str(source), "--out", str(out), *PROBE, "--quiet", *more])


def trainer_run(folder: Path, seed: int, steps=(0, 10)) -> Path:
    """A Hugging Face Trainer-style run: FOLDER/checkpoint-N, different weights per seed."""
    for step in steps:
        save_checkpoint(gpt2_model(100 * seed + step), folder / f"checkpoint-{step}")
    return folder


def one_line(result, code: int, *fragments: str) -> str:
    """The one line a command printed, with its exit status and every fragment checked."""
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]
