"""The toy suite: its data, its schedule, and (slow) a real phase change in every seed."""

from __future__ import annotations

import pytest
import torch

import inductscan
from inductscan.query import best_heads
from inductscan.scan import ScanConfig, plan, run_scan
from inductscan.suites import local_suite
from inductscan.toy import ToyConfig, build_toy_suite, make_batch


def test_batches_hold_copied_segments_after_a_bos():
    config = ToyConfig()
    ids = make_batch(config, torch.Generator().manual_seed(0))
    assert ids.shape == (config.batch, config.context)
    assert (ids[:, 0] == 0).all() and (ids[:, 1:] > 0).all() and (ids < config.vocab).all()
    # each row repeats some n-gram of length >= segment_min at a later position (random tokens rarely do)
    n = config.segment_min
    for row in ids.tolist():
        grams = [tuple(row[i : i + n]) for i in range(1, len(row) - n + 1)]
        assert len(grams) > len(set(grams))
    again = make_batch(config, torch.Generator().manual_seed(0))
    assert torch.equal(ids, again)  # the explicit generator makes it reproducible


def test_saved_steps_start_at_zero_and_are_log_spaced():
    steps = ToyConfig().save_steps()
    assert steps[0] == 0 and steps[-1] == ToyConfig().train_steps
    gaps = [b / a for a, b in zip(steps[1:], steps[2:])]
    assert all(1.05 < gap < 1.5 for gap in gaps)


@pytest.fixture(scope="module")
def toy_results(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    build_toy_suite(root / "suite", [0, 1, 2], ToyConfig(), jobs=3, progress=False)
    suite = local_suite(root / "suite")
    summary = run_scan(plan(suite), root / "results", ScanConfig(), progress=False)
    assert summary.scored == 3 * len(ToyConfig().save_steps()) and not summary.failed
    return root


@pytest.mark.slow
def test_every_seed_has_a_phase_change(toy_results):
    best = best_heads(inductscan.load_results(toy_results / "results"))
    assert set(best.suite) == {"toy"}
    for seed, run in best.groupby("seed"):
        run = run.sort_values("step")
        first, last = run.iloc[0], run.iloc[-1]
        assert first.step == 0 and first.induction < 0.1, seed
        assert last.induction > 0.4, seed
        assert last.in_context_gain - first.in_context_gain > 2.0, seed  # nats
        gain_jumps = run.in_context_gain.diff().max()
        assert gain_jumps > 1.0, seed  # sharply: one checkpoint interval carries most of the rise
        assert last.tokens == last.step * 32 * 64


@pytest.mark.slow
def test_toy_checkpoints_load_with_from_pretrained(toy_results):
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(toy_results / "suite" / "seed0" / "checkpoint-0")
    assert model.config.n_layer == 2 and model.config.vocab_size == 256
    assert all((parameter == 0).all() for name, parameter in model.named_parameters() if ".mlp." in name)
