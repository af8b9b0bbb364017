"""GPT-2 and GPT-NeoX checkpoints, turned into one layout that :mod:`inductscan.model` runs.

A Hugging Face config is read into an :class:`Architecture`; a config attribute whose effect this
module does not reproduce is refused with an error naming it, rather than converted wrongly (the
penzai habit). The Stanford CRFM GPT-2 flags ``scale_attn_by_inverse_layer_idx`` and
``reorder_and_upcast_attn`` are honoured: the first divides the attention logits of layer ``l``
by ``l + 1``; the second only upcasts to float32, which the runner does anyway.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from inductscan.errors import CorruptCheckpointError, NonFiniteError, UnsupportedArchitectureError

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

    def value_output(self, arch: Architecture) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-head W_V (head, d_model, d_head) and W_O (head, d_head, d_model)."""
        h, e = arch.n_heads, arch.d_head
        values = self.qkv_weight[:, 2 * h * e :].reshape(arch.d_model, h, e).permute(1, 0, 2)
        return values, self.out_weight.reshape(h, e, arch.d_model)


@dataclass(frozen=True)
class Weights:
    """A checkpoint's weights. ``layers`` is a tuple, or :class:`StreamedLayers`, which reads each
    layer from disk when the forward pass reaches it."""

    architecture: Architecture
    embed: torch.Tensor  # W_E (vocab, d_model)
    positions: torch.Tensor | None  # (n_ctx, d_model), GPT-2 only
    layers: Sequence[Layer]
    final_ln_weight: torch.Tensor
    final_ln_bias: torch.Tensor
    unembed: torch.Tensor  # W_U (d_model, vocab); may be a view of embed


LAYER_NUMBER = re.compile(r"\.\d+\.")


class Buffers:
    """Where converted weights go. With ``reuse``, each weight is copied into the tensor the same
    key got last time (when the shape agrees) instead of a fresh one: a scan converts checkpoint
    after checkpoint of one architecture without faulting in new memory for each. ``one_layer``
    gives every layer the same tensors, for streaming one layer at a time.
    """

    def __init__(self, dtype: torch.dtype, device: str | torch.device, *, reuse: bool = True, one_layer: bool = False):
        self.dtype, self.device = dtype, torch.device(device)
        self.reuse, self.one_layer = reuse, one_layer
        self.tensors: dict[str, torch.Tensor] = {}

    def take(self, state: Mapping[str, torch.Tensor], key: str, shape: tuple[int, ...], view: Callable | None = None,
             *, slot: str | None = None) -> torch.Tensor:  # fmt: skip
        """The weight ``key`` (through ``view``) in the buffer named ``slot`` (default: the key).

        Checked as it is copied (nanoGPT's ``from_pretrained`` habit): its stored ``shape`` must be
        the one the config implies, and every value must be finite, so that a checkpoint with a
        wrong or broken tensor is a recorded failure naming the tensor, not an error deep inside the
        forward pass or the eigenvalue solver.
        """
        try:
            source = state[key]
        except KeyError:
            raise CorruptCheckpointError(f"weight {key!r} is missing from the checkpoint") from None
        if tuple(source.shape) != tuple(shape):
            raise CorruptCheckpointError(f"weight {key!r} has shape {tuple(source.shape)}, the config says {shape}")
        if view is not None:
            source = view(source)
        if not self.reuse:
            return _finite(source.to(device=self.device, dtype=self.dtype).contiguous(), key)
        slot = slot or (LAYER_NUMBER.sub(".N.", key) if self.one_layer else key)
        buffer = self.tensors.get(slot)
        if buffer is None or buffer.shape != source.shape:
            buffer = torch.empty(source.shape, dtype=self.dtype, device=self.device)
            self.tensors[slot] = buffer
        return _finite(buffer.copy_(source), key)


