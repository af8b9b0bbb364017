"""The one declaration of every score: its order, levels, directions and defaults, and its lookup."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from inductscan import metrics
from inductscan.errors import ConfigError


def test_every_score_column_is_declared_once_in_the_table_order():
    assert list(metrics.METRICS) == list(metrics.HEAD_METRICS) + list(metrics.CHECKPOINT_METRICS)
    # the scores of the first table keep their order (a score added later may join them)
    head = ("induction", "prefix_matching", "duplicate_token", "previous_token", "copying", "induction_logit")
    checkpoint = ("loss_first", "loss_repeat", "in_context_gain", "icl_score")
    assert tuple(name for name in metrics.HEAD_METRICS if name in head) == head
    assert tuple(name for name in metrics.CHECKPOINT_METRICS if name in checkpoint) == checkpoint
    assert all(metric.name == name for name, metric in metrics.METRICS.items())


def test_attention_scores_share_the_usual_defaults():
    for name in ("induction", "prefix_matching", "duplicate_token", "previous_token"):
        metric = metrics.METRICS[name]
        assert (metric.level, metric.unit, metric.direction) == ("head", "attention probability", "rises")
        assert (metric.threshold, metric.min_rise) == (0.4, 0.05)


def test_units_and_directions_of_the_other_scores():
    units = {name: metric.unit for name, metric in metrics.METRICS.items()}
    assert units["copying"] == "eigenvalue ratio" and units["induction_logit"] == "logits"
    assert {units[name] for name in metrics.CHECKPOINT_METRICS} == {"nats"}
    falling = [name for name, metric in metrics.METRICS.items() if metric.direction == "falls"]
    assert falling == ["loss_first", "loss_repeat", "icl_score"]
    gain = metrics.METRICS["in_context_gain"]
    # the toy suite's gain goes from about 0.02 to 4.4 nats: the threshold lies well inside that
    assert 0.02 < gain.threshold < 4.4 and 0.1 <= gain.min_rise <= 0.2
    # Olsson et al.'s ICL score: above -0.15 before the change, about -0.4 after
    assert -0.4 < metrics.METRICS["icl_score"].threshold < -0.15


def test_phases_times_exactly_the_rising_metrics():
    assert metrics.RISING_METRICS == list(metrics.HEAD_METRICS) + ["in_context_gain"]
    assert all(isinstance(metrics.METRICS[name].threshold, float) for name in metrics.RISING_METRICS)


def test_get_metric_names_the_valid_ones():
    assert metrics.get_metric("copying") is metrics.METRICS["copying"]
    names = "choose one of induction, prefix_matching"
    with pytest.raises(ConfigError, match=rf"unknown metric 'inductoin'; did you mean induction\? {names}"):
        metrics.get_metric("inductoin")


def test_a_metric_is_frozen_and_validated():
    with pytest.raises(dataclasses.FrozenInstanceError):
        metrics.METRICS["induction"].threshold = 0.5
    with pytest.raises(ConfigError, match="level must be one of head, checkpoint, got 'layer'"):
        metrics.Metric("x", "layer", "x", "nats", "rises", threshold=1.0, min_rise=0.1)
    with pytest.raises(ConfigError, match="direction"):
        metrics.Metric("x", "head", "x", "nats", "up", threshold=1.0, min_rise=0.1)
    with pytest.raises(ConfigError, match="min_rise must be >= 0"):
        metrics.Metric("x", "head", "x", "nats", "rises", threshold=1.0, min_rise=-0.1)


def test_metrics_imports_only_the_standard_library_and_inductscan_errors():
    tree = ast.parse(Path(metrics.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported == {"__future__", "dataclasses", "difflib", "inductscan.errors"}
