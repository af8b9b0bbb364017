"""The families inductscan runs with its own forward pass: for each ``model_type``, how its config is
read, how its weight names map to tensors, and which forward pass honours its flags.

GPT-2 and GPT-NeoX live in :mod:`inductscan.architecture`, :mod:`inductscan.weights` and
:mod:`inductscan.model`; the Llama family in :mod:`inductscan.families.llama` and
:mod:`inductscan.families.llama_forward`. :class:`inductscan.measure.Scorer` scores any of them alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from inductscan import architecture, model, weights
from inductscan.families import llama, llama_forward


@dataclass(frozen=True)
class NativeFamily:
    read: Callable[[Path], object]  # config.json -> its architecture
    tensors: weights.TensorMap  # weight names -> one layer's tensors, and the rest
    forward: Callable  # (weights, ids, on_layer, *, logits_out, losses) -> inductscan.model.ForwardResult
    stages: model.Stages  # the forward pass in parts, for head ablations (inductscan.effects)


_LLAMA = NativeFamily(
    llama.read_architecture,
    weights.TensorMap(llama.convert_layer, llama.convert_globals),
    llama_forward.forward,
    llama_forward.STAGES,
)
FAMILIES = {
    "gpt2": NativeFamily(architecture.read_architecture, weights.FAMILIES["gpt2"], model.forward, model.STAGES),
    "gpt_neox": NativeFamily(architecture.read_architecture, weights.FAMILIES["gpt_neox"], model.forward, model.STAGES),
    **{model_type: _LLAMA for model_type in llama.VARIANTS},
}


def family_of(arch) -> NativeFamily:
    """The native family of an architecture read by one of the families' ``read``."""
    return FAMILIES[arch.family]
