"""Sharded checkpoints (a ``*.index.json`` and the shards it names), locally and through the Hub.

A sharded checkpoint must score exactly as the same weights saved in one file, record the hash
of its shards' names and hashes, and be a recorded skip naming the shard when one is missing.
Safetensors are read, never the pickled ``.bin``, where a folder or revision holds both.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import inductscan
from inductscan.metrics import METRICS
from inductscan.plan import ScanConfig, plan
from inductscan.probe import ProbeConfig
from inductscan.runner import run_scan
from inductscan.suites import local_suite
from inductscan.testing.hub_server import HubServer

from .conftest import gpt2_model, neox_model, run_cli
from .test_stream import RecordingHubServer, hub_env

SCORES = [name for name in METRICS if name != "icl_score"]
LOCAL_PROBE = ProbeConfig(length=8, repeats=4, batch=20)  # 33 positions: fits the tiny GPT-2's 64


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def combined(shards: list[Path]) -> str:
    """The sharded checkpoint's hash, computed here: sha256 over "name:sha256\\n" of each shard in order."""
    text = "".join(f"{path.name}:{sha256(path)}\n" for path in sorted(shards, key=lambda path: path.name))
    return hashlib.sha256(text.encode()).hexdigest()


def save_safetensors(model, folder: Path, *, max_shard_size: str | None = None) -> list[Path]:
    """config.json and model.safetensors, or model.safetensors.index.json and its shards; the weight files."""
    if max_shard_size is None:
        model.save_pretrained(folder)
    else:
        model.save_pretrained(folder, max_shard_size=max_shard_size)
    return sorted(folder.glob("model*.safetensors"))


def save_bin(state: dict[str, torch.Tensor], folder: Path, *, shards: int = 1) -> list[Path]:
    """The tensors as pickled ``pytorch_model.bin``, or as ``shards`` files named by
    ``pytorch_model.bin.index.json``, as the Pythia branches hold them (transformers 5 writes only
    safetensors). The weight files."""
    if shards == 1:
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(state, folder / "pytorch_model.bin")
        return [folder / "pytorch_model.bin"]
    return save_shards(state, folder, shards, "pytorch_model", "bin", torch.save)


