"""Which heads in-context learning depends on: each head's effect on a target when its output is
mean-ablated, estimated for every head by attribution patching and computed exactly for a few.

A *target* is a weighted sum of per-token losses: the probe's ``in_context_gain`` or the text's
``icl_score`` (docs/scores.md). Mean-ablating head ``h`` of layer ``l`` replaces its output ``z``
(batch, position, d_head, what ``W_O^h`` reads) at every position with its mean over the
target's sequences and positions, ``m = mean_{b,p} z[b, p]``, computed from the clean pass. A
head's *effect* is how much in-context learning the ablation takes away, in the target's nats,
signed so that positive means the head carries it (docs/scores.md, "Head effects"):

    effect = s * (T(ablated) - T(clean)),  s = -1 for a target that rises as ICL forms (the gain),
                                           s = +1 for one that falls (icl_score)

- ``*_effect_estimate``, every head: attribution patching (Syed et al. 2023, "Attribution
  Patching Outperforms Automated Circuit Discovery"), one forward and one backward pass:
  ``s * sum_{b,p,e} dT/dz[b,p,e] * (m[e] - z[b,p,e])``, the first-order Taylor term of the exact
  effect. ``sum grad * (m - z) = m . sum grad - sum grad * z``: both sums add up over batches, so
  the sequences go through in batches and the mean is needed only at the end.
- ``*_effect``, the ``top`` heads of largest ``|estimate|``: the ablated forward pass itself,
  started at the head's layer from the clean pass's residual stream entering it and the heads'
  outputs there, the head's replaced by its mean (the layers below, and that layer's attention,
  cannot change); the other heads' values are NaN here, stored as null.

Only the positions up to the target's last weighed loss go through an ablated pass: attention is
causal, so later positions cannot change it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from inductscan.errors import ConfigError, parameter
from inductscan.families.native import family_of
from inductscan.families.registry import runs_natively
from inductscan.icl import IclExamples
from inductscan.measure import CheckpointScores
from inductscan.metrics import METRICS
from inductscan.probe import Probe

# target -> the checkpoint score it is taken on; the columns are f"{target}_effect" and f"{target}_effect_estimate"
TARGETS = {"gain": "in_context_gain", "icl": "icl_score"}
DEFAULT_TOP = 8


@dataclass(frozen=True)
class Target:
    """A checkpoint score as a weighted sum of the per-token losses of ``ids``, signed so that
    a larger value means more in-context learning.

    ids (batch, position); weights (batch, position - 1), float64: entry ``p - 1`` weighs the loss of
    predicting token ``p`` from position ``p - 1``.
    """

    name: str
    ids: torch.Tensor
    weights: torch.Tensor

    @property
    def needed(self) -> int:
        """How many leading positions the target reads (its last weighed loss is predicted from the last)."""
        weighed = torch.nonzero(self.weights.abs().sum(dim=0)).flatten()
        return int(weighed.max()) + 1


def probe_target(probe: Probe) -> Target:
    """``in_context_gain = loss_first - loss_repeat`` (inductscan.scores.loss_summary) as a Target."""
    layout, ids = probe.layout, probe.ids
    weights = torch.zeros(ids.shape[0], ids.shape[1] - 1, dtype=torch.float64)
    first = range(max(layout.offset, 1), layout.offset + layout.length)
    repeat = range(layout.offset + layout.length, layout.n_positions)
    weights[:, first.start - 1 : first.stop - 1] = 1.0 / (ids.shape[0] * len(first))
    weights[:, repeat.start - 1 : repeat.stop - 1] = -1.0 / (ids.shape[0] * len(repeat))
    return Target("gain", ids, _signed("gain") * weights)


def icl_target(examples: IclExamples) -> Target:
    """``icl_score``, the mean loss of token ``late`` minus that of token ``early`` (inductscan.icl.score)."""
    ids = examples.ids
    early, late = examples.config.positions()
    weights = torch.zeros(ids.shape[0], ids.shape[1] - 1, dtype=torch.float64)
    weights[:, late - 2] = 1.0 / ids.shape[0]
    weights[:, early - 2] = -1.0 / ids.shape[0]
    return Target("icl", ids, _signed("icl") * weights)


def _signed(target: str) -> float:
    """-1 for a score that rises as in-context learning forms (so that losing it is positive), else +1."""
    return -1.0 if METRICS[TARGETS[target]].direction == "rises" else 1.0


@dataclass(frozen=True)
class HeadEffects:
    estimate: torch.Tensor  # (layer, head), float64
    exact: torch.Tensor  # (layer, head), float64; NaN but for the ``top`` heads
    clean: float  # the signed target on the clean pass


def head_effects(weights, target: Target, *, top: int = DEFAULT_TOP, batch: int = 8) -> HeadEffects:
    """Every head's estimated effect on ``target`` and the exact effect of the ``top`` heads of
    largest ``|estimate|``, ``batch`` sequences per pass. ``weights``: a natively run family's."""
    arch = weights.architecture
    stages = family_of(arch).stages
    device = weights.embed.device
    n_layers, n_heads = len(weights.layers), arch.n_heads
    chunks = [
        (target.ids[start : start + batch].to(device), target.weights[start : start + batch].to(device))
        for start in range(0, len(target.ids), batch)
    ]
    d_head = arch.d_head
    z_sum = torch.zeros(n_layers, n_heads, d_head, dtype=torch.float64, device=device)
    grad_sum = torch.zeros_like(z_sum)  # sum over b, p of dT/dz
    grad_dot_z = torch.zeros(n_layers, n_heads, dtype=torch.float64, device=device)  # sum of dT/dz * z
    residuals: list[list[torch.Tensor]] = []  # per chunk, the stream entering each layer
    outputs: list[list[torch.Tensor]] = []  # per chunk, what each layer's W_O read
    clean = 0.0
    for ids, loss_weights in chunks:
        entering: list[torch.Tensor] = []
        zs: list[torch.Tensor] = []
        deltas: list[torch.Tensor] = []

        def watch(index: int, z: torch.Tensor, zs=zs, deltas=deltas) -> torch.Tensor:
            # z + delta with delta = 0: the pass is unchanged and dT/d(delta) = dT/dz, through every later layer
            delta = torch.zeros_like(z, requires_grad=True)
            zs.append(z.detach())
            deltas.append(delta)
            return z + delta

        with torch.enable_grad():
            x = stages.run_layers(
                weights,
                stages.embed(weights, ids),
                edit=watch,
                on_residual=lambda index, x, entering=entering: entering.append(x.detach()),
            )
            value = _weighted_loss(stages, weights, x, ids, loss_weights)
            value.backward()
        clean += value.item()
        residuals.append(entering)
        outputs.append(zs)
        for layer, (z, delta) in enumerate(zip(zs, deltas, strict=True)):
            grad = delta.grad.double()  # (B, H, P, E)
            z_sum[layer] += z.double().sum(dim=(0, 2))
            grad_sum[layer] += grad.sum(dim=(0, 2))
            grad_dot_z[layer] += (grad * z.double()).sum(dim=(0, 2, 3))
    count = target.ids.shape[0] * target.ids.shape[1]
    means = z_sum / count  # (layer, head, E)
    estimate = (means * grad_sum).sum(dim=-1) - grad_dot_z
    exact = torch.full((n_layers, n_heads), float("nan"), dtype=torch.float64)
    chosen = estimate.abs().flatten().argsort(descending=True)[: min(top, n_layers * n_heads)]
    needed = target.needed
    with torch.inference_mode():
        for flat in chosen.tolist():
            layer, head = divmod(flat, n_heads)
            mean = means[layer, head]
            ablated = 0.0
            for (ids, loss_weights), entering, zs in zip(chunks, residuals, outputs, strict=True):
                ablated += _ablated_value(
                    stages, weights, entering[layer], zs[layer], ids, loss_weights, layer, head, mean, needed
                )
            exact[layer, head] = ablated - clean
    return HeadEffects(estimate.cpu(), exact, clean)


