"""The Hub code path, through huggingface_hub, on checkpoints laid out in a temporary HF_HOME."""

from __future__ import annotations

import hashlib

import inductscan
from inductscan.testing.hub_server import HubServer

from .conftest import gpt2_model, place_in_hub_cache, run_cli, save_checkpoint

REPO = "stanford-crfm/alias-gpt2-small-x21"


def stanford_like(tmp_path, step: int):
    """A tiny GPT-2 with GPT-2's real vocabulary (the suite's probe uses ids 1000-19999 and BOS 50256),
    saved as the Stanford branches are: config.json and an fp16 pytorch_model.bin."""
    model = gpt2_model(
        step, vocab_size=50257, bos_token_id=50256, eos_token_id=50256, n_positions=128, n_embd=32, n_layer=2, n_head=2
    )
    return save_checkpoint(model, tmp_path / "made" / f"checkpoint-{step}", fmt="bin")


def test_scan_stanford_suite_offline_through_hub_cache(tmp_path):
    hf_home = tmp_path / "hf-home"
    made = {}
    for step in (0, 10):
        folder = stanford_like(tmp_path, step)
        files = {"config.json": folder / "config.json", "pytorch_model.bin": folder / "pytorch_model.bin"}
        place_in_hub_cache(hf_home, REPO, f"checkpoint-{step}", files)
        made[step] = hashlib.sha256((folder / "pytorch_model.bin").read_bytes()).hexdigest()
    out = tmp_path / "results"
    env = {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    result = run_cli(
        "scan", "stanford-gpt2-small", "--seeds", "21", "--steps", "0,10", "--out", str(out), "--quiet", env=env
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "2 scored" in result.stdout
    frame = inductscan.load_results(out).reset_index()
    assert set(frame.step) == {0, 10} and set(frame.seed) == {21}
    assert set(frame.repo) == {REPO} and set(frame.revision) == {"checkpoint-0", "checkpoint-10"}
    assert set(frame.tokens) == {0, 10 * 524288}
    for step, digest in made.items():
        assert set(frame[frame.step == step].weights_sha256) == {digest}
    ids = inductscan.load_probe(out)
    assert ids.shape == (10, 101) and (ids[:, 0] == 50256).all()
    assert ((ids[:, 1:] >= 1000) & (ids[:, 1:] < 20000)).all()


def test_offline_a_step_not_in_the_cache_is_a_recorded_failure_naming_the_cache(tmp_path):
    hf_home = tmp_path / "hf-home"
    folder = stanford_like(tmp_path, 0)
    place_in_hub_cache(
        hf_home,
        REPO,
        "checkpoint-0",
        {"config.json": folder / "config.json", "pytorch_model.bin": folder / "pytorch_model.bin"},
    )
    out = tmp_path / "results"
    env = {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    result = run_cli(
        "scan", "stanford-gpt2-small", "--seeds", "21", "--steps", "0,10", "--out", str(out), "--quiet", env=env
    )
    assert result.returncode == 1
    assert "1 scored" in result.stdout and "1 failed or skipped" in result.stdout
    failures = inductscan.load_failures(out)
    assert list(failures.step) == [10] and list(failures.kind) == ["failed"]  # the Hub may have it: not a skip
    reason = failures.reason[0]
    assert f"{REPO}@checkpoint-10" in reason and "not in the local cache (HF_HUB_OFFLINE is set" in reason
    assert str(hf_home / "hub") in reason and "has no" not in reason


def test_a_revision_missing_upstream_is_a_recorded_skip(tmp_path):
    folder = stanford_like(tmp_path, 0)
    with HubServer() as server:  # answers checkpoint-10 with 404 RevisionNotFound
        server.add(
            REPO,
            "checkpoint-0",
            {"config.json": folder / "config.json", "pytorch_model.bin": folder / "pytorch_model.bin"},
        )
        out = tmp_path / "results"
        env = {
            "HF_ENDPOINT": server.endpoint,
            "HF_HOME": str(tmp_path / "hf-home"),
            "HF_HUB_OFFLINE": "0",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
        }
        result = run_cli(
            "scan", "stanford-gpt2-small", "--seeds", "21", "--steps", "0,10", "--out", str(out), "--quiet", env=env
        )
    assert result.returncode == 1, result.stderr + result.stdout
    assert "1 scored" in result.stdout and "1 failed or skipped" in result.stdout
    failures = inductscan.load_failures(out)
    assert list(failures.step) == [10] and list(failures.kind) == ["skipped"]
    assert f"{REPO}@checkpoint-10" in failures.reason[0] and "no such revision" in failures.reason[0]


def corrupt_in_place(path) -> None:
    """Flip a byte in the middle of a file (inside the embedding's data in a .bin): same size, loadable."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_cached_blob_trusted_by_its_name_unless_verify_cached(tmp_path):
    hf_home = tmp_path / "hf-home"
    folder = stanford_like(tmp_path, 0)
    place_in_hub_cache(
        hf_home,
        REPO,
        "checkpoint-0",
        {"config.json": folder / "config.json", "pytorch_model.bin": folder / "pytorch_model.bin"},
    )
    digest = hashlib.sha256((folder / "pytorch_model.bin").read_bytes()).hexdigest()
    blob = hf_home / "hub" / f"models--{REPO.replace('/', '--')}" / "blobs" / digest
    corrupt_in_place(blob)  # bit rot after the download: the blob keeps its name and size
    assert hashlib.sha256(blob.read_bytes()).hexdigest() != digest
    env = {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    scan = ("scan", "stanford-gpt2-small", "--seeds", "21", "--steps", "0", "--quiet", "--retries", "0")

    trusting = run_cli(*scan, "--out", str(tmp_path / "trusting"), env=env)
    assert trusting.returncode == 0, trusting.stderr + trusting.stdout
    assert set(inductscan.load_results(tmp_path / "trusting").weights_sha256) == {digest}  # its name, not re-hashed

    verifying = run_cli(*scan, "--verify-cached", "--out", str(tmp_path / "verifying"), env=env)
    assert verifying.returncode == 1 and "1 failed or skipped" in verifying.stdout
    failure = inductscan.load_failures(tmp_path / "verifying").iloc[0]
    assert failure.kind == "failed" and f"where its cache blob is named {digest[:12]}" in failure.reason
    assert not blob.exists()  # the corrupt blob is gone from the cache: an online scan fetches it afresh
