"""The Llama family's forward pass against transformers' eager implementation of every config
class, what its config reader refuses, bad checkpoints recorded as failures while the scan goes on,
and sharded bf16 weights read whole or layer by layer."""

from __future__ import annotations

import functools
import json
from dataclasses import fields

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

import inductscan
from inductscan.cli import main
from inductscan.errors import UnsupportedArchitectureError
from inductscan.families import llama
from inductscan.families.native import family_of
from inductscan.families.registry import make_scorer, read_architecture
from inductscan.metrics import HEAD_EFFECTS, METRICS
from inductscan.testing import LLAMA_FAMILY, llama_family_model, save_checkpoint
from inductscan.weights import StreamedEmbedding, read_state_dict

from .conftest import write_json

YARN = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 16}
CASES = {
    **{model_type: (model_type, {}) for model_type in LLAMA_FAMILY},
    "llama-one-kv-head-head-dim-32": ("llama", {"num_key_value_heads": 1, "head_dim": 32}),
    "llama-rope-linear": ("llama", {"rope_parameters": {"rope_type": "linear", "rope_theta": 500.0, "factor": 2.0}}),
    "llama-rope-llama3": (
        "llama",
        {
            "rope_parameters": {
                "rope_type": "llama3",
                "rope_theta": 500000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 16,
            }
        },
    ),
    "llama-rope-yarn": ("llama", {"rope_parameters": YARN}),
    "mistral-no-window-no-gqa": ("mistral", {"sliding_window": None, "num_key_value_heads": 4}),
}


def run_ours(folder, ids, *, layer_by_layer: bool = False):
    arch = read_architecture(folder / "config.json")
    scorer = make_scorer(arch, layer_by_layer=layer_by_layer)
    weights = scorer.load(lambda: read_state_dict(sorted(folder.glob("*.safetensors"))))
    patterns = {}

    def keep(index, layer, pattern, z):
        patterns[index] = pattern.clone()

    result = family_of(arch).forward(weights, ids, keep, losses=True)
    return arch, result, patterns


@pytest.mark.parametrize("case", CASES)
def test_patterns_and_losses_match_transformers_eager(tmp_path, case):
    model_type, overrides = CASES[case]
    model = llama_family_model(model_type, 1, **overrides)
    folder = save_checkpoint(model, tmp_path / "checkpoint")
    ids = torch.randint(0, 96, (3, 40), generator=torch.Generator().manual_seed(0))
    arch, ours, patterns = run_ours(folder, ids)
    with torch.no_grad():
        theirs = model(ids, output_attentions=True)
    assert len(patterns) == len(theirs.attentions) == 3
    for layer, pattern in patterns.items():
        assert torch.allclose(pattern, theirs.attentions[layer], atol=1e-5), layer
        assert theirs.attentions[layer][:, :, 10:].max(-1).values.mean() > 0.5  # peaked: positions told apart
    logits = theirs.logits[:, :-1]
    expected = F.cross_entropy(logits.reshape(-1, 96), ids[:, 1:].reshape(-1), reduction="none").view(3, 39)
    assert torch.allclose(ours.token_losses, expected, atol=1e-4)
    assert arch.n_kv_heads == model.config.num_key_value_heads


def test_every_feature_the_fixtures_should_exercise_is_there():
    """Random norm gains, biases where the class has them, grouped-query attention where it allows
    it, windows that bite on a 40-token input, a layer without rotary; else a dropped feature passes."""
    for model_type in LLAMA_FAMILY:
        model = llama_family_model(model_type, 2)
        gains = [p for name, p in model.named_parameters() if "norm" in name]
        assert model_type == "olmo" or (gains and all((gain - 1).abs().min() > 0 for gain in gains)), model_type
        biases = [p for name, p in model.named_parameters() if name.endswith("bias")]
        assert (model_type == "mistral") == (not biases), model_type
        assert all(bias.abs().mean() > 0.1 for bias in biases)
        arch = llama.architecture(model_type, llama.VARIANTS[model_type], model.config)
        assert arch.n_kv_heads < arch.n_heads
        assert (model_type in ("mistral", "qwen2", "olmo3", "smollm3")) == any(arch.windows), model_type
    assert (
        None in llama.architecture("smollm3", llama.VARIANTS["smollm3"], llama_family_model("smollm3", 0).config).rotary
    )