def _ablated_value(stages, weights, entering, z, ids, loss_weights, layer, head, mean, needed) -> float:
    """The signed target with head ``head`` of ``layer`` replaced by ``mean`` (E,), from the stream
    ``entering`` that layer and what its W_O read on the clean pass, z (B, H, P, E), over the first
    ``needed`` positions. The layer's attention is not computed again: only the head's output changes."""
    z = z[:, :, :needed].clone()
    z[:, head] = mean.to(z.dtype)
    x = stages.run_layers(weights, entering[:, :needed], layer, given_z=z)
    return _weighted_loss(stages, weights, x, ids[:, : needed + 1], loss_weights[:, :needed]).item()


def _weighted_loss(stages, weights, x, ids, loss_weights) -> torch.Tensor:
    """``sum(loss_weights * per-token loss)`` from the stream ``x`` leaving the last layer, taking
    logits only at the weighed positions; a float64 scalar with a gradient.

    x (B, P', d_model) with P' >= needed positions; ids (B, P' + 1) or longer; loss_weights (B, P' or less).
    """
    rows = loss_weights.nonzero(as_tuple=True)  # (b, p): the loss of token p + 1 from position p
    final = stages.final_norm(weights, x)[rows]  # (N, d_model)
    logits = (final @ weights.unembed).float()
    losses = F.cross_entropy(logits, ids[rows[0], rows[1] + 1], reduction="none")
    return (losses.double() * loss_weights[rows]).sum()


def columns(
    weights, probe: Probe, icl_examples: IclExamples | None, *, top: int = DEFAULT_TOP
) -> dict[str, torch.Tensor]:
    """The effect columns of one checkpoint, each (layer, head) float64: ``gain_effect`` and
    ``gain_effect_estimate`` on the probe, and with ICL examples ``icl_effect`` and ``icl_effect_estimate``."""
    if top < 1:
        raise ConfigError(f"{parameter('head_effects_top')} must be >= 1, got {top}")
    targets = [probe_target(probe)] + ([icl_target(icl_examples)] if icl_examples is not None else [])
    found = {}
    for target in targets:
        effects = head_effects(weights, target, top=top)
        found[f"{target.name}_effect"] = effects.exact
        found[f"{target.name}_effect_estimate"] = effects.estimate
    return found


def with_effects(
    scored: CheckpointScores, weights, probe: Probe, icl_examples: IclExamples | None, *, top: int = DEFAULT_TOP
) -> CheckpointScores:
    """``scored`` with the effect columns of :func:`columns` added."""
    return dataclasses.replace(scored, heads=scored.heads | columns(weights, probe, icl_examples, top=top))


def check_supported(arch) -> None:
    """Refuse, in one line, a model that inductscan does not run with its own forward pass."""
    if not runs_natively(arch):
        raise ConfigError(
            f"{parameter('head_effects')} ablates heads inside "
            "inductscan's own forward pass (GPT-2, GPT-NeoX, the Llama "
            f"family); model_type {arch.family} runs through transformers: scan it without {parameter('head_effects')}"
        )
