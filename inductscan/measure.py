"""Run the probe through one checkpoint's weights and compute every score of docs/scores.md.

Everything per head is taken layer by layer as the forward pass goes (the pattern scores, the
logit contributions, the OV circuits), so no layer's attention pattern outlives its layer and a
layer's weights are needed only while the pass is in it: :class:`Scorer` can stream a model
too large for memory one layer at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from inductscan import custom_scores, scores
from inductscan.architecture import Architecture
from inductscan.errors import NonFiniteError
from inductscan.families.native import family_of
from inductscan.probe import Probe
from inductscan.weights import (
    Buffers,
    Layer,
    StreamedEmbedding,
    StreamedLayers,
    Weights,
    convert,
    convert_streamed,
)


@dataclass(frozen=True)
class CheckpointScores:
    heads: dict[str, torch.Tensor]  # each (layer, head), float64
    checkpoint: dict[str, float]
    unscored: dict[str, str] = field(default_factory=dict)  # head score -> why it has no value (stored empty)


def score_weights(
    weights: Weights, probe: Probe, custom: tuple[custom_scores.CustomScore, ...] = ()
) -> CheckpointScores:
    """Every head score and checkpoint score for one checkpoint, and the users' scores ``custom``
    (inductscan/custom_scores.py) from the same forward pass."""
    arch = weights.architecture
    layout = probe.layout
    probe.check_fits(arch.n_ctx)
    device = weights.embed.device
    ids = probe.ids.to(device)
    pattern_weights = scores.pattern_weights(layout)
    queries = torch.tensor(layout.induction_positions(), device=device)
    targets = ids[:, queries - layout.length + 1]  # the token induction predicts at each query
    tokens, which = targets.unique(return_inverse=True)
    directions = scores.logit_directions(
        weights.unembed, weights.final_ln_weight, tokens, centred=arch.final_norm_centres
    )
    streamed = isinstance(weights.layers, StreamedLayers)  # a layer's weights last only while the pass is in it
    # W_U W_E, the costly part of every OV circuit: on the CPU made in the idle moments of the
    # forward pass (inductscan/idle.py), the circuits multiplied once it is done; streamed, at once,
    # so that a streamed embedding is read for it and let go before the first layer
    embed = weights.embed.whole() if isinstance(weights.embed, StreamedEmbedding) else weights.embed
    through = scores.ThroughVocab(weights.unembed, embed, weights.final_ln_weight, in_idle_time=not streamed)
    del embed

    per_layer: list[dict[str, torch.Tensor]] = []
    sinks: list[torch.Tensor] = []  # each layer's attention_sink (head,)
    users: list[dict[str, torch.Tensor]] = []  # each layer's custom head scores, name -> (head,)
    contributions: list[torch.Tensor] = []
    circuits: list[tuple[torch.Tensor, torch.Tensor]] = []  # each layer's (W_V with its gain folded in, W_O)

    with through, scores.EigenvalueRatios() as eigenvalues:

        def on_layer(index: int, layer: Layer, pattern: torch.Tensor, z: torch.Tensor) -> None:
            per_layer.append(scores.pattern_scores(pattern, pattern_weights))
            sinks.append(scores.attention_sink(pattern))
            users.append(custom_scores.head_values(custom, pattern, layout))  # after ours: it may not edit them
            values, outputs = layer.value_output(arch)
            contributions.append(scores.head_logit_contributions(z[:, :, queries], outputs, directions, which))
            # the input LayerNorm's gain folded into W_V (the final one is in `through`); from a GPU,
            # the eigenvalues start on the CPU now, while the pass goes on through the next layers
            folded = (values * layer.ln1_weight[:, None], outputs)
            if through.pending:
                circuits.append(folded)
            else:
                eigenvalues.submit(scores.ov_circuits(*folded, through.result()))

        result = family_of(arch).forward(weights, ids, on_layer, losses=True)
        for folded in circuits:
            eigenvalues.submit(scores.ov_circuits(*folded, through.result()))
        heads = {name: torch.stack([layer[name] for layer in per_layer]) for name in scores.PATTERN_SCORES}
        heads["attention_sink"] = torch.stack(sinks)
        heads["induction_logit"] = scores.induction_logit(torch.stack(contributions), result.final_scale[:, queries])
        copying, finite = (torch.stack(parts) for parts in zip(*eigenvalues.gather(), strict=True))
    _report_non_finite("OV circuit", finite)  # the weights were finite: an overflow of the circuit itself
    heads["copying"] = copying
    checkpoint = scores.loss_summary(result.token_losses, layout)
    for name, values in heads.items():
        _check_finite(name, values)
    _check_finite("loss", torch.tensor([list(checkpoint.values())]))
    # a user's value is stored as it comes, NaN included: its meaning is the user's to say
    heads |= {name: torch.stack([layer[name] for layer in users]) for name in (users[0] if users else {})}
    checkpoint |= custom_scores.checkpoint_values(custom, result.token_losses, layout)
    return CheckpointScores(heads, checkpoint)


def _check_finite(name: str, values: torch.Tensor) -> None:
    """Raise :class:`NonFiniteError` naming the layers where ``values`` (layer, ...) are not finite.

    The weights were checked as they were converted, so a NaN here comes from the forward pass
    itself: an overflow, most likely in a 16-bit dtype.
    """
    _report_non_finite(name, torch.isfinite(values))


def _report_non_finite(name: str, finite: torch.Tensor) -> None:
    """Raise :class:`NonFiniteError` naming the layers whose entry of ``finite`` (layer, ...) is not all true."""
    finite = finite.flatten(1).all(dim=1)
    if bool(finite.all()):
        return
    layers = ", ".join(map(str, torch.nonzero(~finite).flatten().tolist()))
    where = f" in layer(s) {layers}" if name != "loss" else ""
    raise NonFiniteError(
        f"the forward pass gave a non-finite {name}{where}; with finite weights this is an overflow: scan in float32"
    )


class Scorer:
    """Scores the checkpoints of one architecture one after another, reusing its memory.

    Each checkpoint's weights are copied into the buffers the previous one used (no fresh
    half-gigabyte to fault in per GPT-2-small checkpoint). With ``layer_by_layer``, only the
    unembedding (and a tied or GPT-2 embedding) stays in memory, an untied embedding is read from
    its file when the pass needs it, and each layer is read from the files when the forward pass
    reaches it, into one layer's worth of buffers: peak memory is about one layer plus the
    unembedding, and the scores are the same.
    """

    def __init__(
        self,
        arch: Architecture,
        dtype: torch.dtype = torch.float32,
        device: str = "cpu",
        *,
        layer_by_layer: bool = False,
    ):
        self.arch, self.dtype, self.device = arch, dtype, device
        self.layer_by_layer = layer_by_layer
        self.buffers = Buffers(dtype, device, one_layer=layer_by_layer)

    def load(self, open_state: Callable[[], Mapping[str, torch.Tensor]]) -> Weights:
        """The weights of the files ``open_state()`` opens; those of the previous load are overwritten."""
        tensors = family_of(self.arch).tensors
        if self.layer_by_layer:
            return convert_streamed(self.arch, open_state, self.buffers, tensors)
        return convert(self.arch, open_state(), self.dtype, self.device, buffers=self.buffers, family=tensors)

    def score(
        self, weights: Weights, probe: Probe, custom: tuple[custom_scores.CustomScore, ...] = ()
    ) -> CheckpointScores:
        return score_weights(weights, probe, custom)

    def patterns(self, weights: Weights, ids: torch.Tensor, layers: set[int]) -> dict[int, torch.Tensor]:
        """The attention probabilities of ``layers`` from one pass through the layers (the final norm
        and the unembedding, half of GPT-2 small's pass on the probe, are not needed): layer ->
        (batch, head, query, key)."""
        kept: dict[int, torch.Tensor] = {}

        def on_layer(index: int, layer: Layer, pattern: torch.Tensor, z: torch.Tensor) -> None:
            if index in layers:
                kept[index] = pattern

        stages = family_of(self.arch).stages
        with torch.inference_mode():
            stages.run_layers(weights, stages.embed(weights, ids.to(self.device)), on_layer=on_layer)
        return kept

    def token_losses(self, weights: Weights, ids: torch.Tensor, batch: int = 8) -> torch.Tensor:
        """Each sequence's loss of predicting each token from the one before, (sequences, position - 1),
        ``batch`` sequences per forward pass (the ICL contexts are long)."""
        ids = ids.to(self.device)
        forward = family_of(self.arch).forward
        parts = [
            forward(weights, ids[start : start + batch], losses=True).token_losses
            for start in range(0, len(ids), batch)
        ]
        return torch.cat(parts)
