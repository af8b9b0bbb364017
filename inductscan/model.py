"""Load a checkpoint's weights and run the probe through it, capturing what the scores need.

The forward pass is written here rather than borrowed from transformers so that it computes the
attention pattern eagerly (honouring both Stanford GPT-2 flags, which transformers' fused
attention paths long ignored), hands each layer's pattern and per-head outputs to a callback
instead of keeping them all, and never builds a randomly initialised model. The tests check it
against transformers' eager implementation.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from inductscan.architecture import Architecture, Layer, Weights
from inductscan.errors import CorruptCheckpointError

# on_layer(layer index, pattern (batch, head, query, key), z (batch, head, position, d_head))
LayerCallback = Callable[[int, torch.Tensor, torch.Tensor], None]


def read_state_dict(files: list[Path]) -> dict[str, torch.Tensor]:
    """Read weight files (safetensors or pickled ``.bin``, whole or sharded) into one state dict.

    A ``.bin`` is unpickled with ``weights_only=True``: a file from the Hub must never run code.
    """
    state: dict[str, torch.Tensor] = {}
    for path in files:
        state.update(_read_one(Path(path)))
    return state


def _read_one(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as error:
            if "mmap" not in str(error):  # only the legacy (non-zip) format cannot be mapped
                raise
            return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, ValueError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        raise CorruptCheckpointError(f"cannot read weights from {path}: {error}") from error
    except Exception as error:  # safetensors raises its own SafetensorError
        if type(error).__name__ == "SafetensorError":
            raise CorruptCheckpointError(f"cannot read weights from {path}: {error}") from error
        raise


def shard_files(index_path: Path) -> list[str]:
    """The shard file names that a ``*.index.json`` names, in order."""
    try:
        weight_map = json.loads(Path(index_path).read_text())["weight_map"]
    except (OSError, KeyError, json.JSONDecodeError) as error:
        raise CorruptCheckpointError(f"cannot read the shard index {index_path}: {error}") from error
    return sorted(set(weight_map.values()))


@dataclass(frozen=True)
class ForwardResult:
    logits: torch.Tensor  # (batch, position, vocab)
    final_scale: torch.Tensor  # (batch, position): sqrt(var + eps) of the residual entering ln_f


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
    arch: Architecture, layer: Layer, index: int, x: torch.Tensor, rotary, on_layer: LayerCallback | None
) -> torch.Tensor:
    batch, n_positions, _ = x.shape
    qkv = x @ layer.qkv_weight + layer.qkv_bias  # (B, P, 3 * H * E)
    q, k, v = qkv.view(batch, n_positions, 3, arch.n_heads, arch.d_head).permute(2, 0, 3, 1, 4)  # (B, H, P, E)
    if rotary is not None:
        q, k = _apply_rotary(q, *rotary), _apply_rotary(k, *rotary)
    logits = (q @ k.transpose(-1, -2)) * arch.attn_scales[index]  # (B, H, P, P)
    causal = torch.ones(n_positions, n_positions, dtype=torch.bool, device=x.device).triu(1)
    pattern = logits.masked_fill(causal, float("-inf")).softmax(dim=-1)
    z = pattern @ v  # (B, H, P, E)
    if on_layer is not None:
        on_layer(index, pattern, z)
    merged = z.transpose(1, 2).reshape(batch, n_positions, arch.n_heads * arch.d_head)
    return merged @ layer.out_weight + layer.out_bias


def _mlp(arch: Architecture, layer: Layer, x: torch.Tensor) -> torch.Tensor:
    hidden = F.gelu(x @ layer.mlp_in_weight + layer.mlp_in_bias, approximate=arch.gelu_approximation)
    return hidden @ layer.mlp_out_weight + layer.mlp_out_bias


@torch.inference_mode()
def forward(weights: Weights, ids: torch.Tensor, on_layer: LayerCallback | None = None) -> ForwardResult:
    """Run ``ids`` (batch, position) through the model; ``on_layer`` sees every layer's attention."""
    arch = weights.architecture
    n_positions = ids.shape[1]
    x = weights.embed[ids]
    if weights.positions is not None:
        x = x + weights.positions[:n_positions]
    rotary = _rotary(arch, n_positions, x) if arch.rotary_dims else None
    for index, layer in enumerate(weights.layers):
        attended = _attention(arch, layer, index, layer_norm(x, layer.ln1_weight, layer.ln1_bias, arch.ln_eps),
                              rotary, on_layer)  # fmt: skip
        if arch.parallel_residual:
            x = x + attended + _mlp(arch, layer, layer_norm(x, layer.ln2_weight, layer.ln2_bias, arch.ln_eps))
        else:
            x = x + attended
            x = x + _mlp(arch, layer, layer_norm(x, layer.ln2_weight, layer.ln2_bias, arch.ln_eps))
    final_scale = (x.var(dim=-1, unbiased=False) + arch.ln_eps).sqrt()
    final = layer_norm(x, weights.final_ln_weight, weights.final_ln_bias, arch.ln_eps)
    return ForwardResult(final @ weights.unembed, final_scale)
