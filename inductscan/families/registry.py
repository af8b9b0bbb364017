"""A checkpoint's config -> its family's architecture, and the scorer that runs it.

Natively run families (:mod:`inductscan.families.native`: GPT-2, GPT-NeoX, the Llama family) get
inductscan's own forward pass and every score; any other causal language model transformers knows
goes through transformers' own model (:mod:`inductscan.families.transformers_path`), with the
pattern scores and losses only. Anything else is refused, in one line naming it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from inductscan.errors import CorruptCheckpointError
from inductscan.families import native, transformers_path
from inductscan.measure import Scorer


def read_architecture(config_path: Path):
    """The architecture of the checkpoint whose ``config.json`` is at ``config_path``."""
    try:
        raw = json.loads(Path(config_path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CorruptCheckpointError(f"cannot read {config_path}: {error}") from error
    if not isinstance(raw, dict):
        raise CorruptCheckpointError(f"{config_path} is not a JSON object")
    family = native.FAMILIES.get(raw.get("model_type"))
    if family is not None:
        return family.read(config_path)
    return transformers_path.read_architecture(raw, config_path)


def runs_natively(arch) -> bool:
    return not isinstance(arch, transformers_path.TransformersArchitecture)


def make_scorer(arch, dtype: torch.dtype = torch.float32, device: str = "cpu", *, layer_by_layer: bool = False):
    """A :class:`~inductscan.measure.Scorer` for a natively run family, else a
    :class:`~inductscan.families.transformers_path.TransformersScorer`; both ``load``, ``score`` and
    compute ``token_losses`` alike."""
    kind = Scorer if runs_natively(arch) else transformers_path.TransformersScorer
    return kind(arch, dtype, device, layer_by_layer=layer_by_layer)
