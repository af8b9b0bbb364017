"""Any other causal language model transformers knows (GPT-J, GPT-Neo, OPT, Phi, Gemma, Falcon,
Bloom, ...), scanned through transformers' own model: eager attention, whose probabilities it
returns (``output_attentions``), give every head's pattern scores, and its logits the losses.

The weight-based scores (copying, induction_logit) need each head's W_V and W_O and the model's
norms, which only a native family maps (:mod:`inductscan.families.native`): they are left empty
and the reason is recorded once per run (:func:`inductscan.results.records.write_run_note`), not as a failure.
A checkpoint whose tensors transformers would not use, or whose model would need some of its
parameters drawn at random, is refused, as is a config that needs code from the checkpoint
(``auto_map``: inductscan never runs it).
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from inductscan import custom_scores, scores
from inductscan.errors import CorruptCheckpointError, NonFiniteError, UnsupportedArchitectureError
from inductscan.measure import CheckpointScores
from inductscan.probe import Probe

UNSCORED = ("copying", "induction_logit")  # weight-based: see docs/scores.md
UNBOUNDED_CONTEXT = 2**31 - 1  # a model without a fixed context (ALiBi's Bloom)


@dataclass(frozen=True)
class TransformersArchitecture:
    """What a scan needs of a checkpoint run through transformers, and its config to build it from."""

    family: str  # the config's model_type
    n_ctx: int
    vocab_size: int
    bos_token_id: int | None
    special_tokens: tuple[int, ...]
    config_json: str  # the checkpoint's config.json, keys sorted: two checkpoints with one config share a scorer

    def reason(self) -> str:
        return f"not defined for model_type {self.family} (scanned through transformers: patterns and losses only)"


def read_architecture(raw: dict, config_path: Path) -> TransformersArchitecture:
    """A config for transformers' own model; refuse a model type it does not know, one without a
    causal language model, or one that needs the checkpoint's own code."""
    import transformers
    from transformers import CONFIG_MAPPING
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    model_type = raw.get("model_type")
    if "auto_map" in raw:
        raise UnsupportedArchitectureError(
            f"{config_path} needs code from the checkpoint (auto_map), which inductscan never runs"
        )
    if model_type not in CONFIG_MAPPING:
        raise UnsupportedArchitectureError(
            f"model_type {model_type!r} in {config_path} is unknown to transformers {transformers.__version__}"
        )
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise UnsupportedArchitectureError(f"model_type {model_type!r} has no causal language model in transformers")
    config = _config(raw, config_path)
    n_ctx = next(
        (value for name in ("max_position_embeddings", "n_positions") if (value := getattr(config, name, None))),
        UNBOUNDED_CONTEXT,
    )
    if not isinstance(getattr(config, "vocab_size", None), int):
        raise UnsupportedArchitectureError(f"{config_path} gives no vocab_size")
    return TransformersArchitecture(
        family=model_type,
        n_ctx=int(n_ctx),
        vocab_size=config.vocab_size,
        bos_token_id=getattr(config, "bos_token_id", None),
        special_tokens=_special(config),
        config_json=json.dumps(raw, sort_keys=True),
    )


def _config(raw: dict, where):
    from transformers import CONFIG_MAPPING

    try:
        with _quiet():
            return CONFIG_MAPPING[raw["model_type"]].from_dict(dict(raw))
    except (ValueError, TypeError, KeyError) as error:
        text = str(error).strip().splitlines()
        raise UnsupportedArchitectureError(f"{where}: {text[0] if text else type(error).__name__}") from error


def _special(config) -> tuple[int, ...]:
    ids = set()
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        value = getattr(config, name, None)
        ids.update(value if isinstance(value, list) else [value])
    return tuple(sorted(i for i in ids if isinstance(i, int)))


@contextmanager
def _quiet():
    """transformers' load report, progress bar and config warnings stay out of a scan's output (a
    failure says why in its own line)."""
    from transformers.utils import logging as transformers_logging

    logger = logging.getLogger("transformers")
    level, bars = logger.level, transformers_logging.is_progress_bar_enabled()
    logger.setLevel(logging.ERROR)
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        logger.setLevel(level)
        if bars:
            transformers_logging.enable_progress_bar()