@pytest.mark.parametrize("model_type", sorted(llama.VARIANTS))
def test_every_field_of_every_class_is_read_or_known_to_be_inert(model_type):
    """A field that a later transformers adds fails here first (and is refused at run time), never
    ignored silently."""
    import transformers

    config_class = getattr(transformers, llama.VARIANTS[model_type].config_class)
    assert config_class.model_type == model_type
    unaccounted = {field.name for field in fields(config_class)} - llama.READ - llama.INERT
    assert not unaccounted


REFUSED = {
    "activation": ({"hidden_act": "gelu"}, "hidden_act 'gelu'"),
    "rope type": (
        {
            "rope_parameters": {
                "rope_type": "longrope",
                "rope_theta": 1e4,
                "long_factor": [2.0] * 8,
                "short_factor": [1.0] * 8,
            }
        },
        "rope_type 'longrope'",
    ),
    "rope parameters": ({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4}}, "Missing required keys"),
    "partial rotary": ({"rope_parameters": {"rope_theta": 1e4, "partial_rotary_factor": 0.5}}, "partial_rotary_factor"),
    "key of another format": ({"d_model": 64, "n_heads": 4}, r"does not read the key\(s\) d_model, n_heads"),
    "interleaved rotary": ({"rope_interleaved": True}, "rope_interleaved"),
    "attention kind": ({"is_causal": False}, "is_causal"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_a_config_attribute_that_is_not_reproduced_is_refused_naming_it(tmp_path, case):
    changes, message = REFUSED[case]
    folder = save_checkpoint(llama_family_model("llama", 3), tmp_path / "checkpoint")
    config = json.loads((folder / "config.json").read_text()) | changes
    write_json(folder / "config.json", config)
    with pytest.raises(UnsupportedArchitectureError, match=message) as raised:
        read_architecture(folder / "config.json")
    assert "\n" not in str(raised.value)


def test_an_unknown_layer_type_is_refused(tmp_path):
    folder = save_checkpoint(llama_family_model("olmo3", 3), tmp_path / "checkpoint")
    config = json.loads((folder / "config.json").read_text())
    config["layer_types"][1] = "chunked_attention"
    write_json(folder / "config.json", config)
    with pytest.raises(UnsupportedArchitectureError, match="layer_types 'chunked_attention'"):
        read_architecture(folder / "config.json")


def edit_weights(folder, edit) -> None:
    path = folder / "model.safetensors"
    state = load_file(path)
    edit(state)
    save_file(state, path, metadata={"format": "pt"})


def bad_runs(root):
    """root/seedS/checkpoint-0: a good Llama (seed 0) and one bad checkpoint per seed from 1 on."""

    def make(seed, model_type="llama", **overrides):
        return save_checkpoint(llama_family_model(model_type, seed, **overrides), root / f"seed{seed}" / "checkpoint-0")

    make(0)
    unsupported = make(1)
    write_json(
        unsupported / "config.json", json.loads((unsupported / "config.json").read_text()) | {"hidden_act": "relu"}
    )
    no_q_norm = make(2, "olmo2")
    edit_weights(no_q_norm, lambda state: state.pop("model.layers.1.self_attn.q_norm.weight"))
    gqa = make(3, num_key_value_heads=4)  # weights for 4 key/value heads, a config that says 2
    write_json(gqa / "config.json", json.loads((gqa / "config.json").read_text()) | {"num_key_value_heads": 2})
    unknown = make(4)
    write_json(unknown / "config.json", json.loads((unknown / "config.json").read_text()) | {"model_type": "nonesuch"})
    extra = make(5)  # a Llama config beside OLMo 2's QK-norm gains: run without them, it would be wrong
    edit_weights(extra, lambda state: state.update({"model.layers.0.self_attn.q_norm.weight": torch.ones(64)}))
    untied = make(6, tie_word_embeddings=False)  # its own lm_head, under a config that says tied
    write_json(untied / "config.json", json.loads((untied / "config.json").read_text()) | {"tie_word_embeddings": True})
    return {
        1: "unsupported config: hidden_act 'relu'",
        2: "weight 'model.layers.1.self_attn.q_norm.weight' is missing from the checkpoint",
        3: "weight 'model.layers.0.self_attn.k_proj.weight' has shape (64, 64), the config says (32, 64)",
        4: "model_type 'nonesuch'",
        5: "tensors its llama config does not explain: model.layers.0.self_attn.q_norm.weight",
        6: "ties the embeddings (tie_word_embeddings) but the checkpoint's lm_head.weight differs from its embedding",
    }


def test_bad_checkpoints_are_one_line_failures_and_the_scan_goes_on(tmp_path):
    expected = bad_runs(tmp_path / "suite")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["scan", str(tmp_path / "suite"), "--out", str(out), "--probe-length", "7"])
    assert result.exit_code == 1, result.output
    assert "7 checkpoints" in result.output and "1 scored" in result.output and "6 failed" in result.output
    failures = inductscan.load_failures(out).set_index("seed")
    assert set(failures.index) == set(expected)
    for seed, message in expected.items():
        reason = failures.loc[seed, "reason"]
        assert message in reason and "\n" not in reason, (seed, reason)
        assert failures.loc[seed, "kind"] == "failed"
        assert sum(message in line for line in result.output.splitlines()) == 1
    assert inductscan.load_results(out).index.get_level_values("seed").unique().tolist() == [0]


