"""The parts of the accelerator path that run on any machine: eigenvalues in background threads,
weights staged as stored and converted where they land, shards hashed in parallel. Nothing here
needs a GPU; the staged path runs on the CPU with the same code, less the page-locking."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import threading

import numpy as np
import pytest
import torch

from inductscan import scores
from inductscan.architecture import read_architecture
from inductscan.checkpoints import hash_files
from inductscan.errors import NonFiniteError
from inductscan.measure import Scorer
from inductscan.probe import ProbeConfig, TokenSpec, make_probe
from inductscan.weights import Buffers, StreamedEmbedding, convert, read_state_dict
from tests.conftest import REPO_ROOT, gpt2_model, neox_model, save_checkpoint


def numpy_ratios(matrices: np.ndarray) -> np.ndarray:
    """sum(lambda) / sum(|lambda|) per matrix, one matrix at a time, on this thread."""
    flat = matrices.reshape(-1, *matrices.shape[-2:])
    out = []
    for matrix in flat:
        eigenvalues = np.linalg.eigvals(matrix)
        out.append(eigenvalues.sum().real / np.abs(eigenvalues).sum())
    return np.array(out).reshape(matrices.shape[:-2])


@pytest.mark.parametrize("at_once", [False, True])
def test_eigenvalue_ratios_in_threads_equal_the_serial_ones(monkeypatch, at_once):
    generator = torch.Generator().manual_seed(0)
    layers = [torch.randn(5, 16, 16, generator=generator, dtype=torch.float64) for _ in range(4)]
    layers[2][1] += 3 * torch.eye(16, dtype=torch.float64)  # a copying head: a ratio near 1
    seen = set()
    original = scores._ratios

    def recorded(*args):
        seen.add(threading.get_ident())
        return original(*args)

    monkeypatch.setattr(scores, "_ratios", recorded)
    with scores.EigenvalueRatios(workers=3, at_once=at_once) as ratios:
        for layer in layers:
            ratios.submit(layer)
        if not at_once:
            assert not seen  # CPU stacks wait for gather
        gathered = ratios.gather()
    assert seen and threading.get_ident() not in seen  # computed off this thread
    for layer, (ratio, finite) in zip(layers, gathered, strict=True):
        assert ratio.shape == (5,) and bool(finite.all())
        np.testing.assert_allclose(ratio.numpy(), numpy_ratios(layer.numpy()), rtol=0, atol=1e-12)
    assert float(gathered[2][0][1]) > 0.5


def test_a_non_finite_matrix_is_flagged_and_the_others_still_scored():
    generator = torch.Generator().manual_seed(1)
    circuits = torch.randn(2, 3, 8, 8, generator=generator, dtype=torch.float64)
    circuits[1, 2, 4, 4] = float("nan")
    with scores.EigenvalueRatios(workers=2) as ratios:
        ratios.submit(circuits)
        [(ratio, finite)] = ratios.gather()
    assert finite.tolist() == [[True, True, True], [True, True, False]]
    assert torch.isnan(ratio[1, 2])
    expected = numpy_ratios(circuits[:1].numpy())
    np.testing.assert_allclose(ratio[0].numpy(), expected[0], rtol=0, atol=1e-12)


def test_eigenvalue_ratio_of_float32_on_one_thread_matches_numpy():
    circuits = torch.randn(7, 12, 12, generator=torch.Generator().manual_seed(2))
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ratio = scores.eigenvalue_ratio(circuits)
    finally:
        torch.set_num_threads(torch_threads)
    np.testing.assert_allclose(ratio.numpy(), numpy_ratios(circuits.double().numpy()), rtol=0, atol=1e-12)


def half_state(model, dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    """The model's weights as a checkpoint stores them (half precision, as the Stanford files)."""
    return {key: value.detach().to(dtype) for key, value in model.state_dict().items()}