def save_shards(state: dict[str, torch.Tensor], folder: Path, shards: int, stem: str, suffix: str, save) -> list[Path]:
    """``STEM-0000k-of-0000n.SUFFIX`` files, each with every ``shards``-th tensor, and the index
    ``STEM.SUFFIX.index.json`` naming them (transformers' layout); the shard files."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = list(state)
    names = [f"{stem}-{index + 1:05d}-of-{shards:05d}.{suffix}" for index in range(shards)]
    weight_map = {}
    for index, name in enumerate(names):
        part = keys[index::shards]
        save({key: state[key].contiguous() for key in part}, folder / name)
        weight_map |= {key: name for key in part}
    total = sum(tensor.numel() * tensor.element_size() for tensor in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / f"{stem}.{suffix}.index.json").write_text(json.dumps(index))
    return [folder / name for name in names]


def tensors_of(model, scratch: Path) -> dict[str, torch.Tensor]:
    """Exactly the tensors save_pretrained writes (tied weights once), to save as .bin too."""
    save_safetensors(model, scratch)
    return load_file(scratch / "model.safetensors")


def scan_local(folder: Path, out: Path):
    summary = run_scan(
        plan(local_suite(folder)),
        out,
        ScanConfig(probe_length=LOCAL_PROBE.length, probe_repeats=LOCAL_PROBE.repeats, probe_batch=LOCAL_PROBE.batch),
        progress=False,
    )
    return summary, inductscan.load_results(out).reset_index()


def scores_at(frame, step: int):
    return frame[frame.step == step].set_index(["layer", "head"])[SCORES]


def assert_same_scores(frame, step: int, reference: int, *, heads: int = 3 * 4) -> None:
    """Bit for bit: the same tensors in the same process give the same floats."""
    mine, theirs = scores_at(frame, step), scores_at(frame, reference)
    assert len(mine) == len(theirs) == heads
    assert mine.equals(theirs), (mine - theirs).abs().max()


def test_sharded_checkpoints_score_as_the_same_weights_in_one_file(tmp_path):
    model = gpt2_model(7)
    state = tensors_of(model, tmp_path / "scratch")
    suite = tmp_path / "suite"
    weights = {
        0: save_safetensors(model, suite / "checkpoint-0"),
        1: save_safetensors(model, suite / "checkpoint-1", max_shard_size="60KB"),
        2: save_bin(state, suite / "checkpoint-2"),
        3: save_bin(state, suite / "checkpoint-3", shards=3),
    }
    for step in (2, 3):
        model.config.save_pretrained(suite / f"checkpoint-{step}")
    assert len(weights[1]) >= 3 and (suite / "checkpoint-1" / "model.safetensors.index.json").is_file()

    summary, frame = scan_local(suite, tmp_path / "results")

    assert (summary.scored, summary.failed) == (4, [])
    for step in (1, 2, 3):
        assert_same_scores(frame, step, 0)
    recorded = frame.groupby("step").weights_sha256.agg(set)
    assert recorded[0] == {sha256(weights[0][0])} and recorded[2] == {sha256(weights[2][0])}
    assert recorded[1] == {combined(weights[1])} and recorded[3] == {combined(weights[3])}


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_a_missing_local_shard_is_a_recorded_skip_naming_it(tmp_path, fmt):
    suite = tmp_path / "suite"
    shards = {}
    for step in (0, 10, 20):
        model, folder = gpt2_model(step), suite / f"checkpoint-{step}"
        if fmt == "safetensors":
            shards[step] = save_safetensors(model, folder, max_shard_size="60KB")
        else:
            shards[step] = save_bin(tensors_of(model, tmp_path / f"scratch-{step}"), folder, shards=3)
            model.config.save_pretrained(folder)
    missing = shards[10][1]
    missing.unlink()

    summary, frame = scan_local(suite, tmp_path / "results")

    assert summary.scored == 2 and sorted(set(frame.step)) == [0, 20]
    failures = inductscan.load_failures(tmp_path / "results")
    assert list(failures.step) == [10] and list(failures.kind) == ["skipped"]
    assert missing.name in failures.reason[0]


@pytest.mark.parametrize("sharded", [False, True], ids=["model.safetensors", "safetensors-shards"])
def test_safetensors_are_read_where_a_folder_also_holds_bin(tmp_path, sharded):
    kept, other = gpt2_model(1), gpt2_model(2)  # the .bin holds other weights: reading it would show
    other_state = tensors_of(other, tmp_path / "scratch")
    suite = tmp_path / "suite"
    save_safetensors(kept, suite / "checkpoint-0")
    both = suite / "checkpoint-1"
    read = save_safetensors(kept, both, max_shard_size="60KB" if sharded else None)
    save_bin(other_state, both)
    save_bin(other_state, both, shards=3)
    save_bin(other_state, suite / "checkpoint-2", shards=3)
    other.config.save_pretrained(suite / "checkpoint-2")

    summary, frame = scan_local(suite, tmp_path / "results")

    assert (summary.scored, summary.failed) == (3, [])
    assert_same_scores(frame, 1, 0)
    assert not scores_at(frame, 2).equals(scores_at(frame, 0))  # the .bin's weights would score otherwise
    assert set(frame[frame.step == 1].weights_sha256) == {combined(read) if sharded else sha256(read[0])}


PYTHIA = "EleutherAI/pythia-160m"


def pythia_like(seed: int):
    """A tiny GPT-NeoX whose vocabulary holds the Pythia suites' probe range (ids 1000-19999)."""
    return neox_model(
        seed,
        vocab_size=20480,
        hidden_size=32,
        num_attention_heads=2,
        num_hidden_layers=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )


def hosted(folder: Path) -> dict[str, Path]:
    """Every file of a checkpoint folder, by its name in the repo."""
    return {path.name: path for path in sorted(folder.iterdir()) if path.name != "generation_config.json"}


