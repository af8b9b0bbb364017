"""Causal language models outside the native families (GPT-J, GPT-Neo) scanned through transformers'
own model: pattern scores from its attention probabilities, the weight-based scores empty with their
reason recorded once per run, and the commands that read a table working on them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import inductscan
from inductscan.cli import main
from inductscan.errors import UnsupportedArchitectureError
from inductscan.families.registry import read_architecture
from inductscan.testing import gpt_neo_model, gptj_model

from .conftest import make_local_suite, write_json

FACTORIES = {"gptj": gptj_model, "gpt_neo": gpt_neo_model}


def hand_scores(attention: np.ndarray, length: int) -> dict[str, np.ndarray]:
    """The four pattern scores of docs/scores.md by explicit loops; attention (batch, head, P, P),
    the probe with BOS (its first token at position 1)."""
    batch, heads, positions, _ = attention.shape
    induction_q = range(1 + length, positions)
    copies = {q: range(q - length, 0, -length) for q in induction_q}
    found = {name: np.zeros(heads) for name in ("induction", "prefix_matching", "duplicate_token", "previous_token")}
    for h in range(heads):
        a = attention[:, h]
        found["induction"][h] = np.mean([a[b, q, q - length + 1] for b in range(batch) for q in induction_q])
        found["prefix_matching"][h] = np.mean(
            [sum(a[b, q, c + 1] for c in copies[q]) for b in range(batch) for q in induction_q]
        )
        found["duplicate_token"][h] = np.mean(
            [sum(a[b, q, c] for c in copies[q]) for b in range(batch) for q in induction_q]
        )
        found["previous_token"][h] = np.mean([a[b, q, q - 1] for b in range(batch) for q in range(2, positions)])
    return found


@pytest.fixture(params=sorted(FACTORIES))
def scanned(request, tmp_path):
    model_type = request.param
    folder = make_local_suite(tmp_path / "suite", seeds=(0,), steps=(0, 10), factory=FACTORIES[model_type])
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["scan", str(folder), "--out", str(out), "--probe-length", "7", "--quiet"])
    assert result.exit_code == 0, result.output
    return model_type, folder, out, result.output


def test_pattern_scores_equal_the_ones_computed_by_hand_from_output_attentions(scanned):
    model_type, folder, out, _ = scanned
    from transformers import AutoModelForCausalLM

    ids = inductscan.load_probe(out)
    results = inductscan.load_results(out).droplevel(["suite", "run", "seed"])
    for step in (0, 10):
        model = AutoModelForCausalLM.from_pretrained(
            folder / "seed0" / f"checkpoint-{step}", attn_implementation="eager"
        )
        assert model.config.model_type == model_type
        with torch.no_grad():
            attentions = model(ids, output_attentions=True).attentions
        for layer, attention in enumerate(attentions):
            assert attention[:, :, 8:].max(-1).values.mean() > 0.5  # peaked: positions are told apart
            expected = hand_scores(attention.double().numpy(), 7)
            rows = results.loc[(step, layer)]
            for name, values in expected.items():
                np.testing.assert_allclose(rows[name].to_numpy(), values, atol=1e-6, err_msg=f"{step} {layer} {name}")


def test_weight_scores_are_empty_and_the_reason_is_recorded_once_per_run(scanned):
    model_type, _, out, output = scanned
    results = inductscan.load_results(out)
    assert results["copying"].isna().all() and results["induction_logit"].isna().all()
    assert results["induction"].notna().all() and results["loss_repeat"].notna().all()
    reason = f"not defined for model_type {model_type}"
    notes = list((out / "notes").rglob("*.json"))
    assert len(notes) == 1  # one run, one note, however many checkpoints
    record = json.loads(notes[0].read_text())
    assert set(record["unscored"]) == {"copying", "induction_logit"}
    assert all(text.startswith(reason) for text in record["unscored"].values())
    assert [line for line in output.splitlines() if line.startswith("note:")] == [
        f"note: {record['run']}: copying, induction_logit: {record['unscored']['copying']}"
    ]
    assert not (out / "failures").exists() or not list((out / "failures").rglob("*.json"))


def test_phases_and_report_work_on_them(scanned, tmp_path):
    _, _, out, _ = scanned
    runner = CliRunner()
    phases = runner.invoke(main, ["phases", str(out)])
    assert phases.exit_code == 0, phases.output
    assert "seed" in phases.output
    empty = runner.invoke(main, ["phases", str(out), "--metric", "copying"])
    assert empty.exit_code == 0 and "no values: the scan left this score empty" in empty.output, empty.output
    page = tmp_path / "report.html"
    report = runner.invoke(main, ["report", str(out), "-o", str(page)])
    assert report.exit_code == 0, report.output
    assert page.stat().st_size > 10_000


def test_layer_by_layer_is_refused_for_the_transformers_path_and_recorded(tmp_path):
    folder = make_local_suite(tmp_path / "suite", seeds=(0,), steps=(0,), factory=gptj_model)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["scan", str(folder), "--out", str(out), "--layer-by-layer", "--probe-length", "7", "--quiet"]
    )
    assert result.exit_code == 1
    failures = inductscan.load_failures(out)
    assert len(failures) == 1 and "stream layer by layer" in failures["reason"].iloc[0]


@pytest.mark.parametrize(
    "config, message",
    [
        ({"model_type": "nonesuch"}, "model_type 'nonesuch' .* is unknown to transformers"),
        ({"model_type": "t5"}, "model_type 't5' has no causal language model"),
        ({"model_type": "gptj", "auto_map": {"AutoModelForCausalLM": "x.Y"}}, "needs code from the checkpoint"),
    ],
)
def test_what_transformers_cannot_run_as_a_causal_model_is_refused(tmp_path, config, message):
    write_json(tmp_path / "config.json", config)
    with pytest.raises(UnsupportedArchitectureError, match=message):
        read_architecture(tmp_path / "config.json")
