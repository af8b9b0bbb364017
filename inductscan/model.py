"""The forward pass: run token ids through a checkpoint's :class:`~inductscan.weights.Weights`,
capturing what the scores need. It opens no file (see :mod:`inductscan.weights`).

The forward pass is written here rather than borrowed from transformers so that it computes the
attention pattern eagerly (honouring both Stanford GPT-2 flags, which transformers' fused
attention paths long ignored), hands each layer's pattern and per-head outputs to a callback
instead of keeping them all, and never builds a randomly initialised model. The tests check it
against transformers' eager implementation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from inductscan.architecture import Architecture
from inductscan.weights import Layer, Weights

# on_layer(layer index, the layer's weights, pattern (batch, head, query, key), z (batch, head, position, d_head))
LayerCallback = Callable[[int, Layer, torch.Tensor, torch.Tensor], None]
# edit(layer index, z (batch, head, position, d_head)) -> the z that W_O receives instead (head ablations)
HeadEdit = Callable[[int, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ForwardResult:
    logits: torch.Tensor | None  # (batch, position, vocab); None when the pass took the losses instead
    final_scale: torch.Tensor  # (batch, position): sqrt(var + eps) of the residual entering ln_f
    # (batch, position - 1): entry p - 1 is the loss of predicting token p from position p - 1
    token_losses: torch.Tensor | None = None


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), weight, bias, eps)


def _rotary(arch: Architecture, n_positions: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (position, rotary_dims) as GPT-NeoX uses them (halves, not interleaved)."""
    dims = arch.rotary_dims
    inv_freq = 1.0 / (arch.rotary_base ** (torch.arange(0, dims, 2, dtype=torch.int64).float() / dims))
    freqs = torch.outer(torch.arange(n_positions, dtype=torch.float32), inv_freq)
    angles = torch.cat([freqs, freqs], dim=-1).to(like.device)
    return angles.cos().to(like.dtype), angles.sin().to(like.dtype)


def _apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    dims = cos.shape[-1]
    rotated, passed = x[..., :dims], x[..., dims:]
    first, second = rotated.chunk(2, dim=-1)
    turned = torch.cat([-second, first], dim=-1)
    return torch.cat([rotated * cos + turned * sin, passed], dim=-1)


def _attention(
    arch: Architecture,
    layer: Layer,
    index: int,
    x: torch.Tensor,
    rotary,
    on_layer: LayerCallback | None,
    edit: HeadEdit | None = None,
    given_z: torch.Tensor | None = None,
    plain: bool = True,
) -> torch.Tensor:
    """The attention's output (B, P, d_model); with ``given_z`` (B, H, P, E), W_O's of it alone.
    A pass of :mod:`inductscan.effects` (not ``plain``) reads no pattern."""
    batch, n_positions, _ = x.shape
    z = _head_outputs(arch, layer, index, x, rotary, on_layer, edit, plain) if given_z is None else given_z
    merged = z.transpose(1, 2).reshape(batch, n_positions, arch.n_heads * arch.d_head)
    return _linear(merged, layer.out_weight, layer.out_bias)


def _head_outputs(arch, layer, index, x, rotary, on_layer, edit, plain) -> torch.Tensor:
    """z (B, H, P, E), what W_O reads, after ``on_layer`` saw the pattern and ``edit`` replaced z."""
    batch, n_positions, _ = x.shape
    qkv = _linear(x, layer.qkv_weight, layer.qkv_bias)  # (B, P, 3 * H * E)
    q, k, v = qkv.view(batch, n_positions, 3, arch.n_heads, arch.d_head).permute(2, 0, 3, 1, 4)  # (B, H, P, E)
    if rotary is not None:
        q, k = _apply_rotary(q, *rotary), _apply_rotary(k, *rotary)
    scale = arch.attn_scales[index]
    if not plain:  # a pass of inductscan.effects reads no pattern: the fused kernel keeps none, nor
        # (with a gradient) the (B, H, P, P) tensors a backward pass would otherwise hold for every layer
        z = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=float(scale))
    else:
        pattern = _pattern(q, k, scale)
        z = pattern @ v  # (B, H, P, E)
    if on_layer is not None:
        on_layer(index, layer, pattern, z)
    return z if edit is None else edit(index, z)


