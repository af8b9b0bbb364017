"""Every stored score against an independent numpy computation from the saved weights and probe.

The reference below shares no code with inductscan: it reads the weight file (safetensors with
numpy, or the fp16 pickled ``pytorch_model.bin`` with ``torch.load``), runs the model in float64
from the definitions (GPT-2 with both Stanford CRFM flags on; GPT-NeoX as transformers'
``modeling_gpt_neox.py`` does: a fused qkv projection laid out (head, [q|k|v], d_head), rotary
embeddings on the first ``partial_rotary_factor`` of each head with halves rotated together,
parallel or sequential residual, a separate ``embed_out``), and computes each score of docs/scores.md
with explicit loops over positions; the copying score uses the eigenvalues of the full
vocab x vocab OV circuit.

The test models have LayerNorm gains and biases and every linear bias away from their default
1 and 0 (``tests/conftest.py``, ``perturb``): a score that drops a gain or reads a bias in the
wrong order fails here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

import inductscan
from inductscan.plan import ScanConfig, plan
from inductscan.runner import run_scan
from inductscan.suites import local_suite

from .conftest import make_local_suite, neox_model

TOLERANCE = 1e-4


def read_weights(folder: Path) -> dict[str, np.ndarray]:
    """The checkpoint's tensors in float64, read without inductscan."""
    if (folder / "model.safetensors").exists():
        return {key: value.astype(np.float64) for key, value in load_file(folder / "model.safetensors").items()}
    state = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    return {key: value.double().numpy() for key, value in state.items()}


