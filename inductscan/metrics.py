"""Every score inductscan records, declared once: its level, label, unit, direction and defaults.

The exact definitions are in ``inductscan/scores.py`` (head scores) and ``inductscan/icl.py``
(``icl_score``); this module says what each number is for the code that reads them: phase timing
(``inductscan/phases.py``) takes the metrics that rise and their default threshold and smallest
rise from here. It imports nothing but the standard library and ``inductscan.errors``, so that any
module may use it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from inductscan.errors import ConfigError

# Recorded with every row. Bump it with any change to the scoring code (scores.py, measure.py,
# model.py, weights.py) that changes a score's value: rows of two versions never pass for one
# another (a scan refuses to mix them in one folder).
SCORING_VERSION = 1
LEVELS = ("head", "checkpoint")
DIRECTIONS = ("rises", "falls")


@dataclass(frozen=True)
class Metric:
    """One score: what it measures and the defaults used to time its phase change.

    level: ``"head"`` (one value per head) or ``"checkpoint"`` (one value per checkpoint, repeated
    on every head row). direction: whether the score ``"rises"`` or ``"falls"`` as induction heads
    form. threshold: the default level for ``first_above_threshold`` (None where no value holds
    across models). min_rise: the smallest change, in ``unit`` and in ``direction``, counted as a
    phase change.
    """

    name: str
    level: str
    label: str
    unit: str
    direction: str
    threshold: float | None
    min_rise: float
    # A user's score (inductscan/custom_scores.py, docs/custom_scores.md): its definition's version,
    # recorded with every row as a setting. None for the scores declared here (SCORING_VERSION).
    version: str | None = None

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ConfigError(f"metric {self.name!r}: level must be one of {', '.join(LEVELS)}, got {self.level!r}")
        if self.direction not in DIRECTIONS:
            raise ConfigError(
                f"metric {self.name!r}: direction must be one of {', '.join(DIRECTIONS)}, got {self.direction!r}"
            )
        if self.min_rise < 0:
            raise ConfigError(f"metric {self.name!r}: min_rise must be >= 0, got {self.min_rise}")


def _attention(name: str, label: str) -> Metric:
    """A head score that is an attention probability in [0, 1]. 0.4 is the field's usual cut for
    "is an induction head" (ARENA; Olsson et al. publish none); 0.05 is 5% of the score's range."""
    return Metric(name, "head", label, "attention probability", "rises", threshold=0.4, min_rise=0.05)


def _effect(name: str, label: str, threshold: float, min_rise: float) -> Metric:
    """A head's effect on an in-context learning score (docs/scores.md, "Head effects"): positive
    where the head carries in-context learning, rising as it becomes necessary."""
    return Metric(name, "head", label, "nats", "rises", threshold=threshold, min_rise=min_rise)


# Written by scan --head-effects only: empty columns in any other scan.
HEAD_EFFECTS = ("gain_effect", "gain_effect_estimate", "icl_effect", "icl_effect_estimate")
EXACT_EFFECTS = ("gain_effect", "icl_effect")  # computed for the top heads only: null (not NaN) for the others

