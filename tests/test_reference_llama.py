"""Every stored score of a Llama-family scan against an independent numpy computation, and its losses
against transformers' own cross-entropy.

The reference shares no code with inductscan: it reads the safetensors file with numpy, runs each
config class in float64 as its transformers modeling file describes it (RMSNorm before attention
and the MLP, or after them for OLMo 2/3; OLMo 1's LayerNorm without parameters and clip_qkv;
QK-norm over all heads; rotary embeddings on halves; sliding windows; SmolLM3's layers without
rotary; head h reading key/value head h // (n_heads / n_kv_heads)), with explicit loops over heads
and positions, and computes copying and induction_logit as docs/scores.md defines them for the
family: gains folded into W_V, W_O (a post-norm's) and W_U, each head's share of the residual
stream divided by the post-norm's scale, the final norm's scale without centring for RMSNorm, and
the eigenvalues of the full vocab x vocab OV circuit.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

import inductscan
from inductscan.plan import ScanConfig, plan
from inductscan.runner import run_scan
from inductscan.suites import local_suite
from inductscan.testing import llama_family_model

from .conftest import make_local_suite
from .test_reference import causal_softmax

TOLERANCE = 1e-4


def rms_norm(x, gain, eps):
    return x / np.sqrt((x**2).mean(-1, keepdims=True) + eps) * gain


def plain_layer_norm(x, eps):
    centred = x - x.mean(-1, keepdims=True)
    return centred / np.sqrt((centred**2).mean(-1, keepdims=True) + eps)


def rotate_halves(x, theta):
    """(B, H, P, E): dimension i turns with i + E/2 by position * theta ** (-2 i / E)."""
    e = x.shape[-1]
    angles = np.arange(x.shape[2])[:, None] * theta ** (-np.arange(e // 2) * 2 / e)
    cos, sin = np.cos(angles), np.sin(angles)
    first, second = x[..., : e // 2], x[..., e // 2 :]
    return np.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1)


def windowed_softmax(logits, window):
    """Causal softmax; with a window, a query at q sees only keys q - window < k <= q."""
    if window is None:
        return causal_softmax(logits)
    positions = logits.shape[-1]
    q, k = np.arange(positions)[:, None], np.arange(positions)[None, :]
    return causal_softmax(np.where(k > q - window, logits, -np.inf))


def layer_settings(config):
    """Per layer: (window, rotary theta or None), read from the saved config as each class reads it."""
    kind, n = config["model_type"], config["num_hidden_layers"]
    types = config.get("layer_types") or ["full_attention"] * n
    windows = [config["sliding_window"]] * n if kind == "mistral" else [None] * n
    if kind in ("qwen2", "olmo3", "smollm3"):
        windows = [config["sliding_window"] if t == "sliding_attention" else None for t in types]
    rope = config["rope_parameters"]
    thetas = [rope[t]["rope_theta"] if kind == "olmo3" else rope["rope_theta"] for t in types]
    if kind == "smollm3":
        thetas = [theta if uses else None for theta, uses in zip(thetas, config["no_rope_layers"], strict=True)]
    return windows, thetas


def llama_reference(w, config, ids):
    """The forward pass in float64, and what the scores need of it."""
    kind = config["model_type"]
    n_layer, n_head, d = config["num_hidden_layers"], config["num_attention_heads"], config["hidden_size"]
    n_kv = config["num_key_value_heads"]
    e = config.get("head_dim") or d // n_head
    post = kind in ("olmo2", "olmo3")
    eps = 1e-5 if kind == "olmo" else config["rms_norm_eps"]
    clip = config.get("clip_qkv")
    windows, thetas = layer_settings(config)
    batch, positions = ids.shape

    def get(name, default=0.0):
        return w.get(name, default)

    def pre_norm(x, name):
        return plain_layer_norm(x, eps) if kind == "olmo" else rms_norm(x, w[name], eps)

    x = w["model.embed_tokens.weight"][ids]
    patterns, shares, values, outputs = [], [], [], []
    for layer in range(n_layer):
        p = f"model.layers.{layer}."
        h = x if post else pre_norm(x, p + "input_layernorm.weight")
        q, k, v = (h @ w[p + f"self_attn.{n}_proj.weight"].T + get(p + f"self_attn.{n}_proj.bias") for n in "qkv")
        if clip is not None:
            q, k, v = (np.clip(t, -clip, clip) for t in (q, k, v))
        if post:  # QK-norm: one RMSNorm over all heads' q, one over all heads' k
            q, k = (
                rms_norm(q, w[p + "self_attn.q_norm.weight"], eps),
                rms_norm(k, w[p + "self_attn.k_norm.weight"], eps),
            )
        q = q.reshape(batch, positions, n_head, e).transpose(0, 2, 1, 3)
        k = k.reshape(batch, positions, n_kv, e).transpose(0, 2, 1, 3)
        v = v.reshape(batch, positions, n_kv, e).transpose(0, 2, 1, 3)
        if thetas[layer] is not None:
            q, k = rotate_halves(q, thetas[layer]), rotate_halves(k, thetas[layer])
        o_weight = w[p + "self_attn.o_proj.weight"]  # (d, n_head * e)
        pattern = np.zeros((batch, n_head, positions, positions))
        head_out = np.zeros((batch, n_head, positions, d))
        for head in range(n_head):
            group = head // (n_head // n_kv)
            pattern[:, head] = windowed_softmax(
                q[:, head] @ k[:, group].transpose(0, 2, 1) / math.sqrt(e), windows[layer]
            )
            head_out[:, head] = (pattern[:, head] @ v[:, group]) @ o_weight[:, head * e : (head + 1) * e].T
        attended = head_out.sum(1) + get(p + "self_attn.o_proj.bias")
        input_gain = np.ones(d) if post or kind == "olmo" else w[p + "input_layernorm.weight"]
        v_weight = w[p + "self_attn.v_proj.weight"]
        values.append([input_gain[:, None] * v_weight[(h // (n_head // n_kv)) * e :][:e].T for h in range(n_head)])
        head_outputs = [o_weight[:, h * e : (h + 1) * e].T for h in range(n_head)]
        if post:  # each head's share of RMSNorm(a) = a / s * g: its output / s * g; g folds into W_O
            gain = w[p + "post_attention_layernorm.weight"]
            scale = np.sqrt((attended**2).mean(-1, keepdims=True) + eps)  # (B, P, 1)
            head_out = head_out / scale[:, None] * gain
            attended = attended / scale * gain
            head_outputs = [out * gain for out in head_outputs]
        patterns.append(pattern)
        shares.append(head_out)
        outputs.append(head_outputs)
        x = x + attended
        mlp_in = x if post else pre_norm(x, p + "post_attention_layernorm.weight")
        gate = mlp_in @ w[p + "mlp.gate_proj.weight"].T + get(p + "mlp.gate_proj.bias")
        up = mlp_in @ w[p + "mlp.up_proj.weight"].T + get(p + "mlp.up_proj.bias")
        mlp = (gate / (1 + np.exp(-gate)) * up) @ w[p + "mlp.down_proj.weight"].T + get(p + "mlp.down_proj.bias")
        x = x + (rms_norm(mlp, w[p + "post_feedforward_layernorm.weight"], eps) if post else mlp)
    embed = w["model.embed_tokens.weight"]
    unembed = embed.T if config["tie_word_embeddings"] else w["lm_head.weight"].T
    final_gain = np.ones(d) if kind == "olmo" else w["model.norm.weight"]
    final = plain_layer_norm(x, eps) if kind == "olmo" else rms_norm(x, final_gain, eps)
    return dict(
        patterns=patterns, shares=shares, values=values, outputs=outputs, residual=x, logits=final @ unembed,
        embed=embed, unembed=unembed, final_gain=final_gain, eps=eps, centred=kind == "olmo",
    )  # fmt: skip


def reference_scores(ref, ids, length):
    """(layer, head) -> {copying, induction_logit, induction}, by explicit loops (probe with BOS)."""
    batch, positions = ids.shape
    induction_q = range(1 + length, positions)
    residual = ref["residual"]
    if ref["centred"]:
        scale = np.sqrt(residual.var(-1) + ref["eps"])
    else:
        scale = np.sqrt((residual**2).mean(-1) + ref["eps"])
    unembed = ref["unembed"]
    found = {}
    for layer, pattern in enumerate(ref["patterns"]):
        for head in range(pattern.shape[1]):
            full = ref["embed"] @ ref["values"][layer][head] @ ref["outputs"][layer][head]
            eigenvalues = np.linalg.eigvals(full @ (ref["final_gain"][:, None] * unembed))
            contributions = []
            for b in range(batch):
                for q in induction_q:
                    share = ref["shares"][layer][b, head, q]
                    if ref["centred"]:
                        share = share - share.mean()
                    through = share / scale[b, q] * ref["final_gain"]
                    target = ids[b, q - length + 1]
                    contributions.append(through @ (unembed[:, target] - unembed.mean(axis=1)))
            found[(layer, head)] = {
                "copying": eigenvalues.sum().real / np.abs(eigenvalues).sum(),
                "induction_logit": np.mean(contributions),
                "induction": np.mean([pattern[b, head, q, q - length + 1] for b in range(batch) for q in induction_q]),
            }
    return found


def transformers_losses(folder: Path, ids: np.ndarray, length: int) -> dict[str, float]:
    """loss_first and loss_repeat from transformers' own model and its cross-entropy (probe with BOS)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager").eval()
    tokens = torch.from_numpy(ids)
    with torch.no_grad():
        logits = model(tokens).logits[:, :-1]
    losses = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1), reduction="none"
    ).view(len(tokens), -1)  # entry p - 1: the loss of token p
    return {
        "loss_first": losses[:, :length].double().mean().item(),  # tokens 1..L
        "loss_repeat": losses[:, length:].double().mean().item(),  # tokens L + 1..P - 1
    }


