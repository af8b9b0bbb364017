"""No network, and offline: a Hub that refuses connections is told within seconds, as such, and
never recorded as a checkpoint the Hub lacks; offline, a checkpoint missing from the cache is a
failure that names the cache (the scan's side of it is in tests/test_hub.py). Runs in
subprocesses: huggingface_hub reads HF_* at import."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import inductscan

from .conftest import REPO_ROOT, make_local_suite, place_in_hub_cache, run_cli
from .test_hub import REPO, stanford_like

# Each of the three library calls a scan makes, with the default Retry(), against HF_ENDPOINT.
CALLS_SCRIPT = """
import json, time
from inductscan.checkpoints import CheckpointRef, FetchPlan, fetch_config, fetch_planned, locate
from inductscan.errors import CheckpointUnavailableError
from inductscan.hub import Announced
from inductscan.suites import get_suite

suite = get_suite("stanford-gpt2-small")
ref = CheckpointRef(suite, suite.run(21), 10)
repo, revision = ref.run.repo, ref.revision
plan = FetchPlan(ref, (Announced(repo, revision, "config.json", 900, None),
                       Announced(repo, revision, "pytorch_model.bin", 10**6, "ab" * 32)))
outcomes = {}
for name, call in (("locate", lambda: locate(ref)), ("fetch_config", lambda: fetch_config(ref)),
                   ("fetch_planned", lambda: fetch_planned(plan))):
    started = time.monotonic()
    try:
        call()
        outcomes[name] = {"error": None}
    except Exception as error:
        outcomes[name] = {"error": type(error).__name__, "message": str(error), "seconds": time.monotonic() - started,
                          "unavailable": isinstance(error, CheckpointUnavailableError),
                          "connection": isinstance(error, ConnectionError)}
print(json.dumps(outcomes))
"""


def closed_port_endpoint() -> str:
    """An endpoint on 127.0.0.1 that refuses connections: a port just bound, then closed."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def offline_env(hf_home) -> dict:
    return {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def test_a_refused_connection_is_hub_unreachable_within_seconds(tmp_path):
    endpoint, hf_home = closed_port_endpoint(), tmp_path / "hf-home"
    env = {
        **os.environ,
        "HF_ENDPOINT": endpoint,
        "HF_HOME": str(hf_home),
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    result = subprocess.run(
        [sys.executable, "-c", CALLS_SCRIPT], capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr
    outcomes = json.loads(result.stdout.strip().splitlines()[-1])
    for name in ("locate", "fetch_config", "fetch_planned"):
        outcome = outcomes[name]
        assert outcome["error"] == "HubUnreachableError", (name, outcome)
        assert outcome["connection"] and not outcome["unavailable"], (name, outcome)  # "failed", never "skipped"
        assert outcome["seconds"] < 20, (name, outcome)  # the default Retry() would take 14 s and more
        message = outcome["message"]
        assert len(message.splitlines()) == 1, message
        assert f"cannot reach the Hub at {endpoint}" in message and "Connection refused" in message
        assert "HF_HUB_OFFLINE=1" in message and str(hf_home / "hub") in message
        assert f"{REPO}@checkpoint-10" in message


def test_a_scan_with_no_hub_stops_at_once_and_records_a_failure(tmp_path):
    out, hf_home = tmp_path / "results", tmp_path / "hf-home"
    env = {"HF_HOME": str(hf_home), "HF_ENDPOINT": closed_port_endpoint(), "HF_HUB_OFFLINE": "0"}
    started = time.monotonic()
    result = run_cli(
        "scan", "stanford-gpt2-small", "--seeds", "21", "--steps", "0,10,20", "--out", str(out), "--quiet", env=env
    )
    assert time.monotonic() - started < 30  # before: about 70 s for three checkpoints, 20 h for a suite
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "cannot reach the Hub" in lines[0], result.stderr
    assert "HF_HUB_OFFLINE=1" in lines[0]
    failures = inductscan.load_failures(out)
    assert len(failures) <= 1 and set(failures.kind) <= {"failed"}  # never "skipped": nothing is known missing


def test_offline_cached_config_without_weights_names_the_weights(tmp_path):
    hf_home = tmp_path / "hf-home"
    folder = stanford_like(tmp_path, 0)
    place_in_hub_cache(hf_home, REPO, "checkpoint-0", {"config.json": folder / "config.json"})
    script = (
        "from inductscan.checkpoints import CheckpointRef, locate\n"
        "from inductscan.suites import get_suite\n"
        "suite = get_suite('stanford-gpt2-small')\n"
        "try:\n    locate(CheckpointRef(suite, suite.run(21), 0))\n"
        "except Exception as error:\n    print(type(error).__name__, error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **offline_env(hf_home)},
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("NotCachedError ")
    assert f"{REPO}@checkpoint-0: its weights (model.safetensors" in result.stdout
    assert "are not in the local cache (HF_HUB_OFFLINE is set" in result.stdout


def test_an_icl_dataset_on_a_hub_that_cannot_be_reached_stops_the_scan_at_once(tmp_path):
    env = {"HF_HOME": str(tmp_path / "hf-home"), "HF_ENDPOINT": closed_port_endpoint(), "HF_HUB_OFFLINE": "0"}
    started = time.monotonic()
    suite = make_local_suite(tmp_path / "suite", seeds=(0,), steps=(0,))
    result = run_cli("scan", str(suite), "--out", str(tmp_path / "out"), "--icl-dataset", "org/some-texts", env=env)
    assert time.monotonic() - started < 20  # datasets alone retries for about 25 s
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "ICL dataset org/some-texts: cannot reach the Hub" in lines[0], result.stderr
