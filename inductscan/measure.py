"""Run the probe through one checkpoint's weights and compute every score of DESIGN.md section 4.

The pattern scores and each head's logit contributions are taken layer by layer as the forward
pass goes, so no layer's attention pattern outlives its layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from inductscan import scores
from inductscan.architecture import Weights
from inductscan.model import forward
from inductscan.probe import Probe

HEAD_SCORES = (*scores.PATTERN_SCORES, "copying", "induction_logit")
CHECKPOINT_SCORES = ("loss_first", "loss_repeat", "in_context_gain")


@dataclass(frozen=True)
class CheckpointScores:
    heads: dict[str, torch.Tensor]  # each (layer, head), float64
    checkpoint: dict[str, float]


def score_weights(weights: Weights, probe: Probe) -> CheckpointScores:
    """Every head score and checkpoint score for one checkpoint."""
    arch = weights.architecture
    layout = probe.layout
    probe.check_fits(arch.n_ctx)
    device = weights.embed.device
    ids = probe.ids.to(device)
    pattern_weights = scores.pattern_weights(layout)
    queries = torch.tensor(layout.induction_positions(), device=device)
    targets = ids[:, queries - layout.length + 1]  # the token induction predicts at each query
    directions = scores.logit_directions(weights.unembed, weights.final_ln_weight, targets)
    values, outputs = weights.value_output()

    per_layer: list[dict[str, torch.Tensor]] = []
    contributions: list[torch.Tensor] = []

    def on_layer(index: int, pattern: torch.Tensor, z: torch.Tensor) -> None:
        per_layer.append(scores.pattern_scores(pattern, pattern_weights))
        contributions.append(scores.head_logit_contributions(z[:, :, queries], outputs[index], directions))

    result = forward(weights, ids, on_layer)
    heads = {name: torch.stack([layer[name] for layer in per_layer]) for name in scores.PATTERN_SCORES}
    heads["induction_logit"] = scores.induction_logit(torch.stack(contributions), result.final_scale[:, queries])
    ln1_gains = torch.stack([layer.ln1_weight for layer in weights.layers])  # (layer, d_model)
    heads["copying"] = scores.copying_score(
        weights.embed,
        values * ln1_gains[:, None, :, None],  # fold each layer's input LayerNorm gain into W_V
        outputs,
        weights.unembed,
        weights.final_ln_weight,  # the final LayerNorm's gain, folded into W_U
    )
    return CheckpointScores(heads, scores.losses(result.logits, ids, layout))