def _pattern(q: torch.Tensor, k: torch.Tensor, scale) -> torch.Tensor:
    """The causal attention pattern (B, H, P, P) of q and k (B, H, P, E)."""
    n_positions = q.shape[-2]
    logits = (q @ k.transpose(-1, -2)) * scale  # (B, H, P, P)
    causal = torch.ones(n_positions, n_positions, dtype=torch.bool, device=q.device).triu(1)
    return logits.masked_fill(causal, float("-inf")).softmax(dim=-1)


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``x @ weight + bias`` with the bias added inside the matrix product (one pass, not two)."""
    return torch.addmm(bias, x.reshape(-1, x.shape[-1]), weight).view(*x.shape[:-1], weight.shape[1])


def _mlp(arch: Architecture, layer: Layer, x: torch.Tensor) -> torch.Tensor:
    hidden = F.gelu(_linear(x, layer.mlp_in_weight, layer.mlp_in_bias), approximate=arch.gelu_approximation)
    return _linear(hidden, layer.mlp_out_weight, layer.mlp_out_bias)


@torch.inference_mode()
def forward(
    weights: Weights,
    ids: torch.Tensor,
    on_layer: LayerCallback | None = None,
    *,
    logits_out: torch.Tensor | None = None,
    losses: bool = False,
) -> ForwardResult:
    """Run ``ids`` (batch, position) through the model; ``on_layer`` sees every layer's attention.

    ``logits_out`` (batch, position, vocab), when given, receives the logits, so that a caller can
    reuse one buffer. With ``losses``, the pass returns each token's loss instead of the logits
    (see :func:`next_token_losses`).
    """
    arch = weights.architecture
    x = run_layers(weights, embed(weights, ids), on_layer=on_layer)
    final_scale = (x.var(dim=-1, unbiased=False) + arch.ln_eps).sqrt()
    final = final_norm(weights, x)
    if losses:
        return ForwardResult(None, final_scale, next_token_losses(final, weights.unembed, ids))
    return ForwardResult(torch.matmul(final, weights.unembed, out=logits_out), final_scale)


def embed(weights: Weights, ids: torch.Tensor) -> torch.Tensor:
    """The residual stream entering layer 0, (batch, position, d_model)."""
    x = weights.embed[ids]
    if weights.positions is not None:
        x = x + weights.positions[: ids.shape[1]]
    return x


def run_layers(
    weights: Weights,
    x: torch.Tensor,
    start: int = 0,
    *,
    on_layer: LayerCallback | None = None,
    edit: HeadEdit | None = None,
    on_residual: Callable[[int, torch.Tensor], None] | None = None,
    given_z: torch.Tensor | None = None,
) -> torch.Tensor:
    """The residual stream ``x`` entering layer ``start`` through the remaining layers.

    ``on_residual(index, x)`` sees the stream entering each layer; ``edit`` may replace the heads'
    outputs (see :data:`HeadEdit`); ``given_z`` (B, H, P, E) is what layer ``start``'s W_O reads,
    its attention not computed (an ablated pass of :mod:`inductscan.effects` starts there). Not in
    inference mode, so that :mod:`inductscan.effects` can take gradients through it (:func:`forward` is).
    """
    arch = weights.architecture
    rotary = _rotary(arch, x.shape[1], x) if arch.rotary_dims else None
    plain = on_layer is not None or (edit is None and given_z is None)
    for index in range(start, len(weights.layers)):
        layer = weights.layers[index]  # a streamed layer (weights.StreamedLayers) is read now
        if on_residual is not None:
            on_residual(index, x)
        attended = _attention(
            arch,
            layer,
            index,
            layer_norm(x, layer.ln1_weight, layer.ln1_bias, arch.ln_eps),
            rotary,
            on_layer,
            edit,
            given_z if index == start else None,
            plain,
        )
        if arch.parallel_residual:
            x = x + attended + _mlp(arch, layer, layer_norm(x, layer.ln2_weight, layer.ln2_bias, arch.ln_eps))
        else:
            x = x + attended
            x = x + _mlp(arch, layer, layer_norm(x, layer.ln2_weight, layer.ln2_bias, arch.ln_eps))
    return x


def final_norm(weights: Weights, x: torch.Tensor) -> torch.Tensor:
    """The final LayerNorm's output, what ``W_U`` reads, (batch, position, d_model)."""
    return layer_norm(x, weights.final_ln_weight, weights.final_ln_bias, weights.architecture.ln_eps)


