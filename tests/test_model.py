"""The forward pass against transformers' eager implementation, and what the loader refuses."""

from __future__ import annotations

import json

import pytest
import torch

from inductscan.architecture import read_architecture
from inductscan.errors import CorruptCheckpointError, UnsupportedArchitectureError
from inductscan.model import forward
from inductscan.weights import convert, read_state_dict

from .conftest import gpt2_model, neox_model, save_checkpoint

CASES = {
    "gpt2-stanford-flags": lambda: gpt2_model(1),
    "gpt2-plain": lambda: gpt2_model(2, scale_attn_by_inverse_layer_idx=False, reorder_and_upcast_attn=False),
    "neox-parallel": lambda: neox_model(3),
    "neox-sequential": lambda: neox_model(4, use_parallel_residual=False, rotary_pct=0.5),
}


def run_ours(folder, ids):
    files = sorted(folder.glob("*.safetensors")) or [folder / "pytorch_model.bin"]
    weights = convert(read_architecture(folder / "config.json"), read_state_dict(files))
    patterns = {}
    result = forward(weights, ids, lambda index, layer, pattern, z: patterns.__setitem__(index, pattern.clone()))
    return result, patterns


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_forward_matches_transformers_eager(tmp_path, case, fmt):
    model = CASES[case]()
    folder = save_checkpoint(model, tmp_path / "ckpt", fmt=fmt)
    if fmt == "bin":  # compare against the same fp16-rounded weights that the file holds
        with torch.no_grad():
            for parameter in model.parameters():  # not .half(): that would also round rotary buffers
                parameter.copy_(parameter.half().float())
    ids = torch.randint(0, 96, (3, 40), generator=torch.Generator().manual_seed(0))
    ours, patterns = run_ours(folder, ids)
    with torch.no_grad():
        theirs = model(ids, output_attentions=True)
    assert torch.allclose(ours.logits, theirs.logits, atol=2e-4)
    for layer, pattern in patterns.items():
        assert torch.allclose(pattern, theirs.attentions[layer], atol=1e-5)
    assert theirs.attentions[-1].max() > 0.5  # peaked attention: a real test of positions


@pytest.mark.parametrize("case", CASES)
def test_test_models_are_not_default_initialised(case):
    # With every LayerNorm gain 1 and every bias 0, a dropped gain or a misordered bias goes unseen.
    model = CASES[case]()
    norms = [module for module in model.modules() if isinstance(module, torch.nn.LayerNorm)]
    assert norms and all((norm.weight - 1).abs().min() > 0 and norm.bias.abs().min() > 0 for norm in norms)
    biases = [parameter for name, parameter in model.named_parameters() if name.endswith("bias")]
    assert len(biases) > 2 * len(norms) and all(bias.abs().mean() > 0.1 for bias in biases)


def test_stanford_layer_scaling_changes_the_pattern(tmp_path):
    # Guard against a runner that ignores scale_attn_by_inverse_layer_idx (transformers' SDPA did).
    on = save_checkpoint(gpt2_model(5), tmp_path / "on")
    config = json.loads((on / "config.json").read_text())
    config["scale_attn_by_inverse_layer_idx"] = False
    off = tmp_path / "off"
    off.mkdir()
    (off / "config.json").write_text(json.dumps(config))
    (off / "model.safetensors").write_bytes((on / "model.safetensors").read_bytes())
    ids = torch.randint(0, 96, (1, 20), generator=torch.Generator().manual_seed(1))
    _, with_flag = run_ours(on, ids)
    _, without_flag = run_ours(off, ids)
    assert torch.allclose(with_flag[0], without_flag[0])  # layer 0 divides by 1
    assert not torch.allclose(with_flag[2], without_flag[2], atol=1e-3)


def test_pythia_style_config_keys(tmp_path):
    # Real Pythia configs say rotary_pct / rotary_emb_base, not rope_parameters.
    folder = save_checkpoint(neox_model(6, rotary_pct=0.25), tmp_path / "ckpt")
    config = json.loads((folder / "config.json").read_text())
    config.pop("rope_parameters", None)
    config |= {"rotary_pct": 0.25, "rotary_emb_base": 10000}
    (folder / "config.json").write_text(json.dumps(config))
    arch = read_architecture(folder / "config.json")
    assert arch.rotary_dims == 4 and arch.rotary_base == 10000 and arch.parallel_residual


def test_unsupported_architecture_is_named(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(UnsupportedArchitectureError, match="llama"):
        read_architecture(tmp_path / "config.json")


def test_unsupported_attribute_is_named(tmp_path):
    folder = save_checkpoint(gpt2_model(7, activation_function="relu"), tmp_path / "ckpt")
    with pytest.raises(UnsupportedArchitectureError, match="relu"):
        read_architecture(folder / "config.json")


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_truncated_weights_are_corrupt(tmp_path, fmt):
    folder = save_checkpoint(gpt2_model(8), tmp_path / "ckpt", fmt=fmt)
    path = next(folder.glob("*.safetensors")) if fmt == "safetensors" else folder / "pytorch_model.bin"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CorruptCheckpointError, match="cannot read weights"):
        read_state_dict([path])


def test_pickle_that_runs_code_is_refused(tmp_path):
    # weights_only=True: a .bin from the Hub must never execute code while loading.
    import os

    class Exploit:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    path = tmp_path / "pytorch_model.bin"
    torch.save({"weight": Exploit()}, path)
    with pytest.raises(CorruptCheckpointError):
        read_state_dict([path])
    assert not (tmp_path / "pwned").exists()


def test_missing_weight_is_named(tmp_path):
    folder = save_checkpoint(gpt2_model(9), tmp_path / "ckpt")
    state = dict(read_state_dict([folder / "model.safetensors"]))
    del state["transformer.h.1.attn.c_attn.weight"]
    with pytest.raises(CorruptCheckpointError, match=r"h\.1\.attn\.c_attn\.weight"):
        convert(read_architecture(folder / "config.json"), state)