def _finite(tensor: torch.Tensor, key: str) -> torch.Tensor:
    """``tensor``, or :class:`NonFiniteError` naming ``key`` if it holds a NaN or an infinity.

    The sum is one fast pass (3 ms for GPT-2 small's embedding, against 100 ms for
    ``isfinite(...).all()``) and is finite whenever every value is, barring an overflow of the sum
    itself, which the exact count below then rules out.
    """
    if bool(torch.isfinite(tensor.sum())):
        return tensor
    nan, finite = int(torch.isnan(tensor).sum()), int(torch.isfinite(tensor).sum())
    if finite == tensor.numel():
        return tensor
    infinite = tensor.numel() - finite - nan
    raise NonFiniteError(f"weight {key!r} holds non-finite values ({nan:,} NaN, {infinite:,} infinite)")


class _Prefixed(Mapping):
    """A state dict seen without the ``transformer.`` prefix that LM-head GPT-2 files carry."""

    def __init__(self, state: Mapping[str, torch.Tensor], prefix: str):
        self.state, self.prefix = state, prefix

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.state[self.prefix + key]

    def __iter__(self):
        return (key.removeprefix(self.prefix) for key in self.state if key.startswith(self.prefix))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.prefix + key in self.state


def _normalise(arch: Architecture, state: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    """Accept GPT-2 weights saved from the bare model as well as from the LM-head model."""
    if arch.family == "gpt2" and any(key.startswith("transformer.") for key in state):
        return _Prefixed(state, "transformer.")
    return state


def convert(
    arch: Architecture, state: Mapping[str, torch.Tensor], dtype: torch.dtype = torch.float32, device: str = "cpu",
    *, buffers: Buffers | None = None,
) -> Weights:  # fmt: skip
    """Turn a Hugging Face state dict into :class:`Weights` in ``dtype`` on ``device``.

    With ``buffers``, the weights are copied into its tensors (see :class:`Buffers`): the
    previous checkpoint converted into the same buffers is overwritten.
    """
    buffers = buffers or Buffers(dtype, device, reuse=False)
    state = _normalise(arch, state)
    family = FAMILIES[arch.family]
    layers = tuple(family.layer(arch, state, buffers, index) for index in range(arch.n_layers))
    return family.globals(arch, state, buffers, layers)


class StreamedLayers(Sequence):
    """A checkpoint's layers, each read from its files only when asked for, into one layer's worth
    of buffers that every layer shares: a layer is valid until the next one is read.

    Each read maps the files afresh and lets go of them after, so no more than one layer of the
    files stays resident either.
    """

    def __init__(self, arch: Architecture, open_state: Callable[[], Mapping[str, torch.Tensor]], buffers: Buffers):
        if not buffers.one_layer:
            raise ValueError("StreamedLayers needs Buffers(one_layer=True)")
        self.arch, self.open_state, self.buffers = arch, open_state, buffers

    def __len__(self) -> int:
        return self.arch.n_layers

    def __getitem__(self, index: int) -> Layer:
        if not 0 <= index < len(self):
            raise IndexError(index)
        state = _normalise(self.arch, self.open_state())
        return FAMILIES[self.arch.family].layer(self.arch, state, self.buffers, index)


def convert_streamed(
    arch: Architecture, open_state: Callable[[], Mapping[str, torch.Tensor]], buffers: Buffers
) -> Weights:
    """:class:`Weights` whose embeddings and final LayerNorm are in memory and whose layers are
    :class:`StreamedLayers`: peak memory is one layer plus the embeddings."""
    state = _normalise(arch, open_state())
    family = FAMILIES[arch.family]
    family.layer(arch, state, buffers, 0)  # fails early, as convert does, on a missing or misshapen weight
    return family.globals(arch, state, buffers, StreamedLayers(arch, open_state, buffers))


@dataclass(frozen=True)
class _Family:
    layer: Callable[[Architecture, Mapping, Buffers, int], Layer]
    globals: Callable[[Architecture, Mapping, Buffers, Sequence[Layer]], Weights]


def _gpt2_layer(arch: Architecture, state: Mapping, buffers: Buffers, index: int) -> Layer:
    # GPT-2's Conv1D stores (in, out) already, and c_attn's columns are [q | k | v], heads contiguous.
    p = f"h.{index}."
    d, m = arch.d_model, arch.d_mlp
    shapes = {"ln_1.weight": (d,), "ln_1.bias": (d,), "attn.c_attn.weight": (d, 3 * d), "attn.c_attn.bias": (3 * d,),
              "attn.c_proj.weight": (d, d), "attn.c_proj.bias": (d,), "ln_2.weight": (d,), "ln_2.bias": (d,),
              "mlp.c_fc.weight": (d, m), "mlp.c_fc.bias": (m,), "mlp.c_proj.weight": (m, d),
              "mlp.c_proj.bias": (d,)}  # fmt: skip
    return Layer(*(buffers.take(state, p + name, shape) for name, shape in shapes.items()))


def _gpt2_globals(arch: Architecture, state: Mapping, buffers: Buffers, layers: Sequence[Layer]) -> Weights:
    d = arch.d_model
    embed = buffers.take(state, "wte.weight", (arch.vocab_size, d))
    positions = buffers.take(state, "wpe.weight", (arch.n_ctx, d))
    final = buffers.take(state, "ln_f.weight", (d,)), buffers.take(state, "ln_f.bias", (d,))
    return Weights(arch, embed, positions, layers, *final, embed.T)


def _neox_layer(arch: Architecture, state: Mapping, buffers: Buffers, index: int) -> Layer:
    p = f"gpt_neox.layers.{index}."
    h, e, d, m = arch.n_heads, arch.d_head, arch.d_model, arch.d_mlp

    def take(name: str, shape: tuple[int, ...], view=None, *, optional: bool = False) -> torch.Tensor:
        if optional and p + name not in state:  # attention_bias=False saves none
            return torch.zeros(shape, dtype=buffers.dtype, device=buffers.device)
        return buffers.take(state, p + name, shape, view)

    # NeoX's fused projection is (n_heads, [q|k|v], d_head) along its outputs; regroup to q, k, v.
    return Layer(
        take("input_layernorm.weight", (d,)), take("input_layernorm.bias", (d,)),
        take("attention.query_key_value.weight", (3 * d, d),
             lambda w: w.reshape(h, 3, e, d).transpose(0, 1).reshape(3 * h * e, d).T),
        take("attention.query_key_value.bias", (3 * d,), lambda b: b.reshape(h, 3, e).transpose(0, 1).reshape(3 * h * e),
             optional=True),
        take("attention.dense.weight", (d, d), lambda w: w.T), take("attention.dense.bias", (d,), optional=True),
        take("post_attention_layernorm.weight", (d,)), take("post_attention_layernorm.bias", (d,)),
        take("mlp.dense_h_to_4h.weight", (m, d), lambda w: w.T), take("mlp.dense_h_to_4h.bias", (m,)),
        take("mlp.dense_4h_to_h.weight", (d, m), lambda w: w.T), take("mlp.dense_4h_to_h.bias", (d,)),
    )  # fmt: skip


def _neox_globals(arch: Architecture, state: Mapping, buffers: Buffers, layers: Sequence[Layer]) -> Weights:
    d, vocab = arch.d_model, arch.vocab_size
    embed = buffers.take(state, "gpt_neox.embed_in.weight", (vocab, d))
    # Pythia files call the unembedding embed_out; transformers 5 calls it lm_head in memory.
    unembed_key = "lm_head.weight" if "lm_head.weight" in state else "embed_out.weight"
    unembed = buffers.take(state, unembed_key, (vocab, d), slot="unembed").T
    final = (buffers.take(state, "gpt_neox.final_layer_norm.weight", (d,)),
             buffers.take(state, "gpt_neox.final_layer_norm.bias", (d,)))  # fmt: skip
    return Weights(arch, embed, None, layers, *final, unembed)


FAMILIES = {"gpt2": _Family(_gpt2_layer, _gpt2_globals), "gpt_neox": _Family(_neox_layer, _neox_globals)}