_DECLARED = (
    _attention("induction", "induction score"),
    _attention("prefix_matching", "prefix-matching score"),
    _attention("duplicate_token", "duplicate-token score"),
    _attention("previous_token", "previous-token score"),
    # sum(eigenvalues) / sum(|eigenvalues|) of the OV circuit, in [-1, 1]: about 0 for random
    # weights; 0.5 means the positive eigenvalues outweigh the negative three to one, a head that
    # mostly copies; 0.1 is 5% of the range, as 0.05 is for the attention probabilities.
    Metric("copying", "head", "copying score", "eigenvalue ratio", "rises", threshold=0.5, min_rise=0.1),
    # The head's direct logit for the induced token, relative to the mean logit: about 0 for random
    # weights; 1 logit multiplies the token's odds against an average token by e (2.7); 0.2 logit
    # (odds x1.2) is the smallest change worth calling a rise.
    Metric(
        "induction_logit", "head", "direct logit to the induced token", "logits", "rises", threshold=1.0, min_rise=0.2
    ),
    # Attention to the first position (the BOS token where the probe has one), mean over queries
    # after it: about 1/q at query q for a uniform head (0.05 on the default probe), 1 for a head that
    # parks all of its attention there; 0.5 is "most of its attention", 0.05 as for the other
    # attention probabilities. Declared after the older scores, so that their columns keep their places.
    Metric("attention_sink", "head", "attention-sink score", "attention probability", "rises", 0.5, 0.05),
    # Head effects (scan --head-effects, inductscan/effects.py): the in-context learning a head
    # carries, in its target's nats: how much the probe's in_context_gain falls, or the text's
    # icl_score rises, when the head is mean-ablated. Exact for the top heads (others empty), and
    # estimated for every head by attribution patching. 0.5 nat is a tenth of the toy suite's gain
    # lost to one head; 0.15 nat as for the gain. A head's share of icl_score (about -0.4 nats after
    # the change) is smaller: 0.05 nat is an eighth of it, 0.025 a sixteenth.
    _effect("gain_effect", "in-context gain lost when the head is mean-ablated", 0.5, 0.15),
    _effect("gain_effect_estimate", "in-context gain lost when the head is mean-ablated, estimated", 0.5, 0.15),
    _effect("icl_effect", "ICL score lost when the head is mean-ablated", 0.05, 0.025),
    _effect("icl_effect_estimate", "ICL score lost when the head is mean-ablated, estimated", 0.05, 0.025),
    # Losses have no threshold valid across models: chance is ln(vocabulary) nats (5.5 for the toy
    # suite's 256 tokens, 10.8 for GPT-2's). The loss on the first copy has nothing to induct from,
    # so it only drifts down with training; the loss on the repeats falls at the phase change.
    Metric("loss_first", "checkpoint", "loss on the first copy", "nats", "falls", threshold=None, min_rise=0.15),
    Metric("loss_repeat", "checkpoint", "loss on the repeats", "nats", "falls", threshold=None, min_rise=0.15),
    # loss_first - loss_repeat: about 0.02 nats before the change in the toy suite, about 4.4
    # after. 1 nat (the repeated tokens made e times likelier) is reached early in the rise and far
    # above the early plateau; 0.15 nat (x1.16) is the smallest gain worth calling a rise, about
    # 3% of the toy suite's rise, as 0.05 is 5% of an attention probability's range.
    Metric("in_context_gain", "checkpoint", "in-context gain", "nats", "rises", threshold=1.0, min_rise=0.15),
    # Olsson et al.'s ICL score, the loss at token 500 minus at token 50: above -0.15 before the
    # change, about -0.4 after; -0.25 lies between, so a run crosses it during the change, and a
    # fall of 0.1 nat is under half of the change.
    Metric(
        "icl_score",
        "checkpoint",
        "ICL score (late-token loss - early-token loss)",
        "nats",
        "falls",
        threshold=-0.25,
        min_rise=0.1,
    ),
)

METRICS: dict[str, Metric] = {metric.name: metric for metric in _DECLARED}  # head scores first, fixed order
# What phases, plots and queries time, draw and rank by unless told otherwise.
DEFAULT_METRIC = "induction"
RISING_METRICS = [name for name, metric in METRICS.items() if metric.direction == "rises"]
FALLING_METRICS = [name for name, metric in METRICS.items() if metric.direction == "falls"]
HEAD_METRICS = tuple(name for name, metric in METRICS.items() if metric.level == "head")
CHECKPOINT_METRICS = tuple(name for name, metric in METRICS.items() if metric.level == "checkpoint")


# Users' scores (docs/custom_scores.md), after the declared ones: registered in this process
# (inductscan.custom_scores) or read from a results folder's record of the scores it holds
# (inductscan.results.declarations.learn_scores), so that a folder's columns read like the declared ones.
_ADDED: dict[str, Metric] = {}


def all_metrics() -> dict[str, Metric]:
    """Every score known now: the declared ones (:data:`METRICS`, in their order), then users' scores."""
    return METRICS | _ADDED


def head_metrics() -> tuple[str, ...]:
    return tuple(name for name, metric in all_metrics().items() if metric.level == "head")


def checkpoint_metrics() -> tuple[str, ...]:
    return tuple(name for name, metric in all_metrics().items() if metric.level == "checkpoint")


def is_added(name: str) -> bool:
    """Whether ``name`` is a user's score (not one of :data:`METRICS`)."""
    return name in _ADDED


def add_metric(metric: Metric, *, replace: bool = True) -> None:
    """Know a user's score from now on (``replace=False``: unless a score of that name is known)."""
    if metric.name in METRICS:
        raise ConfigError(f"score {metric.name!r} is one of inductscan's own; name yours otherwise")
    if replace or metric.name not in _ADDED:
        _ADDED[metric.name] = metric


def remove_metric(name: str) -> None:
    _ADDED.pop(name, None)


def get_metric(name: str) -> Metric:
    """The metric called ``name``, declared or a user's; an unknown name raises ConfigError listing the valid ones."""
    try:
        return all_metrics()[name]
    except KeyError as error:
        raise ConfigError(f"unknown metric {name!r}; {choose_metric(name)}") from error


def choose_metric(name: str, known: list[str] | None = None) -> str:
    """``did you mean X? choose one of ...`` for a metric name that is none of ``known`` (default: all)."""
    known = list(all_metrics()) if known is None else known
    close = difflib.get_close_matches(name, known, n=1)
    return (f"did you mean {close[0]}? " if close else "") + f"choose one of {', '.join(known)}"