def layer_norm(x, weight, bias, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def gelu_new(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def gelu_exact(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def causal_softmax(logits):
    positions = logits.shape[-1]
    logits = np.where(np.tril(np.ones((positions, positions), bool)), logits, -np.inf)
    pattern = np.exp(logits - logits.max(-1, keepdims=True))
    return pattern / pattern.sum(-1, keepdims=True)


@dataclass
class Reference:
    """What the scores need from one forward pass, and the weights of each head's OV circuit."""

    patterns: list  # [layer] (B, H, P, P)
    zs: list  # [layer] (B, H, P, E)
    logits: np.ndarray  # (B, P, vocab)
    residual: np.ndarray  # (B, P, d_model), entering the final LayerNorm
    values: list  # [layer][head] W_V (d_model, E), the input LayerNorm's gain folded in
    outputs: list  # [layer][head] W_O (E, d_model)
    embed: np.ndarray  # W_E (vocab, d_model)
    unembed: np.ndarray  # W_U (d_model, vocab)
    final_gain: np.ndarray  # (d_model,)
    eps: float


def gpt2_reference(w, config, ids) -> Reference:
    """GPT-2 in numpy; GPT-2's Conv1D weights are (in, out) and c_attn's columns are [q | k | v]."""
    n_layer, n_head, eps = config["n_layer"], config["n_head"], config["layer_norm_epsilon"]
    batch, positions = ids.shape
    x = w["transformer.wte.weight"][ids] + w["transformer.wpe.weight"][:positions]
    patterns, zs, values, outputs = [], [], [], []
    for layer in range(n_layer):
        p = f"transformer.h.{layer}."
        h = layer_norm(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"], eps)
        qkv = h @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
        d = qkv.shape[-1] // 3
        e = d // n_head
        q, k, v = (
            qkv[..., i * d : (i + 1) * d].reshape(batch, positions, n_head, e).transpose(0, 2, 1, 3) for i in range(3)
        )
        pattern = causal_softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(e) / (layer + 1))  # inverse layer idx
        z = pattern @ v
        patterns.append(pattern)
        zs.append(z)
        merged = z.transpose(0, 2, 1, 3).reshape(batch, positions, d)
        x = x + merged @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        h2 = layer_norm(x, w[p + "ln_2.weight"], w[p + "ln_2.bias"], eps)
        x = (
            x
            + gelu_new(h2 @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"]) @ w[p + "mlp.c_proj.weight"]
            + w[p + "mlp.c_proj.bias"]
        )
        value_columns = w[p + "attn.c_attn.weight"][:, 2 * d :]
        values.append([w[p + "ln_1.weight"][:, None] * value_columns[:, i * e : (i + 1) * e] for i in range(n_head)])
        outputs.append([w[p + "attn.c_proj.weight"][i * e : (i + 1) * e] for i in range(n_head)])
    embed = w["transformer.wte.weight"]
    gain_f = w["transformer.ln_f.weight"]
    final = layer_norm(x, gain_f, w["transformer.ln_f.bias"], eps)
    return Reference(patterns, zs, final @ embed.T, x, values, outputs, embed, embed.T, gain_f, eps)


def rotate(x, dims, base):
    """GPT-NeoX rotary embedding of the first ``dims`` of each head (B, H, P, E): dimension ``i`` is
    turned with dimension ``i + dims / 2`` by the angle ``position * base ** (-2 i / dims)``."""
    half = dims // 2
    angles = np.arange(x.shape[2])[:, None] * base ** (-np.arange(half) * 2 / dims)  # (P, dims / 2)
    cos, sin = np.cos(angles), np.sin(angles)
    first, second = x[..., :half], x[..., half:dims]
    return np.concatenate([first * cos - second * sin, second * cos + first * sin, x[..., dims:]], axis=-1)


def neox_rotary(config) -> tuple[float, float]:
    """(partial rotary factor, base), from transformers 5's ``rope_parameters`` or Pythia's own keys."""
    rope = config.get("rope_parameters") or {}
    fraction = rope.get("partial_rotary_factor", config.get("rotary_pct", 1.0))
    return fraction, rope.get("rope_theta", config.get("rotary_emb_base", 10000))


def neox_mlp(w, p, x, eps):
    """Layer ``p``'s post-attention LayerNorm and MLP (exact erf GELU, NeoX's ``hidden_act``)."""
    h = layer_norm(x, w[p + "post_attention_layernorm.weight"], w[p + "post_attention_layernorm.bias"], eps)
    hidden = gelu_exact(h @ w[p + "mlp.dense_h_to_4h.weight"].T + w[p + "mlp.dense_h_to_4h.bias"])
    return hidden @ w[p + "mlp.dense_4h_to_h.weight"].T + w[p + "mlp.dense_4h_to_h.bias"]


def neox_reference(w, config, ids) -> Reference:
    """GPT-NeoX in numpy; nn.Linear weights are (out, in); query_key_value's outputs are (head, [q|k|v], E)."""
    n_layer, n_head, eps = config["num_hidden_layers"], config["num_attention_heads"], config["layer_norm_eps"]
    d = config["hidden_size"]
    e = d // n_head
    assert config["hidden_act"] == "gelu" and config["attention_bias"]  # what the reference computes
    fraction, base = neox_rotary(config)
    dims = int(e * fraction)
    batch, positions = ids.shape
    x = w["gpt_neox.embed_in.weight"][ids]
    patterns, zs, values, outputs = [], [], [], []
    for layer in range(n_layer):
        p = f"gpt_neox.layers.{layer}."
        h = layer_norm(x, w[p + "input_layernorm.weight"], w[p + "input_layernorm.bias"], eps)
        qkv_weight, qkv_bias = w[p + "attention.query_key_value.weight"], w[p + "attention.query_key_value.bias"]
        qkv = (h @ qkv_weight.T + qkv_bias).reshape(batch, positions, n_head, 3, e).transpose(3, 0, 2, 1, 4)
        q, k, v = qkv  # each (B, H, P, E)
        q, k = rotate(q, dims, base), rotate(k, dims, base)
        pattern = causal_softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(e))
        z = pattern @ v
        patterns.append(pattern)
        zs.append(z)
        dense = w[p + "attention.dense.weight"]
        attended = z.transpose(0, 2, 1, 3).reshape(batch, positions, d) @ dense.T + w[p + "attention.dense.bias"]
        if config["use_parallel_residual"]:
            x = x + attended + neox_mlp(w, p, x, eps)
        else:
            x = x + attended
            x = x + neox_mlp(w, p, x, eps)
        gain = w[p + "input_layernorm.weight"]
        values.append([gain[:, None] * qkv_weight[i * 3 * e + 2 * e : (i + 1) * 3 * e].T for i in range(n_head)])
        outputs.append([dense[:, i * e : (i + 1) * e].T for i in range(n_head)])
    # the untied unembedding: embed_out in a saved file, lm_head in transformers 5's state dict
    unembed = (w["embed_out.weight"] if "embed_out.weight" in w else w["lm_head.weight"]).T
    gain_f = w["gpt_neox.final_layer_norm.weight"]
    final = layer_norm(x, gain_f, w["gpt_neox.final_layer_norm.bias"], eps)
    embed = w["gpt_neox.embed_in.weight"]
    return Reference(patterns, zs, final @ unembed, x, values, outputs, embed, unembed, gain_f, eps)


def reference_scores(ref: Reference, ids, length, *, bos: bool):
    """Dicts of (layer, head) -> score, and the checkpoint scores, by explicit loops."""
    batch, positions = ids.shape
    o = 1 if bos else 0  # the first probe position
    induction_q = list(range(o + length, positions))
    previous_q = list(range(o + 1, positions))
    copies = {q: list(range(q - length, o - 1, -length)) for q in induction_q}
    scale = np.sqrt(ref.residual.var(-1) + ref.eps)  # (B, P)
    unembed = ref.unembed
    heads = {}
    for layer, pattern in enumerate(ref.patterns):
        for head in range(pattern.shape[1]):
            a = pattern[:, head]
            induction = np.mean([a[b, q, q - length + 1] for b in range(batch) for q in induction_q])
            prefix = np.mean([sum(a[b, q, c + 1] for c in copies[q]) for b in range(batch) for q in induction_q])
            duplicate = np.mean([sum(a[b, q, c] for c in copies[q]) for b in range(batch) for q in induction_q])
            previous = np.mean([a[b, q, q - 1] for b in range(batch) for q in previous_q])
            sink = np.mean([a[b, q, 0] for b in range(batch) for q in range(1, positions)])
            # copying: eigenvalues of the full (vocab x vocab) OV circuit, LayerNorm gains folded
            w_v, w_o = ref.values[layer][head], ref.outputs[layer][head]
            full = ref.embed @ w_v @ w_o @ (ref.final_gain[:, None] * unembed)
            eigenvalues = np.linalg.eigvals(full)
            copying = eigenvalues.sum().real / np.abs(eigenvalues).sum()
            # direct logit attribution of the head to the token induction predicts
            contributions = []
            for b in range(batch):
                for q in induction_q:
                    out = ref.zs[layer][b, head, q] @ w_o
                    through_ln = (out - out.mean()) / scale[b, q] * ref.final_gain
                    target = ids[b, q - length + 1]
                    contributions.append(through_ln @ (unembed[:, target] - unembed.mean(axis=1)))
            heads[(layer, head)] = {
                "induction": induction,
                "prefix_matching": prefix,
                "duplicate_token": duplicate,
                "previous_token": previous,
                "attention_sink": sink,
                "copying": copying,
                "induction_logit": np.mean(contributions),
            }
    log_probs = ref.logits - ref.logits.max(-1, keepdims=True)
    log_probs = log_probs - np.log(np.exp(log_probs).sum(-1, keepdims=True))
    nll = lambda position: -log_probs[np.arange(batch), position - 1, ids[:, position]]  # noqa: E731
    loss_first = np.mean([nll(position) for position in range(max(o, 1), o + length)])
    loss_repeat = np.mean([nll(position) for position in range(o + length, positions)])
    checkpoint = {"loss_first": loss_first, "loss_repeat": loss_repeat, "in_context_gain": loss_first - loss_repeat}
    return heads, checkpoint


def scan_and_compare(folder: Path, out: Path, steps, reference, length, repeats, *, bos: bool) -> None:
    """Scan the one-run suite in ``folder`` and check every stored score against ``reference``."""
    settings = ScanConfig(probe_length=length, probe_repeats=repeats, probe_batch=3)
    summary = run_scan(plan(local_suite(folder)), out, settings, progress=False)
    assert summary.scored == len(steps) and not summary.failed
    ids = inductscan.load_probe(out).numpy()
    assert ids.shape == (3, int(bos) + length * repeats)
    results = inductscan.load_results(out)
    for step in steps:
        checkpoint = folder / "seed0" / f"checkpoint-{step}"
        config = json.loads((checkpoint / "config.json").read_text())
        weights = read_weights(checkpoint)
        forward = reference(weights, config, ids)
        # peaked attention (uniform would give at most 1 / 8 here), so the test can tell positions apart
        for pattern in forward.patterns:
            assert pattern[:, :, int(bos) + length :].max(-1).mean() > 0.3
        heads, checkpoint_scores = reference_scores(forward, ids, length, bos=bos)
        rows = results.xs(step, level="step").droplevel(["suite", "run"])
        assert len(rows) == len(heads)
        for (layer, head), expected in heads.items():
            row = rows.loc[(0, layer, head)]
            for name, value in {**expected, **checkpoint_scores}.items():
                assert row[name] == pytest.approx(value, abs=TOLERANCE), (step, layer, head, name)


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
@pytest.mark.parametrize("length,repeats", [(7, 4), (12, 2)])
def test_every_gpt2_score_matches_numpy_reference(tmp_path, length, repeats, fmt):
    folder = make_local_suite(tmp_path / "suite", seeds=(0,), steps=(0, 5), fmt=fmt)
    config = json.loads((folder / "seed0" / "checkpoint-0" / "config.json").read_text())
    assert config["scale_attn_by_inverse_layer_idx"] and config["reorder_and_upcast_attn"]
    scan_and_compare(folder, tmp_path / "results", (0, 5), gpt2_reference, length, repeats, bos=True)


NEOX_CASES = {
    # Pythia's layout: parallel residual, a quarter of each head rotary; no BOS in the probe
    "parallel-no-bos": {"bos_token_id": None},
    # sequential residual, half of each head rotary; the config's BOS (0) starts the probe
    "sequential-bos": {"use_parallel_residual": False, "rotary_pct": 0.5},
}


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
@pytest.mark.parametrize("case", NEOX_CASES)
def test_every_neox_score_matches_numpy_reference(tmp_path, case, fmt):
    overrides = NEOX_CASES[case]
    folder = make_local_suite(tmp_path / "suite", seeds=(0,), steps=(0, 5), factory=neox_model, fmt=fmt, **overrides)
    config = json.loads((folder / "seed0" / "checkpoint-0" / "config.json").read_text())
    assert not config["tie_word_embeddings"] and neox_rotary(config)[0] < 1
    bos = config["bos_token_id"] is not None
    assert bos == (case == "sequential-bos")
    scan_and_compare(folder, tmp_path / "results", (0, 5), neox_reference, 7, 4, bos=bos)


def test_prefix_matching_equals_induction_with_two_repeats(tmp_path):
    folder = make_local_suite(tmp_path / "suite", seeds=(0,), steps=(0,))
    out = tmp_path / "results"
    run_scan(plan(local_suite(folder)), out, ScanConfig(probe_length=20, probe_repeats=2), progress=False)
    results = inductscan.load_results(out)
    np.testing.assert_allclose(results["prefix_matching"], results["induction"], atol=1e-12)
