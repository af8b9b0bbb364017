"""The Llama family's forward pass: token ids through :class:`~inductscan.families.llama.LlamaWeights`,
every difference between the config classes taken from the architecture's flags. It opens no file.

As :func:`inductscan.model.forward` does for GPT-2 and GPT-NeoX, it computes each layer's attention
pattern eagerly and hands it, with the heads' outputs, to a callback; the tests check it against
transformers' eager implementation of every class (``tests/test_llama.py``). What it honours:

- grouped-query attention: query head ``h`` reads key/value head ``h // (n_heads / n_kv_heads)``
  (transformers' ``repeat_kv`` repeats each key/value head for consecutive query heads);
- rotary embeddings per layer (none on SmolLM3's NoPE layers; OLMo 3's per layer type), halves
  rotated together, cos and sin scaled by YaRN's factor;
- sliding windows per layer: a query at ``q`` sees the keys ``q - window < k <= q``;
- RMSNorm with gains before attention and the MLP, or after them (OLMo 2/3), or LayerNorm without
  parameters (OLMo 1); QK-norm as one RMSNorm over all heads' q (and all heads' k) before they are
  split into heads; ``clip_qkv``; biases where the config has them; a SwiGLU MLP.

Norms and the softmax are computed in float32 and cast back, as transformers does, so that a
16-bit pass keeps their precision.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from inductscan.families.llama import LlamaArchitecture, LlamaLayer, LlamaWeights, Rotary
from inductscan.model import ForwardResult, HeadEdit, Stages, next_token_losses

# on_layer(layer index, the layer's weights, pattern (batch, head, query, key), z (batch, head, position, d_head)).
# With a post-norm, z is divided by the norm's scale at its position: what each head hands W_O as the
# normalised output sees it (the norm's gain is folded into W_O by LlamaLayer.value_output).
LayerCallback = Callable[[int, LlamaLayer, torch.Tensor, torch.Tensor], None]


@torch.inference_mode()
def forward(
    weights: LlamaWeights,
    ids: torch.Tensor,
    on_layer: LayerCallback | None = None,
    *,
    logits_out: torch.Tensor | None = None,
    losses: bool = False,
) -> ForwardResult:
    """Run ``ids`` (batch, position) through the model; ``on_layer`` sees every layer's attention.

    ``logits_out`` and ``losses`` as for :func:`inductscan.model.forward`.
    """
    arch = weights.architecture
    x = run_layers(weights, embed(weights, ids), on_layer=on_layer)
    final_scale = _final_scale(arch, x)
    final = final_norm(weights, x)
    if losses:
        return ForwardResult(None, final_scale, next_token_losses(final, weights.unembed, ids))
    return ForwardResult(torch.matmul(final, weights.unembed, out=logits_out), final_scale)


def embed(weights: LlamaWeights, ids: torch.Tensor) -> torch.Tensor:
    """The residual stream entering layer 0, (batch, position, d_model)."""
    return weights.embed[ids]


def run_layers(
    weights: LlamaWeights,
    x: torch.Tensor,
    start: int = 0,
    *,
    on_layer: LayerCallback | None = None,
    edit: HeadEdit | None = None,
    on_residual: Callable[[int, torch.Tensor], None] | None = None,
    given_z: torch.Tensor | None = None,
) -> torch.Tensor:
    """The residual stream ``x`` entering layer ``start`` through the remaining layers; ``edit``,
    ``on_residual`` and ``given_z`` as for :func:`inductscan.model.run_layers` (``edit`` sees z, and
    ``given_z`` is, what ``W_O`` reads, before any post-norm). Not in inference mode, so that
    gradients can be taken through it."""
    arch = weights.architecture
    n_positions = x.shape[1]
    angles = {rotary: _cos_sin(rotary, n_positions, x) for rotary in set(arch.rotary) if rotary is not None}
    masks = {window: _mask(window, n_positions, x.device) for window in set(arch.windows)}
    plain = on_layer is not None or (edit is None and given_z is None)
    for index in range(start, len(weights.layers)):
        layer = weights.layers[index]  # a streamed layer is read now
        if on_residual is not None:
            on_residual(index, x)
        rotary = arch.rotary[index]
        entering = x if arch.post_norm else _norm(arch, x, layer.input_norm)
        pattern, z, attended = _attention(
            arch,
            layer,
            entering,
            None if rotary is None else angles[rotary],
            masks[arch.windows[index]],
            None if edit is None else lambda z, index=index: edit(index, z),
            plain=plain,
            given_z=given_z if index == start else None,
        )
        if arch.post_norm:
            inverse = _inverse_rms(attended, arch.norm_eps)  # (B, P, 1)
            attended = layer.attention_out_norm * (attended.float() * inverse).to(attended.dtype)
            z = z * inverse.to(z.dtype).view(z.shape[0], 1, n_positions, 1)
        if on_layer is not None:
            on_layer(index, layer, pattern, z)
        x = x + attended
        if arch.post_norm:
            x = x + _rms(_mlp(layer, x), layer.mlp_out_norm, arch.norm_eps)
        else:
            x = x + _mlp(layer, _norm(arch, x, layer.mlp_norm))
    return x


def final_norm(weights: LlamaWeights, x: torch.Tensor) -> torch.Tensor:
    """The final norm's output, what ``W_U`` reads, (batch, position, d_model)."""
    return _norm(weights.architecture, x, weights.final_ln_weight)


