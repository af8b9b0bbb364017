"""Head effects (inductscan/effects.py): the exact effects against ablations made with forward hooks
on transformers' own model, the attribution estimate on a case whose answer is known in advance,
and the scan's columns with and without --head-effects."""

from __future__ import annotations

import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F

import inductscan
from inductscan import effects
from inductscan.errors import ConfigError
from inductscan.families.registry import make_scorer, read_architecture
from inductscan.icl import IclConfig, IclExamples
from inductscan.plan import ScanConfig, plan
from inductscan.probe import ProbeConfig, TokenSpec, make_probe
from inductscan.runner import run_scan
from inductscan.suites import local_suite
from inductscan.testing import gptj_model, llama_family_model
from inductscan.weights import read_state_dict

from .conftest import gpt2_model, invoke_cli, make_local_suite, neox_model, save_checkpoint

TOLERANCE = 1e-4
EFFECT_COLUMNS = ["gain_effect", "gain_effect_estimate", "icl_effect", "icl_effect_estimate"]


def output_projection(model, layer: int):
    """The module that reads the heads' concatenated outputs (W_O) in transformers' model."""
    kind = model.config.model_type
    if kind == "gpt2":
        return model.transformer.h[layer].attn.c_proj
    if kind == "gpt_neox":
        return model.gpt_neox.layers[layer].attention.dense
    return model.model.layers[layer].self_attn.o_proj


