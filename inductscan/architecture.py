"""GPT-2 and GPT-NeoX checkpoints, turned into one layout that :mod:`inductscan.model` runs.

A Hugging Face config is read into an :class:`Architecture`; a config attribute whose effect this
module does not reproduce is refused with an error naming it, rather than converted wrongly (the
penzai habit). The Stanford CRFM GPT-2 flags ``scale_attn_by_inverse_layer_idx`` and
``reorder_and_upcast_attn`` are honoured: the first divides the attention logits of layer ``l``
by ``l + 1``; the second only upcasts to float32, which the runner does anyway.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from inductscan.errors import CorruptCheckpointError, UnsupportedArchitectureError

SUPPORTED = ("gpt2", "gpt_neox")
ACTIVATIONS = {"gelu": "none", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu_fast": "tanh"}


@dataclass(frozen=True)
class Architecture:
    family: str
    n_layers: int
    n_heads: int
    d_model: int
    d_mlp: int
    n_ctx: int
    vocab_size: int
    ln_eps: float
    gelu_approximation: str  # torch.nn.functional.gelu's `approximate`
    attn_scales: tuple[float, ...]  # multiplies q.k in each layer
    parallel_residual: bool
    rotary_dims: int  # 0: learned absolute positions (GPT-2)
    rotary_base: float
    bos_token_id: int | None
    special_tokens: tuple[int, ...]

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads


def read_architecture(config_path: Path) -> Architecture:
    """Read a checkpoint's ``config.json``; refuse what inductscan cannot run faithfully."""
    try:
        raw = json.loads(Path(config_path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CorruptCheckpointError(f"cannot read {config_path}: {error}") from error
    model_type = raw.get("model_type")
    if model_type not in SUPPORTED:
        raise UnsupportedArchitectureError(
            f"model_type {model_type!r} in {config_path} is not supported; inductscan runs {', '.join(SUPPORTED)}"
        )
    from transformers import GPT2Config, GPTNeoXConfig  # heavy import, only where needed

    if model_type == "gpt2":
        return _gpt2(GPT2Config.from_dict(raw))
    return _gpt_neox(GPTNeoXConfig.from_dict(raw))


def _refuse(condition: bool, what: str) -> None:
    if condition:
        raise UnsupportedArchitectureError(f"unsupported config: {what}")


def _activation(name: str) -> str:
    _refuse(name not in ACTIVATIONS, f"activation {name!r} (supported: {', '.join(ACTIVATIONS)})")
    return ACTIVATIONS[name]


def _special(config) -> tuple[int, ...]:
    ids = {getattr(config, name, None) for name in ("bos_token_id", "eos_token_id", "pad_token_id")}
    flat = set()
    for value in ids:
        flat.update(value if isinstance(value, list) else [value])
    return tuple(sorted(i for i in flat if isinstance(i, int)))


def _gpt2(config) -> Architecture:
    _refuse(bool(config.add_cross_attention), "gpt2 add_cross_attention=True")
    d_head = config.n_embd // config.n_head
    scale = d_head**-0.5 if config.scale_attn_weights else 1.0
    inverse_layer = bool(config.scale_attn_by_inverse_layer_idx)
    return Architecture(
        family="gpt2",
        n_layers=config.n_layer,
        n_heads=config.n_head,
        d_model=config.n_embd,
        d_mlp=config.n_inner or 4 * config.n_embd,
        n_ctx=config.n_positions,
        vocab_size=config.vocab_size,
        ln_eps=config.layer_norm_epsilon,
        gelu_approximation=_activation(config.activation_function),
        attn_scales=tuple(scale / (layer + 1 if inverse_layer else 1) for layer in range(config.n_layer)),
        parallel_residual=False,
        rotary_dims=0,
        rotary_base=0.0,
        bos_token_id=config.bos_token_id,
        special_tokens=_special(config),
    )


def _gpt_neox(config) -> Architecture:
    rope = dict(config.rope_parameters or {})
    _refuse(rope.get("rope_type", "default") != "default", f"gpt_neox rope_type {rope.get('rope_type')!r}")
    d_head = config.hidden_size // config.num_attention_heads
    return Architecture(
        family="gpt_neox",
        n_layers=config.num_hidden_layers,
        n_heads=config.num_attention_heads,
        d_model=config.hidden_size,
        d_mlp=config.intermediate_size,
        n_ctx=config.max_position_embeddings,
        vocab_size=config.vocab_size,
        ln_eps=config.layer_norm_eps,
        gelu_approximation=_activation(config.hidden_act),
        attn_scales=(d_head**-0.5,) * config.num_hidden_layers,
        parallel_residual=bool(config.use_parallel_residual),
        rotary_dims=int(d_head * rope.get("partial_rotary_factor", 1.0)),
        rotary_base=float(rope["rope_theta"]),
        bos_token_id=config.bos_token_id,
        special_tokens=_special(config),
    )


@dataclass(frozen=True)
class Layer:
    """One block's weights, all as ``x @ W`` (inputs on the left)."""

    ln1_weight: torch.Tensor  # (d_model,)
    ln1_bias: torch.Tensor
    qkv_weight: torch.Tensor  # (d_model, 3 * n_heads * d_head): q heads, then k heads, then v heads
    qkv_bias: torch.Tensor  # (3 * n_heads * d_head,)
    out_weight: torch.Tensor  # (n_heads * d_head, d_model): rows of head h are h*d_head:(h+1)*d_head
    out_bias: torch.Tensor  # (d_model,)
    ln2_weight: torch.Tensor
    ln2_bias: torch.Tensor
    mlp_in_weight: torch.Tensor  # (d_model, d_mlp)
    mlp_in_bias: torch.Tensor
    mlp_out_weight: torch.Tensor  # (d_mlp, d_model)
    mlp_out_bias: torch.Tensor


@dataclass(frozen=True)
class Weights:
    architecture: Architecture
    embed: torch.Tensor  # W_E (vocab, d_model)
    positions: torch.Tensor | None  # (n_ctx, d_model), GPT-2 only
    layers: tuple[Layer, ...]
    final_ln_weight: torch.Tensor
    final_ln_bias: torch.Tensor
    unembed: torch.Tensor  # W_U (d_model, vocab); may be a view of embed

    def value_output(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-head W_V (layer, head, d_model, d_head) and W_O (layer, head, d_head, d_model)."""
        arch = self.architecture
        h, e = arch.n_heads, arch.d_head
        values = torch.stack([layer.qkv_weight[:, 2 * h * e :].reshape(arch.d_model, h, e) for layer in self.layers])
        outputs = torch.stack([layer.out_weight.reshape(h, e, arch.d_model) for layer in self.layers])
        return values.permute(0, 2, 1, 3), outputs


def _take(state: dict[str, torch.Tensor], key: str, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    try:
        return state[key].to(device=device, dtype=dtype)
    except KeyError:
        raise CorruptCheckpointError(f"weight {key!r} is missing from the checkpoint") from None


def _strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Accept weights saved from the bare model as well as from the LM-head model."""
    if any(key.startswith(prefix) for key in state):
        return {key.removeprefix(prefix): value for key, value in state.items()}
    return state


def convert(
    arch: Architecture, state: dict[str, torch.Tensor], dtype: torch.dtype = torch.float32, device: str = "cpu"
) -> Weights:
    """Turn a Hugging Face state dict into :class:`Weights` in ``dtype`` on ``device``."""
    if arch.family == "gpt2":
        state = _strip_prefix(state, "transformer.")

    def take(key: str) -> torch.Tensor:
        return _take(state, key, dtype, torch.device(device))

    if arch.family == "gpt2":
        return _convert_gpt2(arch, take)
    return _convert_gpt_neox(arch, take, lambda key: key in state)


def _convert_gpt2(arch: Architecture, take: Callable[[str], torch.Tensor]) -> Weights:
    layers = []
    for i in range(arch.n_layers):
        p = f"h.{i}."
        # GPT-2's Conv1D stores (in, out) already, and c_attn's columns are [q | k | v], heads contiguous.
        layers.append(
            Layer(
                take(p + "ln_1.weight"), take(p + "ln_1.bias"),
                take(p + "attn.c_attn.weight"), take(p + "attn.c_attn.bias"),
                take(p + "attn.c_proj.weight"), take(p + "attn.c_proj.bias"),
                take(p + "ln_2.weight"), take(p + "ln_2.bias"),
                take(p + "mlp.c_fc.weight"), take(p + "mlp.c_fc.bias"),
                take(p + "mlp.c_proj.weight"), take(p + "mlp.c_proj.bias"),
            )
        )  # fmt: skip
    embed = take("wte.weight")
    _check_shape(embed, (arch.vocab_size, arch.d_model), "wte.weight")
    return Weights(arch, embed, take("wpe.weight"), tuple(layers), take("ln_f.weight"), take("ln_f.bias"), embed.T)


def _neox_qkv(weight: torch.Tensor, bias: torch.Tensor, arch: Architecture) -> tuple[torch.Tensor, torch.Tensor]:
    """NeoX's fused projection is (n_heads, [q|k|v], d_head) along its outputs; regroup to q, k, v."""
    h, e, d = arch.n_heads, arch.d_head, arch.d_model
    weight = weight.reshape(h, 3, e, d).transpose(0, 1).reshape(3 * h * e, d).T.contiguous()
    bias = bias.reshape(h, 3, e).transpose(0, 1).reshape(3 * h * e)
    return weight, bias


def _convert_gpt_neox(arch: Architecture, take: Callable[[str], torch.Tensor], has: Callable[[str], bool]) -> Weights:
    embed = take("gpt_neox.embed_in.weight")

    def bias_or_zero(key: str, size: int) -> torch.Tensor:  # attention_bias=False saves none
        return take(key) if has(key) else embed.new_zeros(size)

    layers = []
    for i in range(arch.n_layers):
        p = f"gpt_neox.layers.{i}."
        d = arch.d_model
        qkv = _neox_qkv(take(p + "attention.query_key_value.weight"),
                        bias_or_zero(p + "attention.query_key_value.bias", 3 * d), arch)
        layers.append(
            Layer(
                take(p + "input_layernorm.weight"), take(p + "input_layernorm.bias"),
                *qkv,
                take(p + "attention.dense.weight").T.contiguous(), bias_or_zero(p + "attention.dense.bias", d),
                take(p + "post_attention_layernorm.weight"), take(p + "post_attention_layernorm.bias"),
                take(p + "mlp.dense_h_to_4h.weight").T.contiguous(), take(p + "mlp.dense_h_to_4h.bias"),
                take(p + "mlp.dense_4h_to_h.weight").T.contiguous(), take(p + "mlp.dense_4h_to_h.bias"),
            )
        )  # fmt: skip
    _check_shape(embed, (arch.vocab_size, arch.d_model), "gpt_neox.embed_in.weight")
    # Pythia files call the unembedding embed_out; transformers 5 calls it lm_head in memory.
    unembed = take("lm_head.weight" if has("lm_head.weight") else "embed_out.weight").T
    return Weights(
        arch, embed, None, tuple(layers),
        take("gpt_neox.final_layer_norm.weight"), take("gpt_neox.final_layer_norm.bias"), unembed,
    )  # fmt: skip


def _check_shape(tensor: torch.Tensor, shape: tuple[int, ...], key: str) -> None:
    if tuple(tensor.shape) != shape:
        raise CorruptCheckpointError(f"weight {key!r} has shape {tuple(tensor.shape)}, the config says {shape}")