def test_sharded_checkpoints_through_the_hub(tmp_path):
    model, other = pythia_like(0), pythia_like(1)
    state, other_state = tensors_of(model, tmp_path / "scratch-0"), tensors_of(other, tmp_path / "scratch-1")
    made = tmp_path / "made"
    one_file = save_safetensors(model, made / "step0")
    st_shards = save_safetensors(model, made / "step1", max_shard_size="1MB")
    bin_shards = save_bin(state, made / "step2", shards=3)
    model.config.save_pretrained(made / "step2")
    both = save_shards(state, made / "step4", 2, "model", "safetensors", save_file)  # other shards than step1's
    model.config.save_pretrained(made / "step4")
    save_bin(other_state, made / "step4", shards=2)
    save_bin(other_state, made / "step4")
    lacking = save_safetensors(pythia_like(2), made / "step8", max_shard_size="1MB")
    assert len(st_shards) >= 3 and not {sha256(path) for path in st_shards} & {sha256(path) for path in both}
    out, hf_home = tmp_path / "results", tmp_path / "hf-home"
    with HubServer() as server:
        for step in (0, 1, 2, 4, 8):
            server.add(PYTHIA, f"step{step}", hosted(made / f"step{step}"))
        server.fault(PYTHIA, "step8", lacking[1].name, "missing")  # 404 EntryNotFound for that shard
        result = run_cli(
            "scan",
            "pythia-160m",
            "--steps",
            "0,1,2,4,8",
            "--out",
            str(out),
            "--quiet",
            "--retry-backoff",
            "0.01",
            env=hub_env(server, hf_home),
        )
        bin_downloads = {
            name: server.downloads(PYTHIA, "step4", name) for name in hosted(made / "step4") if name.endswith(".bin")
        }
        shard_downloads = [server.downloads(PYTHIA, "step1", path.name) for path in st_shards]

    assert result.returncode == 1, result.stderr + result.stdout
    assert "4 scored" in result.stdout and "1 failed or skipped" in result.stdout
    frame = inductscan.load_results(out).reset_index()
    assert sorted(set(frame.step)) == [0, 1, 2, 4]
    for step in (1, 2, 4):
        assert_same_scores(frame, step, 0, heads=2 * 2)
    recorded = frame.groupby("step").weights_sha256.agg(set)
    assert recorded[0] == {sha256(one_file[0])} and recorded[1] == {combined(st_shards)}
    assert recorded[2] == {combined(bin_shards)} and recorded[4] == {combined(both)}
    assert shard_downloads == [1] * len(st_shards)
    assert len(bin_downloads) == 3 and set(bin_downloads.values()) == {0}  # the .bin files were never fetched
    failures = inductscan.load_failures(out)
    assert list(failures.step) == [8] and list(failures.kind) == ["skipped"]
    assert lacking[1].name in failures.reason[0] and lacking[0].name not in failures.reason[0]
    blobs = hf_home / "hub" / f"models--{PYTHIA.replace('/', '--')}" / "blobs"
    assert [blob for blob in blobs.iterdir() if blob.stat().st_size > 100_000] == []  # every shard deleted once scored


def test_a_shard_two_checkpoints_in_flight_share_is_deleted_once_both_are_scored(tmp_path):
    folder = tmp_path / "made"
    shards = save_safetensors(pythia_like(0), folder, max_shard_size="1MB")  # identical weights on two branches
    out, hf_home = tmp_path / "results", tmp_path / "hf-home"
    blobs = hf_home / "hub" / f"models--{PYTHIA.replace('/', '--')}" / "blobs"
    with RecordingHubServer() as server:
        for step in (1, 2):
            server.add(PYTHIA, f"step{step}", hosted(folder))
        # step2 is located (its config's first HEAD), then fetched (the second HEAD): that one is answered once
        # step1's shards are in the cache, and they are served only once it came. So step2 finds them there,
        # while step1, not yet scored, holds them too.
        fetching = server.resolve(PYTHIA, "step2", "config.json")
        cached = [blobs / sha256(shard) for shard in shards]
        server.hold("HEAD", fetching, lambda: all(blob.is_file() for blob in cached), nth=2)
        for shard in shards:
            server.hold(
                "GET", server.cdn(PYTHIA, "step1", shard.name), lambda: server.count("start", "HEAD", fetching) >= 2
            )
        result = run_cli(
            "scan",
            "pythia-160m",
            "--steps",
            "1,2",
            "--out",
            str(out),
            "--quiet",
            "--prefetch",
            "2",
            env={**hub_env(server, hf_home), "HF_HUB_DOWNLOAD_TIMEOUT": "60"},
        )
    assert result.returncode == 0 and "2 scored" in result.stdout, result.stderr + result.stdout
    assert server.expired == []
    assert [shard.name for shard, blob in zip(shards, cached) if blob.exists()] == []
