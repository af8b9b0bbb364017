"""The Llama family: Llama, Mistral, Qwen2, OLMo 1/2/3 and SmolLM3 checkpoints, read into one
:class:`LlamaArchitecture` whose flags say what each config class's modeling code does, and their
weights, by name, into :class:`LlamaLayer` tensors.

Each transformers config class is one :class:`Variant` row of :data:`VARIANTS` (data, not branches):
which norm it uses and where, whether q and k are normalised, which projections carry biases, how
its layers get a sliding window and a rotary embedding. The rows are read from transformers 5's
``models/<type>/modeling_<type>.py``; :mod:`inductscan.families.llama_forward` honours the flags.
A config attribute whose effect is not reproduced is refused with one line naming it (the rule
``inductscan/architecture.py`` follows), and so is a config key the class does not know: such a
key belongs to a checkpoint written for other code (an OLMo checkpoint in its own ``hf_olmo``
format, a model that needs ``trust_remote_code``), which transformers would silently misread.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from inductscan.errors import CorruptCheckpointError, UnsupportedArchitectureError

if TYPE_CHECKING:
    from inductscan.weights import StreamedEmbedding


@dataclass(frozen=True)
class Variant:
    """What one transformers config class builds, as flags. An attribute name in a bias field
    means "as the config says"; a bool is what the class always does."""

    config_class: str
    norm: str = "rms"  # "rms": RMSNorm with gains; "layer": LayerNorm without parameters, eps 1e-5 (OLMo 1)
    post_norm: bool = False  # RMSNorm after attention and after the MLP, none before (OLMo 2/3)
    qk_norm: bool = False  # one RMSNorm over all heads' q, one over all heads' k, before the split (OLMo 2/3)
    qkv_bias: str | bool = False
    output_bias: str | bool = False
    mlp_bias: str | bool = False
    windows: str = "none"  # "none"; "every" layer (Mistral); "layer_types": the "sliding_attention" layers
    rope: str = "one"  # "one": rope_parameters; "per_layer_type": rope_parameters[the layer's type] (OLMo 3)
    no_rope_layers: bool = False  # SmolLM3: layer i has no rotary embedding where no_rope_layers[i] == 0
    clip_qkv: bool = False  # OLMo 1: q, k and v clamped to [-clip_qkv, clip_qkv]


VARIANTS = {
    "llama": Variant("LlamaConfig", qkv_bias="attention_bias", output_bias="attention_bias", mlp_bias="mlp_bias"),
    "mistral": Variant("MistralConfig", windows="every"),
    "qwen2": Variant("Qwen2Config", qkv_bias=True, windows="layer_types"),
    "olmo": Variant("OlmoConfig", norm="layer", qkv_bias="attention_bias", output_bias="attention_bias", clip_qkv=True),
    "olmo2": Variant(
        "Olmo2Config", post_norm=True, qk_norm=True, qkv_bias="attention_bias", output_bias="attention_bias"
    ),
    "olmo3": Variant(
        "Olmo3Config",
        post_norm=True,
        qk_norm=True,
        qkv_bias="attention_bias",
        output_bias="attention_bias",
        windows="layer_types",
        rope="per_layer_type",
    ),
    "smollm3": Variant(
        "SmolLM3Config",
        qkv_bias="attention_bias",
        output_bias="attention_bias",
        mlp_bias="mlp_bias",
        windows="layer_types",
        no_rope_layers=True,
    ),
}

# Config fields read below, or read by transformers only to derive one of them (their effect is there).
READ = frozenset(
    {
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "hidden_act",
        "max_position_embeddings",
        "rms_norm_eps",
        "rope_parameters",
        "tie_word_embeddings",
        "attention_bias",
        "mlp_bias",
        "sliding_window",
        "layer_types",
        "no_rope_layers",
        "clip_qkv",
        "bos_token_id",
        "eos_token_id",
        "pad_token_id",
        "use_sliding_window",  # Qwen2, SmolLM3: derives sliding_window and layer_types
        "max_window_layers",  # Qwen2: derives layer_types
        "no_rope_layer_interval",  # SmolLM3: derives no_rope_layers
    }
)
# Fields and keys that change nothing in an evaluation forward pass (training, generation, bookkeeping;
# pretraining_tp only split the projections, in transformers 4, to the same result).
INERT = frozenset(
    {
        "use_cache",
        "initializer_range",
        "attention_dropout",
        "pretraining_tp",
        "architectures",
        "chunk_size_feed_forward",
        "dtype",
        "torch_dtype",
        "id2label",
        "label2id",
        "is_encoder_decoder",
        "output_attentions",
        "output_hidden_states",
        "problem_type",
        "return_dict",
        "transformers_version",
        "_name_or_path",
        "model_type",
        "rope_scaling",  # older configs: moved into rope_parameters by transformers
        "rope_theta",
        "is_llama_config",  # written by nanotron's conversion (SmolLM2)
        "rope_interleaved",  # nanotron's too; refused below unless false
    }
)
ROPE_TYPES = ("default", "linear", "dynamic", "yarn", "llama3")  # cos and sin not changed by the probe's length
ACTIVATIONS = ("silu", "swish")  # SwiGLU's gate: transformers' ACT2FN maps both to SiLU
LAYER_TYPES = ("full_attention", "sliding_attention")
OLMO_LAYER_NORM_EPS = 1e-5  # OlmoLayerNorm's, fixed in modeling_olmo.py


@dataclass(frozen=True)
class Rotary:
    """One layer's rotary embedding: dimension ``i`` of a head turns with dimension ``i + d_head / 2``
    by the angle ``position * inv_freq[i]`` (halves, not interleaved); cos and sin are multiplied by
    ``attention_scaling`` (YaRN's; 1 otherwise)."""

    inv_freq: tuple[float, ...]
    attention_scaling: float = 1.0


@dataclass(frozen=True)
class LlamaArchitecture:
    """A Llama-family checkpoint's shape and the flags of its config class (see :class:`Variant`)."""

    family: str  # the config's model_type
    n_layers: int
    n_heads: int
    n_kv_heads: int  # head h reads key/value head h // (n_heads / n_kv_heads)
    d_model: int
    d_head: int
    d_mlp: int
    n_ctx: int
    vocab_size: int
    norm: str
    norm_eps: float
    post_norm: bool
    qk_norm: bool
    qkv_bias: bool
    output_bias: bool
    mlp_bias: bool
    clip_qkv: float | None
    rotary: tuple[Rotary | None, ...]  # per layer; None: no rotary embedding (SmolLM3's NoPE layers)
    windows: tuple[int | None, ...]  # per layer: a query sees its last `window` positions; None: all before it
    tied_embeddings: bool
    bos_token_id: int | None
    special_tokens: tuple[int, ...]

    @property
    def group_size(self) -> int:
        """Query heads per key/value head."""
        return self.n_heads // self.n_kv_heads

    @property
    def final_norm_centres(self) -> bool:
        """Whether the final norm subtracts the mean (LayerNorm) or not (RMSNorm)."""
        return self.norm == "layer"


def read_architecture(config_path: Path) -> LlamaArchitecture:
    """Read a Llama-family ``config.json``; refuse what the forward pass would not reproduce."""
    raw = _read_json(config_path)
    model_type = raw.get("model_type")
    variant = VARIANTS.get(model_type)
    if variant is None:
        raise UnsupportedArchitectureError(f"model_type {model_type!r} is not of the Llama family")
    import transformers  # heavy import, only where needed

    config_class = getattr(transformers, variant.config_class)
    known = {field.name for field in fields(config_class)}
    unknown = sorted(set(raw) - known - INERT)
    shown = ", ".join(unknown[:4]) + (f" and {len(unknown) - 4} more" if len(unknown) > 4 else "")
    _refuse(
        unknown,
        f"{variant.config_class} (model_type {model_type!r}) does not read the key(s) {shown} in {config_path}: "
        "a checkpoint written for other code",
    )
    _refuse(raw.get("rope_interleaved", False), "rope_interleaved=true (transformers rotates halves)")
    unread = sorted(known - READ - INERT)
    _refuse(unread, f"{variant.config_class} field(s) {', '.join(unread)} are not reproduced")
    try:
        config = config_class.from_dict(raw)
    except (ValueError, TypeError, KeyError) as error:  # @strict validation, rope parameters missing
        raise UnsupportedArchitectureError(f"{config_path}: {_first_line(error)}") from error
    return architecture(model_type, variant, config)


def architecture(model_type: str, variant: Variant, config) -> LlamaArchitecture:
    """The :class:`LlamaArchitecture` of a transformers config of the class ``variant`` describes."""
    _refuse(config.hidden_act not in ACTIVATIONS, f"hidden_act {config.hidden_act!r} (supported: silu)")
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    _refuse(heads < 1 or kv_heads < 1 or heads % kv_heads, f"{heads} query heads over {kv_heads} key/value heads")
    d_head = getattr(config, "head_dim", None) or config.hidden_size // heads
    layer_types = _layer_types(config, variant)
    eps = OLMO_LAYER_NORM_EPS if variant.norm == "layer" else config.rms_norm_eps
    return LlamaArchitecture(
        family=model_type,
        n_layers=config.num_hidden_layers,
        n_heads=heads,
        n_kv_heads=kv_heads,
        d_model=config.hidden_size,
        d_head=d_head,
        d_mlp=config.intermediate_size,
        n_ctx=config.max_position_embeddings,
        vocab_size=config.vocab_size,
        norm=variant.norm,
        norm_eps=float(eps),
        post_norm=variant.post_norm,
        qk_norm=variant.qk_norm,
        qkv_bias=_flag(config, variant.qkv_bias),
        output_bias=_flag(config, variant.output_bias),
        mlp_bias=_flag(config, variant.mlp_bias),
        clip_qkv=config.clip_qkv if variant.clip_qkv else None,
        rotary=_rotaries(config, variant, layer_types, d_head),
        windows=_windows(config, variant, layer_types),
        tied_embeddings=bool(config.tie_word_embeddings),
        bos_token_id=config.bos_token_id,
        special_tokens=_special(config),
    )


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CorruptCheckpointError(f"cannot read {path}: {error}") from error


def _refuse(condition, what: str) -> None:
    if condition:
        raise UnsupportedArchitectureError(f"unsupported config: {what}")


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _flag(config, flag: str | bool) -> bool:
    return bool(getattr(config, flag)) if isinstance(flag, str) else flag


def _layer_types(config, variant: Variant) -> tuple[str, ...]:
    """Each layer's attention type, where the class reads one (else every layer "full_attention")."""
    if variant.windows != "layer_types":
        return ("full_attention",) * config.num_hidden_layers
    types = tuple(config.layer_types)
    _refuse(len(types) != config.num_hidden_layers, f"{len(types)} layer_types for {config.num_hidden_layers} layers")
    odd = sorted(set(types) - set(LAYER_TYPES))
    _refuse(odd, f"layer_types {', '.join(map(repr, odd))} (supported: {', '.join(LAYER_TYPES)})")
    return types


def _windows(config, variant: Variant, layer_types: tuple[str, ...]) -> tuple[int | None, ...]:
    """Each layer's sliding window, as the class's attention mask sets it (masking_utils: a query at
    ``q`` sees the keys ``q - window < k <= q``)."""
    window = getattr(config, "sliding_window", None)
    if variant.windows == "every":
        return (window,) * config.num_hidden_layers
    sliding = [kind == "sliding_attention" for kind in layer_types]
    _refuse(any(sliding) and window is None, "sliding_attention layers without a sliding_window")
    _refuse(window is not None and any(sliding) and window < 1, f"sliding_window {window}")
    return tuple(window if is_sliding else None for is_sliding in sliding)


def _rotaries(config, variant: Variant, layer_types: tuple[str, ...], d_head: int) -> tuple[Rotary | None, ...]:
    uses_rope = list(config.no_rope_layers) if variant.no_rope_layers else [1] * config.num_hidden_layers
    _refuse(len(uses_rope) != config.num_hidden_layers, f"{len(uses_rope)} no_rope_layers entries")
    if variant.rope == "per_layer_type":
        made = {kind: _rotary(config, config.rope_parameters[kind], kind, d_head) for kind in set(layer_types)}
        return tuple(made[kind] if uses else None for kind, uses in zip(layer_types, uses_rope, strict=True))
    rotary = _rotary(config, config.rope_parameters, None, d_head)
    return tuple(rotary if uses else None for uses in uses_rope)


def _rotary(config, parameters: dict, layer_type: str | None, d_head: int) -> Rotary:
    """The inverse frequencies (and YaRN's scaling) transformers' rotary embedding computes for
    these parameters: ``default`` here, the scaled kinds by transformers' own ROPE_INIT_FUNCTIONS."""
    kind = parameters.get("rope_type", "default")
    _refuse(kind not in ROPE_TYPES, f"rope_type {kind!r} (supported: {', '.join(ROPE_TYPES)})")
    partial = parameters.get("partial_rotary_factor", 1.0)
    _refuse(partial != 1.0, f"partial_rotary_factor {partial}")
    if kind == "default":  # as the classes' compute_default_rope_parameters
        base = parameters["rope_theta"]
        inv_freq = 1.0 / (base ** (torch.arange(0, d_head, 2, dtype=torch.float) / d_head))
        scaling = 1.0
    else:
        from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

        inv_freq, scaling = ROPE_INIT_FUNCTIONS[kind](config, None, layer_type=layer_type)
    _refuse(2 * len(inv_freq) != d_head, f"rotary over {2 * len(inv_freq)} of {d_head} head dimensions")
    return Rotary(tuple(inv_freq.tolist()), float(scaling))


def _special(config) -> tuple[int, ...]:
    ids = set()
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        value = getattr(config, name, None)
        ids.update(value if isinstance(value, list) else [value])
    return tuple(sorted(i for i in ids if isinstance(i, int)))


# ---------------------------------------------------------------- weights


@dataclass(frozen=True)
class LlamaLayer:
    """One layer's tensors as stored (``nn.Linear`` weights are (out, in)); None where the config has none."""

    q_weight: torch.Tensor  # (n_heads * d_head, d_model)
    k_weight: torch.Tensor  # (n_kv_heads * d_head, d_model)
    v_weight: torch.Tensor  # (n_kv_heads * d_head, d_model)
    o_weight: torch.Tensor  # (d_model, n_heads * d_head)
    gate_weight: torch.Tensor  # (d_mlp, d_model)
    up_weight: torch.Tensor  # (d_mlp, d_model)
    down_weight: torch.Tensor  # (d_model, d_mlp)
    input_norm: torch.Tensor | None = None  # (d_model,): the RMSNorm gain before attention
    mlp_norm: torch.Tensor | None = None  # (d_model,): before the MLP
    attention_out_norm: torch.Tensor | None = None  # (d_model,): post-norm after attention (OLMo 2/3)
    mlp_out_norm: torch.Tensor | None = None  # (d_model,): post-norm after the MLP
    q_norm: torch.Tensor | None = None  # (n_heads * d_head,): over all heads' q at once
    k_norm: torch.Tensor | None = None  # (n_kv_heads * d_head,)
    q_bias: torch.Tensor | None = None
    k_bias: torch.Tensor | None = None
    v_bias: torch.Tensor | None = None
    o_bias: torch.Tensor | None = None
    gate_bias: torch.Tensor | None = None
    up_bias: torch.Tensor | None = None
    down_bias: torch.Tensor | None = None

    @property
    def ln1_weight(self) -> torch.Tensor:
        """The gain folded into each head's W_V for the copying score (docs/scores.md): the norm's
        before attention; ones where that norm has none (OLMo 1) or there is none (post-norm).
        Named as the GPT layers name theirs, so that :mod:`inductscan.measure` treats both alike."""
        if self.input_norm is not None:
            return self.input_norm
        return torch.ones(self.o_weight.shape[0], dtype=self.o_weight.dtype, device=self.o_weight.device)

    def value_output(self, arch: LlamaArchitecture) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-head W_V (head, d_model, d_head), head h taking its key/value group h // group_size's,
        and W_O (head, d_head, d_model), with a post-norm's gain folded in (docs/scores.md)."""
        h, e, d = arch.n_heads, arch.d_head, arch.d_model
        groups = torch.arange(h, device=self.v_weight.device) // arch.group_size
        values = self.v_weight.view(arch.n_kv_heads, e, d)[groups].transpose(1, 2)
        outputs = self.o_weight.view(d, h, e).permute(1, 2, 0)
        if self.attention_out_norm is not None:
            outputs = outputs * self.attention_out_norm
        return values, outputs


@dataclass(frozen=True)
class LlamaWeights:
    """A Llama-family checkpoint's weights, named as :class:`inductscan.weights.Weights` names the
    ones the scores read. ``layers`` may be :class:`inductscan.weights.StreamedLayers`."""

    architecture: LlamaArchitecture
    embed: torch.Tensor | StreamedEmbedding  # W_E (vocab, d_model)
    layers: Sequence[LlamaLayer]
    final_ln_weight: torch.Tensor  # (d_model,): the final norm's gain (ones for OLMo 1's LayerNorm)
    unembed: torch.Tensor  # W_U (d_model, vocab); a view of embed when tied


PREFIX = "model.layers."


def layer_tensors(arch: LlamaArchitecture) -> dict[str, tuple[str, tuple[int, ...]]]:
    """:class:`LlamaLayer` field -> (name in the layer, shape), for the tensors ``arch`` has."""
    d, e, m = arch.d_model, arch.d_head, arch.d_mlp
    q, kv = arch.n_heads * e, arch.n_kv_heads * e
    pre_gains = arch.norm == "rms" and not arch.post_norm
    present = {
        "q_weight": ("self_attn.q_proj.weight", (q, d), True),
        "k_weight": ("self_attn.k_proj.weight", (kv, d), True),
        "v_weight": ("self_attn.v_proj.weight", (kv, d), True),
        "o_weight": ("self_attn.o_proj.weight", (d, q), True),
        "gate_weight": ("mlp.gate_proj.weight", (m, d), True),
        "up_weight": ("mlp.up_proj.weight", (m, d), True),
        "down_weight": ("mlp.down_proj.weight", (d, m), True),
        "input_norm": ("input_layernorm.weight", (d,), pre_gains),
        # one name, two places: before the MLP (Llama), or after attention (OLMo 2/3's post-norm)
        "mlp_norm": ("post_attention_layernorm.weight", (d,), pre_gains),
        "attention_out_norm": ("post_attention_layernorm.weight", (d,), arch.post_norm),
        "mlp_out_norm": ("post_feedforward_layernorm.weight", (d,), arch.post_norm),
        "q_norm": ("self_attn.q_norm.weight", (q,), arch.qk_norm),
        "k_norm": ("self_attn.k_norm.weight", (kv,), arch.qk_norm),
        "q_bias": ("self_attn.q_proj.bias", (q,), arch.qkv_bias),
        "k_bias": ("self_attn.k_proj.bias", (kv,), arch.qkv_bias),
        "v_bias": ("self_attn.v_proj.bias", (kv,), arch.qkv_bias),
        "o_bias": ("self_attn.o_proj.bias", (d,), arch.output_bias),
        "gate_bias": ("mlp.gate_proj.bias", (m,), arch.mlp_bias),
        "up_bias": ("mlp.up_proj.bias", (m,), arch.mlp_bias),
        "down_bias": ("mlp.down_proj.bias", (d,), arch.mlp_bias),
    }
    return {field: (name, shape) for field, (name, shape, has) in present.items() if has}


def convert_layer(arch: LlamaArchitecture, state: Mapping[str, torch.Tensor], buffers, index: int) -> LlamaLayer:
    """Layer ``index``'s tensors from ``state`` into ``buffers`` (:class:`inductscan.weights.Buffers`),
    each checked for its shape and finiteness as it is copied."""
    prefix = f"{PREFIX}{index}."
    return LlamaLayer(
        **{field: buffers.take(state, prefix + name, shape) for field, (name, shape) in layer_tensors(arch).items()}
    )


def convert_globals(
    arch: LlamaArchitecture, state: Mapping[str, torch.Tensor], buffers, layers: Sequence[LlamaLayer]
) -> LlamaWeights:
    """The embeddings and the final norm, once every tensor of ``state`` is known to be explained."""
    refuse_unexplained(arch, state)
    d, vocab = arch.d_model, arch.vocab_size
    embed = buffers.embedding(state, "model.embed_tokens.weight", (vocab, d), tied=arch.tied_embeddings)
    if arch.norm == "rms":
        final = buffers.take(state, "model.norm.weight", (d,))
    else:
        final = torch.ones(d, dtype=buffers.dtype, device=buffers.device)
    unembed = embed.T if arch.tied_embeddings else buffers.take(state, "lm_head.weight", (vocab, d), slot="unembed").T
    return LlamaWeights(arch, embed, layers, final, unembed)


def expected_names(arch: LlamaArchitecture) -> set[str]:
    """Every tensor name a checkpoint of ``arch`` holds."""
    names = {"model.embed_tokens.weight"}
    names |= {"model.norm.weight"} if arch.norm == "rms" else set()
    names |= set() if arch.tied_embeddings else {"lm_head.weight"}
    per_layer = [name for name, _ in layer_tensors(arch).values()]
    return names | {f"{PREFIX}{index}.{name}" for index in range(arch.n_layers) for name in per_layer}


def refuse_unexplained(arch: LlamaArchitecture, state: Mapping[str, torch.Tensor]) -> None:
    """A checkpoint holding tensors its config does not explain (a q_norm beside a Llama config,
    a layer more than it says) would be run without them: refused, naming them. Rotary frequencies
    that older transformers saved, and a tied model's copy of the embedding, are ignored as
    transformers ignores them; a tied model's lm_head that is not that copy is refused."""
    ignored = {"lm_head.weight"} if arch.tied_embeddings else set()
    extra = sorted(
        name for name in set(state) - expected_names(arch) - ignored if not name.endswith("rotary_emb.inv_freq")
    )
    if extra:
        shown = ", ".join(extra[:3]) + (f" and {len(extra) - 3} more" if len(extra) > 3 else "")
        raise CorruptCheckpointError(f"the checkpoint holds tensors its {arch.family} config does not explain: {shown}")
    embedding = "model.embed_tokens.weight"
    if arch.tied_embeddings and "lm_head.weight" in state and embedding in state:
        if not torch.equal(state["lm_head.weight"], state[embedding]):
            # transformers then leaves them untied and unembeds with lm_head: scores from the
            # embedding would not be that model's
            raise CorruptCheckpointError(
                "config.json ties the embeddings (tie_word_embeddings) but the checkpoint's lm_head.weight "
                "differs from its embedding: set tie_word_embeddings to false if lm_head is the unembedding"
            )