@pytest.mark.parametrize("factory", [gpt2_model, neox_model])
@pytest.mark.parametrize("one_layer", [False, True])
@pytest.mark.parametrize("stored", [torch.float16, torch.float32])
def test_weights_staged_as_stored_then_converted_equal_the_direct_copy(tmp_path, factory, one_layer, stored):
    model = factory(3)
    folder = save_checkpoint(model, tmp_path / "ckpt")
    arch = read_architecture(folder / "config.json")
    state = half_state(model, stored)
    staged = Buffers(torch.float32, "cpu", staged=True, one_layer=one_layer)
    direct = convert(arch, state, torch.float32)  # each weight converted by .to(), no buffers
    converted = convert(arch, state, torch.float32, buffers=staged)
    assert len(staged.pinned) == len(staged.tensors)  # every weight went through the staging copy
    assert all(tensor.dtype == stored for tensor in staged.stored.values())
    if stored == torch.float16:  # every weight was moved as stored, then converted
        assert set(staged.stored) == set(staged.tensors)
    for name in ("embed", "positions", "final_ln_weight", "final_ln_bias", "unembed"):
        mine, theirs = getattr(converted, name), getattr(direct, name)
        if isinstance(mine, StreamedEmbedding):  # one layer at a time, an untied embedding is read when needed
            mine = mine.whole()
        assert (mine is None and theirs is None) or torch.equal(mine, theirs), name
    if not one_layer:  # one layer's buffers hold only the last layer
        for mine, theirs in zip(converted.layers, direct.layers, strict=True):
            for field in mine.__dataclass_fields__:
                assert torch.equal(getattr(mine, field), getattr(theirs, field)), field


def test_a_staged_non_finite_weight_is_named(tmp_path):
    model = neox_model(4)
    folder = save_checkpoint(model, tmp_path / "ckpt")
    arch = read_architecture(folder / "config.json")
    state = half_state(model)
    state["gpt_neox.layers.1.mlp.dense_4h_to_h.weight"][3, 5] = float("inf")
    with pytest.raises(NonFiniteError, match=r"gpt_neox\.layers\.1\.mlp\.dense_4h_to_h\.weight.*1 infinite"):
        convert(arch, state, torch.float32, buffers=Buffers(torch.float32, "cpu", staged=True))


@pytest.mark.parametrize("factory", [gpt2_model, neox_model])
def test_staged_scores_equal_direct_scores_whole_and_layer_by_layer(tmp_path, factory):
    folder = save_checkpoint(factory(5), tmp_path / "ckpt", fmt="bin")
    arch = read_architecture(folder / "config.json")
    probe = make_probe(ProbeConfig(length=8, repeats=3, batch=2), TokenSpec(0, arch.vocab_size, bos=None))

    def open_state():
        return read_state_dict([folder / "pytorch_model.bin"])

    reference = Scorer(arch)
    expected = reference.score(reference.load(open_state), probe)
    for layer_by_layer in (False, True):
        scorer = Scorer(arch, layer_by_layer=layer_by_layer)
        scorer.buffers = Buffers(torch.float32, "cpu", one_layer=layer_by_layer, staged=True)
        got = scorer.score(scorer.load(open_state), probe)
        for name, values in expected.heads.items():
            assert torch.allclose(got.heads[name], values, rtol=0, atol=1e-6), (name, layer_by_layer)


def test_shards_hashed_in_parallel_give_hashlib_digests(tmp_path):
    files = []
    for index, size in enumerate((3_000_001, 17, 1 << 20)):
        path = tmp_path / f"model-{index:05d}-of-00003.safetensors"
        path.write_bytes(np.random.default_rng(index).bytes(size))
        files.append(path)
    lines = "".join(f"{path.name}:{hashlib.sha256(path.read_bytes()).hexdigest()}\n" for path in files)
    assert hash_files(files) == hashlib.sha256(lines.encode()).hexdigest()
    assert hash_files(files[:1]) == hashlib.sha256(files[0].read_bytes()).hexdigest()


def load_bench(monkeypatch):
    """scripts/bench.py as a module (scripts are not a package; its dataclasses need it in sys.modules)."""
    spec = importlib.util.spec_from_file_location("bench", REPO_ROOT / "scripts" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench", module)
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_read_floor_reads_every_byte_into_device_memory(tmp_path, monkeypatch):
    bench = load_bench(monkeypatch)
    files = [tmp_path / "model-1.safetensors", tmp_path / "model-2.safetensors"]
    for index, path in enumerate(files):
        path.write_bytes(np.random.default_rng(index).bytes(1_000_003 * (index + 1)))
    read = bench.ReadFloor("cpu")
    for _ in range(2):  # the second call reuses the first one's buffers
        assert read(files) == sum(path.stat().st_size for path in files)
    for path in files:
        assert read.targets[path].numpy().tobytes() == path.read_bytes()
