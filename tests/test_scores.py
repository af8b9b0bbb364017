"""Scores on hand-built attention patterns and circuits whose values are known in advance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from threadpoolctl import ThreadpoolController

from inductscan import scores
from inductscan.probe import Layout


def empty_pattern(layout: Layout, batch: int = 2, heads: int = 3) -> torch.Tensor:
    return torch.zeros(batch, heads, layout.n_positions, layout.n_positions, dtype=torch.float64)


def score(pattern: torch.Tensor, layout: Layout) -> dict[str, torch.Tensor]:
    return scores.pattern_scores(pattern, scores.pattern_weights(layout))


@pytest.mark.parametrize("has_bos", [True, False])
def test_perfect_induction_head(has_bos):
    layout = Layout(length=5, repeats=4, has_bos=has_bos)
    pattern = empty_pattern(layout)
    for q in range(layout.n_positions):
        if q in layout.induction_positions():
            pattern[:, :, q, q - 5 + 1] = 1.0  # the token after the most recent copy
        else:
            pattern[:, :, q, 0] = 1.0
    result = score(pattern, layout)
    assert torch.allclose(result["induction"], torch.ones(3, dtype=torch.float64))
    assert torch.allclose(result["prefix_matching"], torch.ones(3, dtype=torch.float64))
    assert torch.allclose(result["duplicate_token"], torch.zeros(3, dtype=torch.float64))


def test_attention_split_over_all_earlier_copies():
    # Attention spread evenly over the token after every earlier copy: prefix matching is 1,
    # induction is the mean of 1/n_copies over induction positions: repeat 2 has 1 copy, 3 has 2, 4 has 3.
    layout = Layout(length=4, repeats=4, has_bos=True)
    pattern = empty_pattern(layout, batch=1, heads=1)
    for q in layout.induction_positions():
        copies = list(range(q - 4, 0, -4))
        for c in copies:
            pattern[0, 0, q, c + 1] = 1.0 / len(copies)
    result = score(pattern, layout)
    assert result["prefix_matching"].item() == pytest.approx(1.0)
    assert result["induction"].item() == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)


def test_duplicate_token_head():
    layout = Layout(length=6, repeats=3, has_bos=False)
    pattern = empty_pattern(layout, batch=1, heads=1)
    for q in range(layout.n_positions):
        if q >= 6:
            pattern[0, 0, q, q - 6] = 0.75  # the most recent copy of the same token
            pattern[0, 0, q, q] = 0.25
        else:
            pattern[0, 0, q, q] = 1.0
    result = score(pattern, layout)
    assert result["duplicate_token"].item() == pytest.approx(0.75)
    assert result["induction"].item() == pytest.approx(0.0)


@pytest.mark.parametrize("has_bos", [True, False])
def test_previous_token_counts_only_queries_after_a_probe_token(has_bos):
    layout = Layout(length=5, repeats=2, has_bos=has_bos)
    n = layout.n_positions
    pattern = empty_pattern(layout, batch=1, heads=1)
    pattern[0, 0, 0, 0] = 1.0
    pattern[0, 0, 1, 1] = 1.0  # position 1 does not look back
    for q in range(2, n):
        pattern[0, 0, q, q - 1] = 1.0
    # With BOS, position 1's predecessor is the BOS, so position 1 is no previous-token query.
    expected = 1.0 if has_bos else (n - 2) / (n - 1)
    assert score(pattern, layout)["previous_token"].item() == pytest.approx(expected)


@pytest.mark.parametrize("has_bos", [True, False])
def test_attention_sink_is_the_mean_attention_to_the_first_position(has_bos):
    # head 0 parks everything on position 0; head 1 attends uniformly to what it may see; head 2
    # never looks at position 0 after it; the first query (which sees position 0 only) counts for none
    layout = Layout(length=5, repeats=2, has_bos=has_bos)
    n = layout.n_positions
    pattern = empty_pattern(layout, batch=2, heads=3)
    pattern[:, 0, :, 0] = 1.0
    for q in range(n):
        pattern[:, 1, q, : q + 1] = 1.0 / (q + 1)
        pattern[:, 2, q, q] = 1.0
    pattern[1, 2, 3] = 0.0
    pattern[1, 2, 3, 0] = 0.5  # one query of one sequence sends half to the sink
    pattern[1, 2, 3, 3] = 0.5
    expected = [1.0, np.mean([1 / (q + 1) for q in range(1, n)]), 0.5 / (2 * (n - 1))]
    assert scores.attention_sink(pattern).tolist() == pytest.approx(expected, abs=1e-12)
    # a leading layer dimension is kept
    assert scores.attention_sink(torch.stack([pattern, pattern])).shape == (2, 3)


def test_uniform_causal_attention_against_formula():
    layout = Layout(length=5, repeats=3, has_bos=True)
    n = layout.n_positions
    pattern = torch.tril(torch.ones(n, n, dtype=torch.float64))
    pattern = (pattern / pattern.sum(-1, keepdim=True)).expand(2, 1, n, n)
    result = score(pattern, layout)
    induction_q = range(6, n)
    assert result["induction"].item() == pytest.approx(sum(1 / (q + 1) for q in induction_q) / len(induction_q))
    copies = {q: len(range(q - 5, 0, -5)) for q in induction_q}
    assert result["prefix_matching"].item() == pytest.approx(sum(copies[q] / (q + 1) for q in induction_q) / 10)
    assert result["previous_token"].item() == pytest.approx(sum(1 / (q + 1) for q in range(2, n)) / (n - 2))


def test_scores_do_not_mutate_the_pattern():
    layout = Layout(length=4, repeats=3, has_bos=True)
    pattern = torch.rand(2, 2, layout.n_positions, layout.n_positions)
    before = pattern.clone()
    score(pattern, layout)
    assert torch.equal(pattern, before)


def test_copying_score_signs():
    torch.manual_seed(0)
    vocab, d_model, d_head = 40, 8, 4
    embed = torch.randn(vocab, d_model, dtype=torch.float64)
    basis = torch.linalg.qr(torch.randn(d_model, d_head, dtype=torch.float64))[0]  # (d_model, d_head)
    values = basis
    outputs = basis.T
    unembed = embed.T  # W_E W_V W_O W_U = (E B)(E B)^T: positive semi-definite, eigenvalues >= 0
    copying = scores.copying_score(embed, values[None], outputs[None], unembed)
    anti = scores.copying_score(embed, values[None], -outputs[None], unembed)
    assert copying.item() == pytest.approx(1.0)
    assert anti.item() == pytest.approx(-1.0)


def test_tied_vocab_product_is_the_gram_matrix_bit_for_bit_on_any_thread_count(monkeypatch):
    rows = np.random.default_rng(0).standard_normal((1001, 24)).astype(np.float32)
    expected = rows.astype(np.float64).T @ rows.astype(np.float64)  # numpy, float64, one product
    embed = torch.from_numpy(rows)
    blas = ThreadpoolController().select(user_api="blas")
    before = [lib["num_threads"] for lib in blas.info()]
    previous_threads = torch.get_num_threads()
    products = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            products.append(scores.vocab_product(embed.T, embed).numpy())
    finally:
        torch.set_num_threads(previous_threads)
    assert all(np.array_equal(product, products[0]) for product in products)  # a Ray task and a laptop agree
    assert np.allclose(products[0], expected, rtol=1e-5, atol=1e-4)
    assert [lib["num_threads"] for lib in blas.info()] == before  # the BLAS's own thread count is restored
    monkeypatch.setattr(scores, "_process_wide_openblas", lambda: None)  # a BLAS it does not run in threads
    assert np.allclose(scores.vocab_product(embed.T, embed).numpy(), expected, rtol=1e-5, atol=1e-4)


def test_losses_positions_with_and_without_bos():
    # Logits that are perfect on the repeats and uniform elsewhere give loss_repeat 0, loss_first log V.
    vocab, length = 7, 3
    for has_bos in (True, False):
        layout = Layout(length=length, repeats=3, has_bos=has_bos)
        segment = torch.tensor([1, 2, 3])
        ids = torch.cat([torch.tensor([0]) if has_bos else torch.tensor([], dtype=torch.int64), segment.repeat(3)])
        logits = torch.zeros(1, layout.n_positions, vocab)
        for position in range(layout.offset + length, layout.n_positions):
            logits[0, position - 1, ids[position]] = 1e4
        result = scores.loss_summary(scores.token_losses(logits, ids[None]), layout)
        assert result["loss_repeat"] == pytest.approx(0.0, abs=1e-6)
        assert result["loss_first"] == pytest.approx(torch.log(torch.tensor(float(vocab))).item(), abs=1e-5)
