"""Tiny real checkpoints for tests and benchmarks: random GPT-2, GPT-NeoX and Llama-family models
(Llama, Mistral, Qwen2, OLMo 1/2/3, SmolLM3), and GPT-J and GPT-Neo for the transformers path, with
norm gains and biases away from their defaults, saved as the public suites save them, as a local
suite or in the huggingface_hub cache's layout. Nothing here is downloaded; transformers builds the
models.

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
    """Give ``model`` the parameters that default initialisation leaves trivial: every LayerNorm and
    RMSNorm gain uniform in [0.5, 1.5], every LayerNorm bias and every linear bias normal with std 0.3.

    Default initialisation sets gains to 1 and biases to 0, and then a score that forgets a gain
    (folding it into W_V or W_U) or reads a bias in the wrong order passes every test. Drawn from
    an explicit ``torch.Generator(seed)``, in parameter order, so a seed always gives one model.
    """
    generator = torch.Generator().manual_seed(seed)
    norms = {
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.LayerNorm) or type(module).__name__.endswith("RMSNorm")
    }
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


# The Llama family's test shape: 3 layers of width 64, 4 query heads over 2 key/value heads where the
# class allows it, a 96-token vocabulary, peaked attention (initializer_range 0.35); per class, the
# features that tell its forward pass apart, made to matter on a short probe (windows of 8 positions).
LLAMA_FAMILY = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", dict(attention_bias=True, mlp_bias=True)),
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(sliding_window=8)),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", dict(use_sliding_window=True, sliding_window=8, max_window_layers=1)),
    "olmo": ("OlmoConfig", "OlmoForCausalLM", dict(attention_bias=True, clip_qkv=4.0, tie_word_embeddings=True)),
    "olmo2": ("Olmo2Config", "Olmo2ForCausalLM", dict(attention_bias=True)),
    "olmo3": (
        "Olmo3Config",
        "Olmo3ForCausalLM",
        dict(
            attention_bias=True,
            sliding_window=8,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
            rope_parameters={
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                "full_attention": {
                    "rope_type": "yarn",
                    "rope_theta": 50000.0,
                    "factor": 4.0,
                    "original_max_position_embeddings": 16,
                },
            },
        ),
    ),
    "smollm3": (
        "SmolLM3Config",
        "SmolLM3ForCausalLM",
        dict(attention_bias=True, mlp_bias=True, no_rope_layer_interval=2, use_sliding_window=True, sliding_window=8),
    ),
}


def llama_family_model(model_type: str, seed: int, *, perturbed: bool = True, **overrides):
    """A small random model of one Llama-family config class (see :data:`LLAMA_FAMILY`), eager
    attention; ``perturbed`` as for :func:`gpt2_model`; ``overrides`` change its config."""
    import transformers

    config_name, model_name, features = LLAMA_FAMILY[model_type]
    settings = dict(
        num_hidden_layers=3,
        hidden_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        vocab_size=96,
        max_position_embeddings=64,
        bos_token_id=95,
        eos_token_id=95,
        pad_token_id=None,
        initializer_range=0.35,
        attn_implementation="eager",
        **features,
    )
    settings.update(overrides)
    torch.manual_seed(seed)  # transformers initialises from the global RNG; test models only
    config = getattr(transformers, config_name)(**settings)
    model = getattr(transformers, model_name)(config).eval()
    if not perturbed:
        return model
    perturb(model, seed)
    with torch.no_grad():  # QK-norm leaves q and k of unit size: gains of 1.5-4.5 keep the attention peaked
        for name, parameter in model.named_parameters():
            if name.endswith(("q_norm.weight", "k_norm.weight")):
                parameter.mul_(3.0)
    return model


def llama_model(seed: int, **overrides):
    """Llama: q/k/v/o and MLP biases, grouped-query attention, untied embeddings."""
    return llama_family_model("llama", seed, **overrides)


def mistral_model(seed: int, **overrides):
    """Mistral: a sliding window of 8 on every layer, grouped-query attention."""
    return llama_family_model("mistral", seed, **overrides)


def qwen2_model(seed: int, **overrides):
    """Qwen2: q/k/v biases, a sliding window of 8 on the layers from 1 on."""
    return llama_family_model("qwen2", seed, **overrides)


def olmo_model(seed: int, **overrides):
    """OLMo 1: LayerNorm without parameters, clip_qkv, biases, tied embeddings (as OLMo-1B)."""
    return llama_family_model("olmo", seed, **overrides)


def olmo2_model(seed: int, **overrides):
    """OLMo 2: RMSNorm after attention and after the MLP, QK-norm across heads, biases."""
    return llama_family_model("olmo2", seed, **overrides)


def olmo3_model(seed: int, **overrides):
    """OLMo 3: as OLMo 2, with sliding-window layers and YaRN rope scaling on the full-attention one."""
    return llama_family_model("olmo3", seed, **overrides)


def smollm3_model(seed: int, **overrides):
    """SmolLM3: no rotary embedding on every second layer (which slides a window of 8), biases, tied."""
    return llama_family_model("smollm3", seed, **overrides)


def gptj_model(seed: int, *, perturbed: bool = True, **overrides):
    """A small random GPT-J (scanned through transformers' own model): partial interleaved rotary."""
    from transformers import GPTJConfig, GPTJForCausalLM

    settings = dict(
        n_layer=2, n_embd=64, n_head=4, rotary_dim=8, vocab_size=96, n_positions=64, bos_token_id=95,
        eos_token_id=95, initializer_range=0.35, attn_implementation="eager",
    )  # fmt: skip
    settings.update(overrides)
    torch.manual_seed(seed)
    model = GPTJForCausalLM(GPTJConfig(**settings)).eval()
    return perturb(model, seed) if perturbed else model


def gpt_neo_model(seed: int, *, perturbed: bool = True, **overrides):
    """A small random GPT-Neo (through transformers): global and local (window 8) attention layers."""
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    settings = dict(
        num_layers=2, hidden_size=64, num_heads=4, vocab_size=96, max_position_embeddings=64,
        attention_types=[[["global", "local"], 1]], window_size=8, bos_token_id=95, eos_token_id=95,
        initializer_range=0.35, attn_implementation="eager",
    )  # fmt: skip
    settings.update(overrides)
    torch.manual_seed(seed)
    model = GPTNeoForCausalLM(GPTNeoConfig(**settings)).eval()
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
