"""The scanner's memory paths: losses without the logits, weight buffers reused across
checkpoints, and the layer-by-layer mode, against independent computations and real peak RSS."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from inductscan.architecture import read_architecture
from inductscan.measure import Scorer
from inductscan.metrics import METRICS
from inductscan.model import UNEMBED_BLOCK, next_token_losses
from inductscan.probe import ProbeConfig, TokenSpec, make_probe
from inductscan.results.read import load_results
from inductscan.weights import read_state_dict
from tests.conftest import REPO_ROOT, gpt2_model, invoke_cli, neox_model, save_checkpoint


def test_blocked_losses_equal_cross_entropy_of_the_whole_logits():
    generator = torch.Generator().manual_seed(0)
    vocab = 2 * UNEMBED_BLOCK + 123  # three blocks, the last one ragged
    final = torch.randn(3, 17, 32, generator=generator)
    unembed = torch.randn(32, vocab, generator=generator) * 3
    unembed[:, 5] += 40.0  # a dominant logit in the first block: the blocks are combined by their maxima
    ids = torch.randint(0, vocab, (3, 17), generator=generator)
    ids[0, 1:4] = torch.tensor([5, vocab - 1, UNEMBED_BLOCK])  # targets at block edges
    logits = (final.double() @ unembed.double())[:, :-1]
    expected = F.cross_entropy(logits.reshape(-1, vocab), ids[:, 1:].reshape(-1), reduction="none").view(3, 16)
    assert torch.allclose(next_token_losses(final, unembed, ids).double(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("factory", [gpt2_model, neox_model])
def test_a_reused_scorer_scores_as_a_fresh_one(tmp_path, factory):
    first = save_checkpoint(factory(1), tmp_path / "a")
    second = save_checkpoint(factory(2), tmp_path / "b", fmt="bin")
    arch = read_architecture(first / "config.json")
    probe = make_probe(ProbeConfig(length=8, repeats=3, batch=2), TokenSpec(0, arch.vocab_size, bos=None))
    reused = Scorer(arch)
    reused.score(reused.load(lambda: read_state_dict([first / "model.safetensors"])), probe)
    buffers_before = {key: tensor.data_ptr() for key, tensor in reused.buffers.tensors.items()}
    again = reused.score(reused.load(lambda: read_state_dict([second / "pytorch_model.bin"])), probe)
    fresh = Scorer(arch).score(Scorer(arch).load(lambda: read_state_dict([second / "pytorch_model.bin"])), probe)
    assert {key: tensor.data_ptr() for key, tensor in reused.buffers.tensors.items()} == buffers_before
    for name, values in fresh.heads.items():
        assert torch.equal(again.heads[name], values), name
    assert again.checkpoint == fresh.checkpoint


@pytest.mark.parametrize("factory", [gpt2_model, neox_model])
@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_layer_by_layer_scan_gives_the_whole_model_scores(tmp_path, factory, fmt):
    suite = tmp_path / "suite"
    for step in (0, 10):
        save_checkpoint(factory(step), suite / f"checkpoint-{step}", fmt=fmt)
    for mode in ("whole", "layered"):
        extra = ["--layer-by-layer"] if mode == "layered" else []
        done = invoke_cli("scan", str(suite), "--out", str(tmp_path / mode), "--quiet", "--probe-length", "8", *extra)
        assert done.returncode == 0, done.stderr
    whole, layered = load_results(tmp_path / "whole"), load_results(tmp_path / "layered")
    scores = [name for name in METRICS if name != "icl_score"]
    assert len(whole) == 2 * 3 * 4
    assert (layered[scores] - whole[scores]).abs().max().max() <= 1e-5


PEAK_SCRIPT = """
import sys
from pathlib import Path
from inductscan.plan import ScanConfig, plan
from inductscan.runner import run_scan
from inductscan.suites import local_suite
summary = run_scan(plan(local_suite(Path(sys.argv[1]))), Path(sys.argv[2]),
                   ScanConfig(probe_length=8, probe_batch=2, layer_by_layer=sys.argv[3] == "layered"), progress=False)
assert summary.scored == 1, summary.failed
print(next(line for line in open("/proc/self/status") if line.startswith("VmHWM:")).split()[1])
"""


def peak_rss(*args: str) -> int:
    """Peak RSS in bytes of a fresh process, as its kernel high-water mark says (VmHWM). Not
    getrusage: its ru_maxrss survives exec, so a child would report the forking test's peak."""
    done = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, *args], cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1]) * 1024


@pytest.mark.slow
def test_peak_memory_whole_and_layer_by_layer(tmp_path):
    """12 layers of 1536 (1.36 GB in float32, a 0.68 GB fp16 .bin): the whole-model scan stays within
    1.5 N + 1 GB and the layer-by-layer one below a third of it, with the same scores."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        n_layer=12,
        n_embd=1536,
        n_head=12,
        vocab_size=1024,
        n_positions=128,
        bos_token_id=1023,
        eos_token_id=1023,
        scale_attn_by_inverse_layer_idx=True,
        reorder_and_upcast_attn=True,
    )
    with torch.device("meta"):
        shapes = {key: value.shape for key, value in GPT2LMHeadModel(config).state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    state = {key: (torch.randn(shape, generator=generator) * 0.05).half() for key, shape in shapes.items()}
    folder = tmp_path / "suite" / "checkpoint-0"
    folder.mkdir(parents=True)
    config.save_pretrained(folder)
    torch.save(state, folder / "pytorch_model.bin")
    n_bytes = 4 * sum(value.numel() for key, value in state.items() if key != "lm_head.weight")  # tied
    del state

    whole = peak_rss(str(tmp_path / "suite"), str(tmp_path / "whole"), "whole")
    layered = peak_rss(str(tmp_path / "suite"), str(tmp_path / "layered"), "layered")
    print(f"N {n_bytes / 1e9:.2f} GB, peak RSS whole {whole / 1e9:.2f} GB, layer by layer {layered / 1e9:.2f} GB")
    assert whole <= 1.5 * n_bytes + 1e9, (whole, n_bytes)
    assert layered < whole / 3, (layered, whole)
    a, b = load_results(tmp_path / "whole"), load_results(tmp_path / "layered")
    assert (a["induction"] - b["induction"]).abs().max() <= 1e-5
    assert (a["copying"] - b["copying"]).abs().max() <= 1e-5
