"""Every stored score against an independent numpy computation from the saved weights and probe.

The reference below shares no code with inductscan: it reads the safetensors file with numpy,
runs GPT-2 (both Stanford CRFM flags on) in float64, and computes each score of DESIGN.md
section 4 with explicit loops over positions; the copying score uses the eigenvalues of the
full vocab x vocab OV circuit.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from safetensors.numpy import load_file

import inductscan
from inductscan.scan import ScanConfig, plan, run_scan
from inductscan.suites import local_suite

from .conftest import make_local_suite

TOLERANCE = 1e-4


def layer_norm(x, weight, bias, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def gelu_new(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def reference_forward(w, config, ids):
    """GPT-2 in numpy: returns patterns[l] (B, H, P, P), z[l] (B, H, P, E), logits, final residual."""
    n_layer, n_head, eps = config["n_layer"], config["n_head"], config["layer_norm_epsilon"]
    batch, positions = ids.shape
    x = w["transformer.wte.weight"][ids] + w["transformer.wpe.weight"][:positions]
    patterns, zs = [], []
    for layer in range(n_layer):
        p = f"transformer.h.{layer}."
        h = layer_norm(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"], eps)
        qkv = h @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
        d = qkv.shape[-1] // 3
        e = d // n_head
        q, k, v = (qkv[..., i * d : (i + 1) * d].reshape(batch, positions, n_head, e).transpose(0, 2, 1, 3)
                   for i in range(3))  # fmt: skip
        logits = q @ k.transpose(0, 1, 3, 2) / math.sqrt(e) / (layer + 1)  # scale_attn_by_inverse_layer_idx
        logits = np.where(np.tril(np.ones((positions, positions), bool)), logits, -np.inf)
        pattern = np.exp(logits - logits.max(-1, keepdims=True))
        pattern /= pattern.sum(-1, keepdims=True)
        z = pattern @ v
        patterns.append(pattern)
        zs.append(z)
        merged = z.transpose(0, 2, 1, 3).reshape(batch, positions, d)
        x = x + merged @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        h2 = layer_norm(x, w[p + "ln_2.weight"], w[p + "ln_2.bias"], eps)
        x = x + gelu_new(h2 @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"]) @ w[p + "mlp.c_proj.weight"] \
            + w[p + "mlp.c_proj.bias"]  # fmt: skip
    final = layer_norm(x, w["transformer.ln_f.weight"], w["transformer.ln_f.bias"], eps)
    return patterns, zs, final @ w["transformer.wte.weight"].T, x


def reference_scores(w, config, ids, length, repeats):
    """Dicts of (layer, head) -> score, and the checkpoint scores, by explicit loops."""
    n_layer, n_head, eps = config["n_layer"], config["n_head"], config["layer_norm_epsilon"]
    patterns, zs, logits, residual = reference_forward(w, config, ids)
    batch, positions = ids.shape
    o = 1  # with BOS
    induction_q = list(range(o + length, positions))
    previous_q = list(range(o + 1, positions))
    embed = w["transformer.wte.weight"]
    unembed = embed.T
    gain_f = w["transformer.ln_f.weight"]
    scale = np.sqrt(residual.var(-1) + eps)  # (B, P)
    heads = {}
    for layer in range(n_layer):
        p = f"transformer.h.{layer}."
        d = embed.shape[1]
        e = d // n_head
        for head in range(n_head):
            a = patterns[layer][:, head]
            copies = {q: [c for c in range(q - length, o - 1, -length)] for q in induction_q}
            induction = np.mean([a[b, q, q - length + 1] for b in range(batch) for q in induction_q])
            prefix = np.mean([sum(a[b, q, c + 1] for c in copies[q]) for b in range(batch) for q in induction_q])
            duplicate = np.mean([sum(a[b, q, c] for c in copies[q]) for b in range(batch) for q in induction_q])
            previous = np.mean([a[b, q, q - 1] for b in range(batch) for q in previous_q])
            # copying: eigenvalues of the full (vocab x vocab) OV circuit, LayerNorm gains folded
            w_v = w[p + "attn.c_attn.weight"][:, 2 * d + head * e : 2 * d + (head + 1) * e]
            w_v = w[p + "ln_1.weight"][:, None] * w_v
            w_o = w[p + "attn.c_proj.weight"][head * e : (head + 1) * e]
            full = embed @ w_v @ w_o @ (gain_f[:, None] * unembed)
            eigenvalues = np.linalg.eigvals(full)
            copying = eigenvalues.sum().real / np.abs(eigenvalues).sum()
            # direct logit attribution of the head to the token induction predicts
            contributions = []
            for b in range(batch):
                for q in induction_q:
                    out = zs[layer][b, head, q] @ w_o
                    through_ln = (out - out.mean()) / scale[b, q] * gain_f
                    target = ids[b, q - length + 1]
                    contributions.append(through_ln @ (unembed[:, target] - unembed.mean(axis=1)))
            heads[(layer, head)] = {
                "induction": induction, "prefix_matching": prefix, "duplicate_token": duplicate,
                "previous_token": previous, "copying": copying, "induction_logit": np.mean(contributions),
            }  # fmt: skip
    log_probs = logits - logits.max(-1, keepdims=True)
    log_probs = log_probs - np.log(np.exp(log_probs).sum(-1, keepdims=True))
    nll = lambda position: -log_probs[np.arange(batch), position - 1, ids[:, position]]  # noqa: E731
    loss_first = np.mean([nll(position) for position in range(1, 1 + length)])
    loss_repeat = np.mean([nll(position) for position in range(1 + length, positions)])
    checkpoint = {"loss_first": loss_first, "loss_repeat": loss_repeat, "in_context_gain": loss_first - loss_repeat}
    return heads, checkpoint


@pytest.mark.parametrize("length,repeats", [(7, 4), (12, 2)])
def test_every_score_matches_numpy_reference(tmp_path, length, repeats):
    folder = make_local_suite(tmp_path / "suite", seeds=(0,), steps=(0, 5))
    out = tmp_path / "results"
    summary = run_scan(plan(local_suite(folder)), out,
                       ScanConfig(probe_length=length, probe_repeats=repeats, probe_batch=3), progress=False)  # fmt: skip
    assert summary.scored == 2 and not summary.failed
    ids = inductscan.load_probe(out).numpy()
    assert ids.shape == (3, 1 + length * repeats)
    results = inductscan.load_results(out)
    for step in (0, 5):
        checkpoint = folder / "seed0" / f"checkpoint-{step}"
        weights = {key: value.astype(np.float64) for key, value in load_file(checkpoint / "model.safetensors").items()}
        config = json.loads((checkpoint / "config.json").read_text())
        assert config["scale_attn_by_inverse_layer_idx"] and config["reorder_and_upcast_attn"]
        heads, checkpoint_scores = reference_scores(weights, config, ids, length, repeats)
        rows = results.xs(step, level="step").droplevel(["suite", "run"])
        for (layer, head), expected in heads.items():
            row = rows.loc[(0, layer, head)]
            for name, value in {**expected, **checkpoint_scores}.items():
                assert row[name] == pytest.approx(value, abs=TOLERANCE), (step, layer, head, name)
        # the attention is far from uniform, so the test can tell positions apart
        assert rows["previous_token"].max() - rows["previous_token"].min() > 0.05


def test_prefix_matching_equals_induction_with_two_repeats(tmp_path):
    folder = make_local_suite(tmp_path / "suite", seeds=(0,), steps=(0,))
    out = tmp_path / "results"
    run_scan(plan(local_suite(folder)), out, ScanConfig(probe_length=20, probe_repeats=2), progress=False)
    results = inductscan.load_results(out)
    np.testing.assert_allclose(results["prefix_matching"], results["induction"], atol=1e-12)