class TransformersScorer:
    """Scores checkpoints through transformers' model, as :class:`inductscan.measure.Scorer` does
    natively: ``load`` a checkpoint's state, ``score`` it on the probe, ``token_losses`` for the ICL
    score. The whole model is in memory: ``--layer-by-layer`` streams natively run families only."""

    def __init__(
        self,
        arch: TransformersArchitecture,
        dtype: torch.dtype = torch.float32,
        device: str = "cpu",
        *,
        layer_by_layer: bool = False,
    ):
        if layer_by_layer:
            raise UnsupportedArchitectureError(
                f"only the natively run families stream layer by layer; model_type {arch.family} runs through "
                "transformers, whole: scan it without layer-by-layer streaming"
            )
        self.arch, self.dtype, self.device = arch, dtype, device

    def load(self, open_state):
        """transformers' model with the checkpoint's tensors (eager attention, in ``dtype``)."""
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

        config = _config(json.loads(self.arch.config_json), self.arch.family)
        with _quiet():
            model, info = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)].from_pretrained(
                None,
                config=config,
                state_dict=dict(open_state()),
                attn_implementation="eager",
                dtype=self.dtype,
                output_loading_info=True,
            )
        for problem, keys in (
            ("lacks", info["missing_keys"]),
            ("holds tensors it does not use:", info["unexpected_keys"]),
        ):
            if keys:
                shown = ", ".join(sorted(keys)[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
                raise CorruptCheckpointError(f"the checkpoint {problem} {shown} (for transformers' {self.arch.family})")
        for name, weight in model.named_parameters():
            if not bool(torch.isfinite(weight.sum())) and not bool(torch.isfinite(weight).all()):
                raise NonFiniteError(f"weight {name!r} holds non-finite values")
        return model.to(self.device).eval()

    def score(self, model, probe: Probe, custom: tuple[custom_scores.CustomScore, ...] = ()) -> CheckpointScores:
        """The pattern scores of every head from ``output_attentions``, and the losses from the logits;
        the weight-based scores empty, with their reason; the users' scores ``custom`` from the same pass."""
        layout = probe.layout
        probe.check_fits(self.arch.n_ctx)
        ids = probe.ids.to(self.device)
        with torch.inference_mode():
            output = model(ids, output_attentions=True)
        patterns = torch.stack(output.attentions)  # (layer, batch, head, query, key)
        heads = scores.pattern_scores(patterns, scores.pattern_weights(layout))
        heads["attention_sink"] = scores.attention_sink(patterns)
        token_losses = scores.token_losses(output.logits.float(), ids)
        checkpoint = scores.loss_summary(token_losses, layout)
        for name, values in heads.items():
            if not bool(torch.isfinite(values).all()):
                raise NonFiniteError(f"transformers' forward pass gave a non-finite {name}: scan in float32")
        if not all(map(_finite, checkpoint.values())):
            raise NonFiniteError("transformers' forward pass gave a non-finite loss: scan in float32")
        if custom:
            per_layer = [custom_scores.head_values(custom, pattern, layout) for pattern in output.attentions]
            heads |= {name: torch.stack([layer[name] for layer in per_layer]) for name in per_layer[0]}
            checkpoint |= custom_scores.checkpoint_values(custom, token_losses, layout)
        return CheckpointScores(heads, checkpoint, {name: self.arch.reason() for name in UNSCORED})

    def patterns(self, model, ids: torch.Tensor, layers: set[int]) -> dict[int, torch.Tensor]:
        """The attention probabilities of ``layers`` as transformers' eager attention returns them
        (``output_attentions``): layer -> (batch, head, query, key)."""
        with torch.inference_mode():
            attentions = model(ids.to(self.device), output_attentions=True).attentions
        return {index: attentions[index] for index in sorted(layers)}

    def token_losses(self, model, ids: torch.Tensor, batch: int = 8) -> torch.Tensor:
        """Each sequence's loss of predicting each token from the one before, (sequences, position - 1)."""
        ids = ids.to(self.device)
        parts = []
        with torch.inference_mode():
            for start in range(0, len(ids), batch):
                chunk = ids[start : start + batch]
                logits = model(chunk).logits[:, :-1].float()
                parts.append(
                    torch.nn.functional.cross_entropy(
                        logits.reshape(-1, logits.shape[-1]), chunk[:, 1:].reshape(-1), reduction="none"
                    ).view(len(chunk), -1)
                )
        return torch.cat(parts)


def _finite(value: float) -> bool:
    return value == value and abs(value) != float("inf")