CASES = {
    "llama-gqa-biases-untied": ("llama", {}),
    "llama-one-kv-head": ("llama", {"num_key_value_heads": 1, "attention_bias": False}),
    "mistral-window": ("mistral", {}),
    "qwen2-biases-window": ("qwen2", {}),
    "olmo-layernorm-clip-tied": ("olmo", {}),
    "olmo2-post-norm-gqa": ("olmo2", {}),
    # default rope on both layer types here: YaRN's own definition is checked against transformers
    "olmo3-post-norm-windows": (
        "olmo3",
        {
            "rope_parameters": {
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                "full_attention": {"rope_type": "default", "rope_theta": 500.0},
            }
        },
    ),
    "smollm3-nope-window-tied": ("smollm3", {}),
}


@pytest.mark.parametrize("case", CASES)
def test_every_llama_family_score_matches_numpy_reference(tmp_path, case):
    model_type, overrides = CASES[case]
    factory = functools.partial(llama_family_model, model_type)
    folder = make_local_suite(tmp_path / "suite", seeds=(0,), steps=(0,), factory=factory, **overrides)
    length, repeats = 7, 4
    settings = ScanConfig(probe_length=length, probe_repeats=repeats, probe_batch=3)
    summary = run_scan(plan(local_suite(folder)), tmp_path / "out", settings, progress=False)
    assert summary.scored == 1 and not summary.failed, summary.failed
    ids = inductscan.load_probe(tmp_path / "out").numpy()
    assert ids.shape == (3, 1 + length * repeats)  # the config's BOS (95) first
    checkpoint = folder / "seed0" / "checkpoint-0"
    config = json.loads((checkpoint / "config.json").read_text())
    weights = {key: value.astype(np.float64) for key, value in load_file(checkpoint / "model.safetensors").items()}
    ref = llama_reference(weights, config, ids)
    for pattern in ref["patterns"]:  # peaked attention: the test tells positions apart
        assert pattern[:, :, 1 + length :].max(-1).mean() > 0.5
    rows = inductscan.load_results(tmp_path / "out").droplevel(["suite", "run", "seed", "step"])
    expected = reference_scores(ref, ids, length)
    assert len(rows) == len(expected) == config["num_hidden_layers"] * config["num_attention_heads"]
    for (layer, head), scores in expected.items():
        for name, value in scores.items():
            assert rows.loc[(layer, head), name] == pytest.approx(value, abs=TOLERANCE), (layer, head, name)
    for name, value in transformers_losses(checkpoint, ids, length).items():
        assert rows[name].iloc[0] == pytest.approx(value, abs=TOLERANCE), name