@pytest.mark.parametrize("model_type", ["llama", "olmo2"])
def test_sharded_bf16_scans_whole_and_layer_by_layer_alike(tmp_path, model_type):
    """bf16 shards read tensor by tensor: the scores whole and one layer at a time agree, and the
    weights are the bf16 values, widened exactly."""
    model = llama_family_model(model_type, 4).to(torch.bfloat16)
    folder = tmp_path / "suite" / "checkpoint-0"
    model.save_pretrained(folder, max_shard_size="60KB")
    assert len(list(folder.glob("model-*-of-*.safetensors"))) > 3
    assert (folder / "model.safetensors.index.json").is_file()
    arch = read_architecture(folder / "config.json")
    weights = make_scorer(arch).load(lambda: read_state_dict(sorted(folder.glob("model-*.safetensors"))))
    assert torch.equal(weights.layers[2].k_weight, model.model.layers[2].self_attn.k_proj.weight.float())
    runner = CliRunner()
    for mode, extra in (("whole", []), ("layered", ["--layer-by-layer"])):
        result = runner.invoke(
            main, ["scan", str(tmp_path / "suite"), "--out", str(tmp_path / mode), "--probe-length", "7", *extra]
        )
        assert result.exit_code == 0, result.output
    whole, layered = inductscan.load_results(tmp_path / "whole"), inductscan.load_results(tmp_path / "layered")
    scores = [name for name in METRICS if name != "icl_score" and name not in HEAD_EFFECTS]
    assert len(whole) == 3 * 4 and whole[scores].notna().all().all()
    assert (layered[scores] - whole[scores]).abs().max().max() <= 1e-6


