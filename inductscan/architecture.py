"""A GPT-2 or GPT-NeoX checkpoint's config, read into an :class:`Architecture`.

A Hugging Face config is read into an :class:`Architecture`; a config attribute whose effect this
module does not reproduce is refused with an error naming it, rather than converted wrongly (the
penzai habit). The Stanford CRFM GPT-2 flags ``scale_attn_by_inverse_layer_idx`` and
``reorder_and_upcast_attn`` are honoured: the first divides the attention logits of layer ``l``
by ``l + 1``; the second computes the attention logits in float32, which the forward pass does
in the compute dtype: the same in float32 and float64, while ``--dtype bfloat16``/``float16``
keep them in 16 bits (within the tolerances ``tests/test_edges.py`` states).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

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

    @property
    def final_norm_centres(self) -> bool:
        """The final LayerNorm subtracts the mean (the direct logit attribution centres the head's output)."""
        return True


def changes(first, second) -> list[str]:
    """What differs between two architectures (any family's), for a person: ``family gpt2 ->
    gpt_neox``, ``n_heads 4 -> 2``."""
    if type(first) is not type(second):
        names = [getattr(arch, "family", type(arch).__name__) for arch in (first, second)]
        return [f"family {names[0]} -> {names[1]}"]
    found = []
    for name in first.__dataclass_fields__:
        mine, theirs = getattr(first, name), getattr(second, name)
        if mine != theirs:
            found.append(name + (" differ" if isinstance(mine, tuple) else f" {mine} -> {theirs}"))
    return found


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


def _heads(n_heads: int, width: int) -> None:
    _refuse(n_heads < 1 or width < 1 or width % n_heads, f"{n_heads} heads cannot split a width of {width}")


def _gpt2(config) -> Architecture:
    _refuse(bool(config.add_cross_attention), "gpt2 add_cross_attention=True")
    _heads(config.n_head, config.n_embd)
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
    _heads(config.num_attention_heads, config.hidden_size)
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
