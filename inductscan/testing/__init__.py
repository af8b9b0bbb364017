"""Tiny real checkpoints for tests and benchmarks: random GPT-2 and GPT-NeoX models (with LayerNorm
gains and biases away from their defaults), saved as the public suites save them, as a local suite
or in the huggingface_hub cache's layout. Nothing here is downloaded; transformers builds the models.

Used by the tests (``tests/conftest.py``) and the benchmarks (``scripts/``), which must not import
the tests. Not imported by the rest of the package.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import torch


def perturb(model, seed: int):
    """Give ``model`` the parameters that default initialisation leaves trivial: every LayerNorm gain
    uniform in [0.5, 1.5], every LayerNorm bias and every linear bias normal with std 0.3.

    Default initialisation sets gains to 1 and biases to 0, and then a score that forgets a gain
    (folding it into W_V or W_U) or reads a bias in the wrong order passes every test. Drawn from
    an explicit ``torch.Generator(seed)``, in parameter order, so a seed always gives one model.
    """
    generator = torch.Generator().manual_seed(seed)
    norms = {name for name, module in model.named_modules() if isinstance(module, torch.nn.LayerNorm)}
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            owner, _, kind = name.rpartition(".")
            if owner in norms and kind == "weight":
                parameter.copy_(0.5 + torch.rand(parameter.shape, generator=generator))
            elif kind == "bias":
                parameter.copy_(0.3 * torch.randn(parameter.shape, generator=generator))
    return model


def gpt2_model(seed: int, *, perturbed: bool = True, **overrides):
    """A small random GPT-2 with both Stanford CRFM attention flags on and peaked attention.

    ``perturbed`` (default): LayerNorm gains and all biases away from 1 and 0 (:func:`perturb`);
    False keeps transformers' default initialisation.
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    settings = dict(
        n_layer=3,
        n_embd=64,
        n_head=4,
        vocab_size=96,
        n_positions=64,
        bos_token_id=95,
        eos_token_id=95,
        scale_attn_by_inverse_layer_idx=True,
        reorder_and_upcast_attn=True,
        initializer_range=0.35,
        attn_implementation="eager",
    )
    settings.update(overrides)
    torch.manual_seed(seed)  # transformers initialises from the global RNG; test models only
    model = GPT2LMHeadModel(GPT2Config(**settings)).eval()
    return perturb(model, seed) if perturbed else model


def neox_model(seed: int, *, perturbed: bool = True, **overrides):
    """A small random GPT-NeoX (Pythia's layout: partial rotary, parallel residual, untied
    ``embed_out``) with peaked attention; ``perturbed`` as for :func:`gpt2_model`."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    settings = dict(
        num_hidden_layers=3,
        hidden_size=64,
        num_attention_heads=4,
        intermediate_size=128,
        vocab_size=96,
        max_position_embeddings=64,
        rotary_pct=0.25,
        initializer_range=0.35,
        attn_implementation="eager",
    )
    settings.update(overrides)
    torch.manual_seed(seed)
    model = GPTNeoXForCausalLM(GPTNeoXConfig(**settings)).eval()
    return perturb(model, seed) if perturbed else model


def save_checkpoint(model, folder: Path, *, fmt: str = "safetensors") -> Path:
    """Save like the public suites do: safetensors, or an fp16 pickled pytorch_model.bin (Stanford)."""
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "safetensors":
        model.save_pretrained(folder)
    else:
        model.config.save_pretrained(folder)
        state = {key: value.half() for key, value in model.state_dict().items()}
        torch.save(state, folder / "pytorch_model.bin")
    return folder


def make_local_suite(
    root: Path, seeds=(0, 1), steps=(0, 10, 20), factory=gpt2_model, *, fmt: str = "safetensors", **overrides
) -> Path:
    """root/seedS/checkpoint-N, a different random model for every (seed, step), saved as ``fmt``."""
    for seed in seeds:
        for step in steps:
            model = factory(1000 * seed + step, **overrides)
            save_checkpoint(model, root / f"seed{seed}" / f"checkpoint-{step}", fmt=fmt)
    return root


def place_in_hub_cache(hf_home: Path, repo: str, revision: str, files: dict[str, Path]) -> None:
    """Lay files out as huggingface_hub's cache does: blobs by hash, snapshots by commit, refs by name."""
    storage = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    commit = hashlib.sha1(f"{repo}@{revision}".encode()).hexdigest()
    snapshot = storage / "snapshots" / commit
    (storage / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        blob = storage / "blobs" / digest
        shutil.copyfile(source, blob)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    (storage / "refs").mkdir(exist_ok=True)
    (storage / "refs" / revision).write_text(commit)