def hooked_losses(model, ids, ablate=None, means=None, seen=None) -> torch.Tensor:
    """Per-token losses (batch, position - 1) in float64 from transformers' model; ``ablate`` =
    (layer, head) replaces that head's slice of W_O's input by ``means[layer]``'s; ``seen`` collects
    each layer's W_O input."""
    n_layers, n_heads = model.config.num_hidden_layers, model.config.num_attention_heads
    handles = []
    for layer in range(n_layers):

        def hook(module, inputs, layer=layer):
            z = inputs[0]
            if seen is not None:
                seen[layer] = z.detach().clone()
            if ablate is not None and ablate[0] == layer:
                d_head = z.shape[-1] // n_heads
                z = z.clone()
                head = ablate[1]
                z[..., head * d_head : (head + 1) * d_head] = means[layer][head * d_head : (head + 1) * d_head]
                return (z,)
            return None

        handles.append(output_projection(model, layer).register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            logits = model(ids).logits.double()
    finally:
        for handle in handles:
            handle.remove()
    return F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")


def gain(losses: torch.Tensor, length: int, bos: bool) -> float:
    """in_context_gain from per-token losses, written out from docs/scores.md."""
    offset = 1 if bos else 0
    first = [p - 1 for p in range(max(offset, 1), offset + length)]
    repeat = [p - 1 for p in range(offset + length, losses.shape[1] + 1)]
    return (losses[:, first].mean() - losses[:, repeat].mean()).item()


def icl_score(losses: torch.Tensor, early: int, late: int) -> float:
    curve = losses.mean(dim=0)
    return (curve[late - 2] - curve[early - 2]).item()


def hooked_effects(model, ids, score) -> np.ndarray:
    """score(ablated losses) - score(clean losses) for every head, by hooks on transformers' model."""
    n_layers, n_heads = model.config.num_hidden_layers, model.config.num_attention_heads
    seen: dict[int, torch.Tensor] = {}
    clean = score(hooked_losses(model, ids, seen=seen))
    means = {layer: z.double().mean(dim=(0, 1)).to(z.dtype) for layer, z in seen.items()}
    found = np.zeros((n_layers, n_heads))
    for layer in range(n_layers):
        for head in range(n_heads):
            found[layer, head] = score(hooked_losses(model, ids, (layer, head), means)) - clean
    return found


def load_native(model, tmp_path):
    folder = save_checkpoint(model, tmp_path / "checkpoint")
    arch = read_architecture(folder / "config.json")
    return make_scorer(arch).load(lambda: read_state_dict(sorted(folder.glob("*.safetensors"))))


CASES = {
    "gpt2": lambda: gpt2_model(1),
    "neox-parallel-no-bos": lambda: neox_model(3, bos_token_id=None),
    "neox-sequential": lambda: neox_model(4, use_parallel_residual=False, rotary_pct=0.5),
    "llama": lambda: llama_family_model("llama", 5),
    "olmo2-post-norm": lambda: llama_family_model("olmo2", 6),
    "mistral-sliding-window": lambda: llama_family_model("mistral", 7),
}


@pytest.mark.parametrize("case", CASES)
def test_exact_effects_equal_ablations_by_hooks_on_transformers_model(tmp_path, case):
    model = CASES[case]()
    weights = load_native(model, tmp_path)
    bos = model.config.bos_token_id
    probe = make_probe(ProbeConfig(length=7, repeats=3, batch=3), TokenSpec(0, 90, bos=bos))
    n_heads = model.config.num_attention_heads
    every = model.config.num_hidden_layers * n_heads

    found = effects.head_effects(weights, effects.probe_target(probe), top=every)
    expected = -hooked_effects(model, probe.ids, lambda losses: gain(losses, 7, bos is not None))  # gain: lost
    assert np.abs(expected).max() > 0.05  # heads that matter: a real test
    np.testing.assert_allclose(found.exact.numpy(), expected, atol=TOLERANCE)

    text = torch.randint(0, 96, (5, 40), generator=torch.Generator().manual_seed(1))
    examples = IclExamples(IclConfig("texts", examples=5, context=40), text, None, "input_ids")
    early, late = examples.config.positions()
    found = effects.head_effects(weights, effects.icl_target(examples), top=every, batch=2)
    expected = hooked_effects(model, text, lambda losses: icl_score(losses, early, late))  # icl_score: rises when lost
    assert np.abs(expected).max() > 0.01
    np.testing.assert_allclose(found.exact.numpy(), expected, atol=TOLERANCE)


def test_with_the_flag_the_icl_columns_are_those_of_the_plain_scan(tmp_path):
    suite = make_local_suite(tmp_path / "suite", seeds=(0,), steps=(0, 5))
    rows = torch.randint(0, 90, (4, 48), generator=torch.Generator().manual_seed(3)).tolist()
    pq.write_table(pa.table({"input_ids": rows}), tmp_path / "texts.parquet")
    icl = IclConfig(str(tmp_path / "texts.parquet"), examples=4, context=40)
    probe = dict(probe_length=7, probe_repeats=3, probe_batch=3)
    refs = plan(local_suite(suite))
    run_scan(refs, tmp_path / "plain", ScanConfig(icl=icl, **probe), progress=False)
    config = ScanConfig(icl=icl, head_effects=True, head_effects_top=1, token_losses=True, **probe)
    summary = run_scan(refs, tmp_path / "effects", config, progress=False)
    assert summary.scored == 2 and not summary.failed
    plain, found = (inductscan.load_results(tmp_path / name) for name in ("plain", "effects"))
    assert found["icl_effect_estimate"].notna().all() and found["icl_score"].notna().all()
    assert found["icl_score"].equals(plain["icl_score"])
    curves = [
        inductscan.load_icl_curves(tmp_path / name).sort_values(["step", "position"]) for name in ("plain", "effects")
    ]
    assert curves[0]["loss"].to_numpy().tobytes() == curves[1]["loss"].to_numpy().tobytes()


def test_only_the_top_heads_by_estimate_get_an_exact_effect(tmp_path):
    weights = load_native(gpt2_model(1), tmp_path)
    probe = make_probe(ProbeConfig(length=7, repeats=3, batch=3), TokenSpec(0, 90, bos=95))
    found = effects.head_effects(weights, effects.probe_target(probe), top=3)
    chosen = set(np.flatnonzero(~np.isnan(found.exact.numpy().ravel())))
    assert chosen == set(np.argsort(-np.abs(found.estimate.numpy().ravel()))[:3])
    assert effects.head_effects(weights, effects.probe_target(probe), top=0).exact.isnan().all()


def test_estimate_sign_and_ranking_on_two_copies_of_one_head(tmp_path):
    # Layer 1's head 2 is a copy of its head 0 (same W_Q, W_K, W_V) writing 3 x what head 0 writes,
    # both small, and heads 1 and 3 write nothing. The gradient reaching head 2's output is then 3 x head 0's
    # and their outputs and means are equal: head 2's estimate is exactly 3 x head 0's, heads 1 and 3's are 0.
    # Small outputs keep the model near linear in them: the estimates match the exact effects' signs
    # and sizes, and rank head 2 first.
    model = gpt2_model(1)
    d_head, n_heads = 16, 4
    attention = model.transformer.h[1].attn
    with torch.no_grad():
        for part in range(3):  # q, k, v blocks of c_attn, each n_heads * d_head wide
            base = part * n_heads * d_head
            source = slice(base, base + d_head)
            copy = slice(base + 2 * d_head, base + 3 * d_head)
            attention.c_attn.weight[:, copy] = attention.c_attn.weight[:, source]
            attention.c_attn.bias[copy] = attention.c_attn.bias[source]
        rows = attention.c_proj.weight  # (n_heads * d_head, d_model): head h's rows h*d_head..
        rows[:d_head] *= 0.02
        rows[d_head : 2 * d_head] = 0.0
        rows[3 * d_head :] = 0.0
        rows[2 * d_head : 3 * d_head] = 3 * rows[:d_head]
    weights = load_native(model, tmp_path)
    probe = make_probe(ProbeConfig(length=7, repeats=3, batch=3), TokenSpec(0, 90, bos=95))
    found = effects.head_effects(weights, effects.probe_target(probe), top=12)
    estimate, exact = found.estimate[1].numpy(), found.exact[1].numpy()
    assert estimate[1] == estimate[3] == 0.0 and abs(exact[[1, 3]]).max() < 1e-6
    assert abs(estimate[0]) > 1e-4
    assert estimate[2] == pytest.approx(3 * estimate[0], rel=1e-4)
    assert np.sign(estimate[[0, 2]]).tolist() == np.sign(exact[[0, 2]]).tolist()
    assert estimate[[0, 2]] == pytest.approx(exact[[0, 2]], rel=0.1)
    assert np.abs(estimate).argmax() == 2 and abs(exact[2]) > abs(exact[0])


def test_the_scan_writes_effect_columns_only_with_the_flag(tmp_path):
    suite = make_local_suite(tmp_path / "suite", seeds=(0,), steps=(0, 5))
    refs = plan(local_suite(suite))
    plain = tmp_path / "plain"
    run_scan(refs, plain, ScanConfig(probe_length=7, probe_repeats=3, probe_batch=3), progress=False)
    rows = inductscan.load_results(plain)
    assert rows[EFFECT_COLUMNS].isna().all().all()
    assert rows["attention_sink"].notna().all()
    timed = inductscan.find_phase_changes(plain, metric="gain_effect")
    assert set(timed["note"]) == {
        "no values: these checkpoints were scanned without --head-effects (scan them into a fresh --out with it)"
    }

    out = tmp_path / "effects"
    config = ScanConfig(probe_length=7, probe_repeats=3, probe_batch=3, head_effects=True, head_effects_top=2)
    summary = run_scan(refs, out, config, progress=False)
    assert summary.scored == 2 and not summary.failed
    again = run_scan(refs, plain, config, progress=False)  # into the folder scanned without the flag
    assert again.already_done == 2 and any("head effects are measured only on" in note for note in again.notes)
    found = inductscan.load_results(out)
    for step in (0, 5):
        at = found.xs(step, level="step")
        assert at["gain_effect"].notna().sum() == 2 and at["gain_effect_estimate"].notna().all()
        assert at[["icl_effect", "icl_effect_estimate"]].isna().all().all()  # no ICL dataset
    from inductscan.results.sql import run_sql

    # the heads outside the top are null in the file, not NaN: SQL's count and max skip them
    ((counted, largest),) = run_sql(out, "SELECT count(gain_effect), max(gain_effect) FROM scores").rows
    assert counted == 4 and largest == found["gain_effect"].max()
    # every other column as without the flag
    others = [name for name in rows.columns if name not in EFFECT_COLUMNS + ["scored_at"]]
    assert found[others].equals(rows[others])
    # timed per head, an exact effect counts only the checkpoints where the head has one
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "Mean of empty slice" on the empty checkpoints
        timed = inductscan.find_phase_changes(out, metric="gain_effect", per_head=True)
    held = found["gain_effect"].notna().groupby(level=["layer", "head"]).sum()
    counted = timed.set_index(["layer", "head"])["checkpoints"]
    valued = held[held > 0].index
    assert len(valued) >= 2 and (counted.loc[valued] == held.loc[valued]).all()


def test_head_effects_refuse_what_they_cannot_do():
    with pytest.raises(ConfigError, match="scan without layer_by_layer$"):
        ScanConfig(head_effects=True, layer_by_layer=True)
    with pytest.raises(ConfigError, match=r"^head_effects_top must be >= 1, got 0"):
        ScanConfig(head_effects=True, head_effects_top=0)


def test_the_transformers_path_is_refused_in_one_line(tmp_path):
    suite = tmp_path / "suite"
    save_checkpoint(gptj_model(1), suite / "seed0" / "checkpoint-0")
    config = ScanConfig(probe_length=7, probe_repeats=3, probe_batch=3, head_effects=True)
    with pytest.raises(ConfigError, match="model_type gptj runs through transformers: scan it without head_effects$"):
        run_scan(plan(local_suite(suite)), tmp_path / "out", config, progress=False)
    assert not list((tmp_path / "out").rglob("*.parquet"))


def test_effects_are_timed_plotted_and_reported_from_the_command_line(tmp_path):
    suite = make_local_suite(tmp_path / "suite", seeds=(0,), steps=(0, 5, 10, 20))
    out = tmp_path / "out"
    options = ("--quiet", "--probe-length", "7", "--probe-repeats", "3", "--probe-batch", "3")
    done = invoke_cli("scan", str(suite), "--out", str(out), *options, "--head-effects", "--head-effects-top", "3")
    assert done.returncode == 0, done.stderr
    rows = inductscan.load_results(out)
    assert rows.groupby("step")["gain_effect"].count().tolist() == [3, 3, 3, 3]

    timed = invoke_cli("phases", str(out), "--metric", "gain_effect")
    assert timed.returncode == 0, timed.stderr
    assert "the best head's gain_effect" in timed.stdout

    drawn = invoke_cli("plot", str(out), "-o", str(tmp_path / "effects.png"), "--kind", "effects")
    assert drawn.returncode == 0, drawn.stderr
    assert (tmp_path / "effects.png").stat().st_size > 10_000
    refused = invoke_cli(
        "plot", str(out), "-o", str(tmp_path / "icl.png"), "--kind", "effects", "--metric", "icl_effect"
    )
    assert refused.returncode == 2 and "scan with --head-effects (and --icl-dataset for icl_effect)" in refused.stderr

    report = invoke_cli("report", str(out), "-o", str(tmp_path / "report.html"))
    assert report.returncode == 0, report.stderr
    assert (
        '"heatmap_metrics":["induction","prefix_matching","previous_token","copying","gain_effect"]'
        in (tmp_path / "report.html").read_text()
    )


def test_the_effects_plot_draws_the_top_heads_exact_effects(tmp_path):
    from inductscan import plots

    suite = make_local_suite(tmp_path / "suite", seeds=(0,), steps=(0, 5, 10))
    refs = plan(local_suite(suite, tokens_per_step=1000))
    config = ScanConfig(probe_length=7, probe_repeats=3, probe_batch=3, head_effects=True, head_effects_top=2)
    run_scan(refs, tmp_path / "out", config, progress=False)
    rows = inductscan.load_results(tmp_path / "out").reset_index()
    figure = plots.plot_effects(rows, heads=3)
    lines = figure.axes[0].get_lines()[:-1]  # the last is the zero line
    largest = rows.groupby(["layer", "head"])["gain_effect"].max().dropna().sort_values(ascending=False)
    assert [line.get_label() for line in lines] == [f"head {layer}.{head}" for layer, head in largest.index[:3]]
    for line in lines:
        layer, head = map(int, line.get_label().removeprefix("head ").split("."))
        own = rows[(rows["layer"] == layer) & (rows["head"] == head) & (rows["step"] > 0)].sort_values("step")
        np.testing.assert_array_equal(line.get_xdata(), own["tokens"].to_numpy())
        np.testing.assert_array_equal(line.get_ydata(), own["gain_effect"].to_numpy())


def test_the_effects_plot_draws_a_run_that_has_effects_and_names_the_others(tmp_path):
    suite = make_local_suite(tmp_path / "suite", seeds=(0, 1, 2), steps=(0, 5))
    out = tmp_path / "out"
    options = ("--quiet", "--probe-length", "7", "--probe-repeats", "3", "--probe-batch", "3")
    done = invoke_cli("scan", str(suite), "--out", str(out), "--seeds", "0", *options)  # the first run: no effects
    assert done.returncode == 0, done.stderr
    for seed in ("1", "2"):
        done = invoke_cli("scan", str(suite), "--out", str(out), "--seeds", seed, *options, "--head-effects")
        assert done.returncode == 0, done.stderr
    drawn = invoke_cli("plot", str(out), "-o", str(tmp_path / "effects.png"), "--kind", "effects")
    assert drawn.returncode == 0, drawn.stderr
    assert "an effects plot draws one run, the first of the 2 with gain_effect" in drawn.stderr
    one = invoke_cli("plot", str(out), "-o", str(tmp_path / "one.png"), "--kind", "effects", "--seed", "2")
    assert one.returncode == 0 and "warning" not in one.stderr, one.stderr


def test_timing_an_effect_says_which_checkpoints_lack_it_or_cover_other_heads(tmp_path):
    suite = make_local_suite(tmp_path / "suite", seeds=(0,), steps=(0, 5, 10, 20))
    refs = sorted(plan(local_suite(suite)), key=lambda ref: ref.step)
    out = tmp_path / "out"
    probe = dict(probe_length=7, probe_repeats=3, probe_batch=3)
    run_scan(refs[:2], out, ScanConfig(**probe, head_effects=True, head_effects_top=2), progress=False)
    run_scan(refs[2:3], out, ScanConfig(**probe, head_effects=True, head_effects_top=3), progress=False)
    run_scan(refs[3:], out, ScanConfig(**probe), progress=False)
    (note,) = inductscan.find_phase_changes(out, metric="gain_effect")["note"]
    assert "1 checkpoint(s) scanned without effects left out" in note
    assert "covers 2, 3 heads at different checkpoints (scans with different --head-effects-top)" in note
    (plain,) = inductscan.find_phase_changes(out, metric="induction")["note"]
    assert "effects" not in plain