def _attention(
    arch: LlamaArchitecture,
    layer: LlamaLayer,
    x: torch.Tensor,
    cos_sin: tuple[torch.Tensor, torch.Tensor] | None,
    mask: torch.Tensor,
    edit: Callable[[torch.Tensor], torch.Tensor] | None = None,
    *,
    plain: bool = True,
    given_z: torch.Tensor | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """(pattern (B, H, P, P), z (B, H, P, E), the attention's output (B, P, d_model)); ``edit(z)``
    replaces what ``W_O`` reads (the returned z stays the pass's own). A pass of inductscan.effects
    (not ``plain``) reads no pattern and gets None for it: torch's fused kernel runs it, which
    keeps no (B, H, P, P) tensor, nor (with a gradient) the ones a backward pass would hold;
    with ``given_z``, W_O reads it and nothing else is computed (the pattern is None)."""
    batch, n_positions, _ = x.shape
    pattern, z = (None, given_z) if given_z is not None else _heads(arch, layer, x, cos_sin, mask, plain)
    read = z if edit is None else edit(z)
    merged = read.transpose(1, 2).reshape(batch, n_positions, arch.n_heads * arch.d_head)
    return pattern, z, F.linear(merged, layer.o_weight, layer.o_bias)


def _heads(arch, layer, x, cos_sin, mask, plain) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(pattern (B, H, P, P), or None when not ``plain``; z (B, H, P, E)) of the layer's heads on ``x``."""
    batch, n_positions, _ = x.shape
    kv, group, e = arch.n_kv_heads, arch.group_size, arch.d_head
    q = F.linear(x, layer.q_weight, layer.q_bias)  # (B, P, H * E)
    k = F.linear(x, layer.k_weight, layer.k_bias)  # (B, P, KV * E)
    v = F.linear(x, layer.v_weight, layer.v_bias)
    if arch.clip_qkv is not None:
        q, k, v = (t.clamp_(-arch.clip_qkv, arch.clip_qkv) for t in (q, k, v))
    if arch.qk_norm:  # across all heads at once, before the split (modeling_olmo2.py)
        q, k = _rms(q, layer.q_norm, arch.norm_eps), _rms(k, layer.k_norm, arch.norm_eps)
    # head h = kv_head * group + g reads key/value head h // group
    q = q.view(batch, n_positions, kv, group, e).permute(0, 2, 3, 1, 4)  # (B, KV, G, P, E)
    k = k.view(batch, n_positions, kv, 1, e).permute(0, 2, 3, 1, 4)  # (B, KV, 1, P, E)
    v = v.view(batch, n_positions, kv, 1, e).permute(0, 2, 3, 1, 4)
    if cos_sin is not None:
        q, k = _rotate(q, *cos_sin), _rotate(k, *cos_sin)
    if not plain:
        return None, _fused(q, k, v, mask).view(batch, arch.n_heads, n_positions, e)
    pattern = _pattern(q, k, mask)  # (B, KV, G, P, P)
    z = (pattern @ v).view(batch, arch.n_heads, n_positions, e)  # (B, H, P, E)
    return pattern.view(batch, arch.n_heads, n_positions, n_positions), z


def _pattern(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The attention pattern (B, KV, G, P, P) of q (B, KV, G, P, E) and k (B, KV, 1, P, E), keys
    where ``mask`` (P, P) is True left out; the softmax in float32."""
    logits = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    return logits.masked_fill_(mask, float("-inf")).softmax(dim=-1, dtype=torch.float32).to(q.dtype)


def _fused(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """What ``_pattern(q, k, mask) @ v`` is, by torch's fused kernel, (B, KV, G, P, E)."""
    batch, kv, group, n_positions, e = q.shape
    z = F.scaled_dot_product_attention(
        q.reshape(batch, kv * group, n_positions, e),
        k.reshape(batch, kv, n_positions, e),
        v.reshape(batch, kv, n_positions, e),
        attn_mask=~mask,
        enable_gqa=group > 1,
    )
    return z.view(q.shape)


def _mlp(layer: LlamaLayer, x: torch.Tensor) -> torch.Tensor:
    gate = F.silu(F.linear(x, layer.gate_weight, layer.gate_bias))
    return F.linear(gate * F.linear(x, layer.up_weight, layer.up_bias), layer.down_weight, layer.down_bias)


def _norm(arch: LlamaArchitecture, x: torch.Tensor, gain: torch.Tensor | None) -> torch.Tensor:
    """The norm before a block: RMSNorm with ``gain``, or OLMo 1's LayerNorm without parameters."""
    if arch.norm == "layer":
        return F.layer_norm(x.float(), (x.shape[-1],), None, None, arch.norm_eps).to(x.dtype)
    return _rms(x, gain, arch.norm_eps)


def _inverse_rms(x: torch.Tensor, eps: float) -> torch.Tensor:
    """``1 / sqrt(mean(x^2) + eps)`` over the last dimension, in float32, kept as (..., 1)."""
    return torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps)


def _rms(x: torch.Tensor, gain: torch.Tensor, eps: float) -> torch.Tensor:
    return gain * (x.float() * _inverse_rms(x, eps)).to(x.dtype)


def _final_scale(arch: LlamaArchitecture, x: torch.Tensor) -> torch.Tensor:
    """(batch, position): what the final norm divides by, ``sqrt(var + eps)`` or ``sqrt(mean(x^2) + eps)``."""
    spread = x.var(dim=-1, unbiased=False) if arch.norm == "layer" else x.pow(2).mean(dim=-1)
    return (spread + arch.norm_eps).sqrt()


def _cos_sin(rotary: Rotary, n_positions: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (position, d_head) as transformers' rotary embeddings compute them, in float32."""
    inv_freq = torch.tensor(rotary.inv_freq, dtype=torch.float32)
    freqs = torch.arange(n_positions, dtype=torch.float32)[:, None] * inv_freq  # (P, E / 2)
    angles = torch.cat([freqs, freqs], dim=-1).to(like.device)
    cos, sin = angles.cos() * rotary.attention_scaling, angles.sin() * rotary.attention_scaling
    return cos.to(like.dtype), sin.to(like.dtype)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Dimension i turned with dimension i + E/2 (transformers' ``rotate_half``)."""
    first, second = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-second, first], dim=-1) * sin


def _mask(window: int | None, n_positions: int, device: torch.device) -> torch.Tensor:
    """(P, P), True where a query may not look: later keys, and keys ``window`` or more behind it."""
    query = torch.arange(n_positions, device=device)[:, None]
    key = torch.arange(n_positions, device=device)[None, :]
    hidden = key > query
    return hidden if window is None else hidden | (key <= query - window)


STAGES = Stages(embed, run_layers, final_norm)