def test_layer_by_layer_keeps_no_untied_embedding_and_reads_it_when_needed(tmp_path):
    """One layer at a time, an untied W_E (a 7B's is 0.8 GB in float32) has no buffer: it is read from
    its file for the rows a pass gathers and for the copying score, with the checkpoint's values, and
    the ICL token losses (passes of their own) equal the whole model's."""
    model = llama_family_model("llama", 6)
    folder = save_checkpoint(model, tmp_path / "checkpoint")
    arch = read_architecture(folder / "config.json")
    assert not arch.tied_embeddings

    def open_state():
        return read_state_dict([folder / "model.safetensors"])

    whole_scorer, layered_scorer = make_scorer(arch), make_scorer(arch, layer_by_layer=True)
    whole, layered = whole_scorer.load(open_state), layered_scorer.load(open_state)
    assert isinstance(layered.embed, StreamedEmbedding)
    assert "model.embed_tokens.weight" in whole_scorer.buffers.tensors
    assert "model.embed_tokens.weight" not in layered_scorer.buffers.tensors
    stored = model.model.embed_tokens.weight.detach()
    ids = torch.randint(0, 96, (3, 12), generator=torch.Generator().manual_seed(2))
    assert torch.equal(layered.embed[ids], stored[ids])
    assert torch.equal(layered.embed.whole(), stored)
    assert torch.equal(layered_scorer.token_losses(layered, ids), whole_scorer.token_losses(whole, ids))


def test_a_post_norm_checkpoint_scores_each_head_as_its_share_of_the_normalised_output(tmp_path):
    """The sum over heads of z / s times W_O diag(g) (what the forward pass hands the scores) plus the
    bias's share is exactly what the post-norm adds to the residual stream."""
    model = llama_family_model("olmo2", 5)
    folder = save_checkpoint(model, tmp_path / "checkpoint")
    arch = read_architecture(folder / "config.json")
    weights = make_scorer(arch).load(lambda: read_state_dict([folder / "model.safetensors"]))
    ids = torch.randint(0, 96, (2, 20), generator=torch.Generator().manual_seed(1))
    shares = {}

    def keep(index, layer, pattern, z):
        values, outputs = layer.value_output(arch)
        shares[index] = torch.einsum("bhpe,hed->bpd", z, outputs)

    family_of(arch).forward(weights, ids, keep)
    captured = {}
    attention = model.model.layers[1].self_attn
    hook = model.model.layers[1].post_attention_layernorm.register_forward_hook(
        lambda module, inputs, output: captured.update(normed=output, raw=inputs[0])
    )
    with torch.no_grad():
        model(ids)
    hook.remove()
    scale = (captured["raw"].pow(2).mean(-1, keepdim=True) + arch.norm_eps).sqrt()
    bias_share = attention.o_proj.bias / scale * model.model.layers[1].post_attention_layernorm.weight
    assert torch.allclose(shares[1] + bias_share, captured["normed"], atol=1e-5)


def test_fixture_factories_match_their_documented_class():
    for name in ("llama", "mistral", "qwen2", "olmo", "olmo2", "olmo3", "smollm3"):
        factory = getattr(inductscan.testing, f"{name}_model")
        assert factory(0).config.model_type == name
    assert functools.partial(llama_family_model, "olmo2")(0).config.model_type == "olmo2"


def test_a_probe_longer_than_the_sliding_window_is_noted_and_its_induction_is_zero(tmp_path):
    # the fixture's Mistral looks back 8 positions in every layer: an induction head looks back
    # (length - 1), so repeats of 9 tokens are out of its sight and of 8 are not
    save_checkpoint(llama_family_model("mistral", 0), tmp_path / "suite" / "checkpoint-0")
    for length, blind in ((9, True), (8, False)):
        out = tmp_path / f"out-{length}"
        result = CliRunner().invoke(
            main, ["scan", str(tmp_path / "suite"), "--out", str(out), "--probe-length", str(length), "--quiet"]
        )
        assert result.exit_code == 0, result.output
        noted = "more than the sliding window of 8 positions of every layer can look back" in result.output
        assert noted == blind, result.output
        assert ("--probe-length 8 or less probes them" in result.output) == blind, result.output
        induction = inductscan.load_results(out, columns=["induction"])["induction"]
        assert (induction == 0).all() == blind, induction