@dataclass(frozen=True)
class Stages:
    """A family's forward pass in three parts, for passes that start inside the model or edit it
    (:mod:`inductscan.effects`): ``embed(weights, ids)``, ``run_layers(weights, x, start, *,
    edit, on_residual)``, ``final_norm(weights, x)``."""

    embed: Callable
    run_layers: Callable
    final_norm: Callable


STAGES = Stages(embed, run_layers, final_norm)


UNEMBED_BLOCK = 1024  # vocabulary columns per block of logits
CACHED_ROWS = 128  # rows of a block (512 kB in float32) whose exponentials are taken while they are in cache


def next_token_losses(final: torch.Tensor, unembed: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of predicting each token from the position before it, without the logits.

    The scores need only each position's log-sum-exp and its target's logit. ``W_U`` is taken 1024
    vocabulary columns at a time into one reused buffer, and each block leaves only its maximum
    and its sum of exponentials: the (batch, position, vocab) logits (200 MB for GPT-2 on the
    default probe) are never held. The target's logit is its own dot product.

    A block of GPT-2's 1,000 probe rows is 4 MB, more than a core's cache: its five passes (the
    maximum, the subtraction, the clamp, the exponential, the sum) are made 128 rows at a time,
    each slice read from memory once and kept in cache for the other four. Every row's values are
    computed exactly as over the whole block (a row's maximum and sum do not depend on the other
    rows), so the losses are the same to the bit; BENCHMARKS.md has the time this saves.

    final (batch, position, d_model): the final LayerNorm's output; unembed (d_model, vocab);
    ids (batch, position) -> (batch, position - 1).
    """
    batch, positions, d_model = final.shape
    rows = final[:, :-1].reshape(-1, d_model)
    target_logit = (rows * unembed.T[ids[:, 1:].reshape(-1)]).sum(dim=1)
    vocab = unembed.shape[1]
    buffer = rows.new_empty(len(rows), min(UNEMBED_BLOCK, vocab))
    block_maxima, block_sums = [], []
    for start in range(0, vocab, UNEMBED_BLOCK):
        width = min(UNEMBED_BLOCK, vocab - start)
        block = torch.matmul(rows, unembed[:, start : start + width], out=buffer[:, :width])
        slices = (block[low : low + CACHED_ROWS] for low in range(0, len(rows), CACHED_ROWS))
        maxima, sums = zip(*map(_maximum_and_sum, slices))
        block_maxima.append(torch.cat(maxima))
        block_sums.append(torch.cat(sums))
    maxima, sums = torch.stack(block_maxima, dim=1), torch.stack(block_sums, dim=1)  # (rows, blocks)
    top = maxima.amax(dim=1)
    total = (sums * (maxima - top[:, None]).exp()).sum(dim=1)
    return (top + total.log() - target_logit).view(batch, positions - 1)


def _maximum_and_sum(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's maximum and its sum of ``exp(logit - maximum)``; ``logits`` is overwritten.

    The exponent is clamped at -80: its exponential is below 2e-35 either way, and denormals would
    be 10x slower. logits (rows, columns) -> (rows,), (rows,).
    """
    maximum = logits.amax(dim=1)
    return maximum, logits.sub_(maximum[:, None]).clamp_(min=-80.0).exp_().sum(dim=1)
