"""The in-context learning score: datasets in, icl_score and loss curves out, checked
against an independent per-position loss computation with transformers."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

import inductscan
from inductscan.cli import main
from inductscan.errors import ConfigError
from inductscan.icl import IclConfig, load_examples, looks_like_path
from tests.conftest import gpt2_model, invoke_cli, run_cli, save_checkpoint

VOCAB = 96  # the tests' GPT-2


def test_positions_scale_with_the_context():
    assert IclConfig("x").positions() == (50, 500)
    assert IclConfig("x", context=64).positions() == (6, 62)
    with pytest.raises(ConfigError, match=r"^context must be >= 21"):
        IclConfig("x", context=20)


def make_suite(root: Path, steps=(0, 10), tokenizer: bool = False) -> Path:
    for step in steps:
        folder = save_checkpoint(gpt2_model(step), root / f"checkpoint-{step}")
        if tokenizer:
            word_level_tokenizer().save_pretrained(folder)
    return root


def word_level_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel({f"w{i}": i for i in range(VOCAB)}, unk_token="w0"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="w0")


def token_file(path: Path, lengths=(70, 64, 80, 30, 100, 66), seed: int = 0) -> Path:
    generator = torch.Generator().manual_seed(seed)
    rows = [torch.randint(0, VOCAB, (n,), generator=generator).tolist() for n in lengths]
    pq.write_table(pa.table({"input_ids": rows, "other": [str(n) for n in lengths]}), path)
    return path


def rows_file(path: Path, rows: list) -> Path:
    pq.write_table(pa.table({"input_ids": rows}), path)
    return path


def independent_curve(checkpoint: Path, ids: torch.Tensor) -> torch.Tensor:
    """Mean loss of predicting tokens 2..C, from transformers' own forward pass and cross-entropy."""
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(checkpoint, attn_implementation="eager").eval()
    with torch.no_grad():
        logits = model(ids).logits.double()
    losses = F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")
    return losses.mean(dim=0)


def scan(suite: Path, out: Path, *options: str, env: dict | None = None):
    """The scan command: in this process, or in a fresh one where ``env`` sets what huggingface_hub
    reads when it is imported (its HF_* variables)."""
    arguments = ("scan", str(suite), "--out", str(out), "--quiet", "--probe-length", "8", *options)
    return invoke_cli(*arguments) if env is None else run_cli(*arguments, env=env)


def test_icl_score_equals_an_independent_per_position_loss(tmp_path):
    suite = make_suite(tmp_path / "suite")
    data = token_file(tmp_path / "tokens.parquet")
    done = scan(suite, tmp_path / "out", "--icl-dataset", str(data), "--icl-context", "64", "--icl-examples", "4")
    assert done.returncode == 0, done.stderr
    stored = json.loads(next((tmp_path / "out" / "icl").glob("*.json")).read_text())
    ids = torch.tensor(stored["ids"])
    assert ids.shape == (4, 64) and stored["icl"]["early"] == 6 and stored["icl"]["late"] == 62
    assert "token 62 of a 64-token context" in stored["icl"]["definition"]
    # the examples are the first 64 tokens of rows long enough, as stored in the file
    rows = [row for row in pq.read_table(data).column("input_ids").to_pylist() if len(row) >= 64]
    assert all(example in [row[:64] for row in rows] for example in ids.tolist())

    results = inductscan.load_results(tmp_path / "out")
    curves = inductscan.load_icl_curves(tmp_path / "out")
    for step in (0, 10):
        expected = independent_curve(suite / f"checkpoint-{step}", ids)
        curve = curves[curves.step == step].sort_values("position")
        assert curve.position.tolist() == list(range(2, 65))
        assert torch.allclose(torch.tensor(curve.loss.to_numpy()), expected, atol=1e-5)
        score = results.xs(step, level="step")["icl_score"].unique()
        assert len(score) == 1 and score[0] == pytest.approx((expected[62 - 2] - expected[6 - 2]).item(), abs=1e-5)
    metadata = pq.read_schema(next((tmp_path / "out" / "scores").rglob("*.parquet"))).metadata
    assert b"minus that of predicting token 6" in metadata[b"inductscan.icl_score"]


def test_the_same_examples_for_every_checkpoint_and_a_seeded_choice(tmp_path):
    suite = make_suite(tmp_path / "suite")
    data = token_file(tmp_path / "tokens.parquet")
    for out in ("a", "b"):
        done = scan(suite, tmp_path / out, "--icl-dataset", str(data), "--icl-context", "64", "--icl-examples", "3")
        assert done.returncode == 0, done.stderr
    a, b = (inductscan.load_results(tmp_path / out) for out in ("a", "b"))
    assert a["icl"].nunique() == 1 and a["icl"].iloc[0] == b["icl"].iloc[0]
    assert (a["icl_score"] == b["icl_score"]).all()


def test_text_is_tokenised_with_the_checkpoints_own_tokenizer(tmp_path):
    suite = make_suite(tmp_path / "suite", tokenizer=True)
    generator = torch.Generator().manual_seed(3)
    texts = [" ".join(f"w{int(i)}" for i in torch.randint(1, VOCAB, (80,), generator=generator)) for _ in range(5)]
    data = tmp_path / "texts.jsonl"
    data.write_text("".join(json.dumps({"text": text}) + "\n" for text in texts))
    done = scan(suite, tmp_path / "out", "--icl-dataset", str(data), "--icl-context", "64", "--icl-examples", "5")
    assert done.returncode == 0, done.stderr
    stored = json.loads(next((tmp_path / "out" / "icl").glob("*.json")).read_text())
    expected = sorted([int(word[1:]) for word in text.split()][:64] for text in texts)
    assert sorted(stored["ids"]) == expected
    assert stored["icl"]["tokenizer"] == str(suite / "checkpoint-0")


def place_dataset_in_cache(datasets_cache: Path, repo: str, data: Path) -> None:
    """What ``load_dataset(repo)`` leaves in the datasets cache, so that it loads again offline:
    the prepared Arrow files under ``namespace___name/default/0.0.0/HASH``."""
    from datasets.packaged_modules.parquet.parquet import Parquet

    namespace, name = repo.split("/")
    builder = Parquet(
        cache_dir=str(datasets_cache / "build"),
        dataset_name=name,
        data_files={"train": str(data)},
        hash="0123456789abcdef",
    )
    builder.download_and_prepare()
    prepared = Path(builder.cache_dir)  # build/NAME/CONFIG/0.0.0/HASH
    target = datasets_cache / f"{namespace}___{name}" / "default" / "0.0.0" / prepared.name
    shutil.copytree(prepared, target)
    shutil.rmtree(datasets_cache / "build")


def test_a_hub_dataset_from_the_cache_offline(tmp_path):
    suite = make_suite(tmp_path / "suite", steps=(0,))
    data = token_file(tmp_path / "tokens.parquet")
    hf_home = tmp_path / "hf"
    place_dataset_in_cache(hf_home / "datasets", "someone/icl-sample", data)
    env = {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    options = ("--icl-context", "64", "--icl-examples", "4")
    done = scan(suite, tmp_path / "hub", "--icl-dataset", "someone/icl-sample", *options, env=env)
    assert done.returncode == 0, done.stderr
    local = scan(suite, tmp_path / "local", "--icl-dataset", str(data), *options)
    assert local.returncode == 0, local.stderr
    hub, here = inductscan.load_results(tmp_path / "hub"), inductscan.load_results(tmp_path / "local")
    assert hub["icl_score"].iloc[0] == here["icl_score"].iloc[0]


@pytest.mark.parametrize(
    ("make", "options", "message"),
    [
        (
            lambda tmp: token_file(tmp / "t.parquet"),
            ("--icl-column", "text"),
            "has no column 'text'; its columns are input_ids, other",
        ),
        (
            lambda tmp: token_file(tmp / "t.parquet", lengths=(30, 40)),
            (),
            "only 0 of the 2 examples of .* have at least 64 tokens",
        ),
        (
            lambda tmp: (tmp / "t.txt").write_text("w1 w2 w3\n") and tmp / "t.txt",
            (),
            "checkpoint-0 has no tokenizer files",
        ),
        (lambda tmp: tmp / "missing.parquet", (), r"^error: no such file: .*missing\.parquet$"),
        (
            lambda tmp: rows_file(tmp / "floats.parquet", [[0.25 * i for i in range(70)]] * 4),
            (),
            r"column 'input_ids' holds 0\.0 where a token id belongs: token ids are whole numbers from 0",
        ),
        (
            lambda tmp: (tmp / "text.parquet").write_text("not parquet\n") and tmp / "text.parquet",
            (),
            r"^error: cannot load the ICL dataset .*text\.parquet.*Parquet magic bytes not found",
        ),
        (
            lambda tmp: rows_file(tmp / "negative.parquet", [[3, -5] + [7] * 68] * 4),
            (),
            r"column 'input_ids' holds -5 where a token id belongs",
        ),
    ],
)
def test_bad_icl_input_is_one_line_and_writes_nothing(tmp_path, make, options, message):
    suite = make_suite(tmp_path / "suite", steps=(0,))
    data = make(tmp_path)
    done = scan(suite, tmp_path / "out", "--icl-dataset", str(data), "--icl-context", "64", *options)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["missing.parquet", "data/missing.jsonl", "./missing", "a/b/c", "~/no-such-dir/x.txt"])
def test_a_missing_local_file_fails_at_once_without_asking_the_hub(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    with pytest.raises(ConfigError) as raised:
        load_examples(IclConfig(name), None)
    assert time.monotonic() - started < 2  # the Hub's retries took 25 s
    assert str(raised.value) == f"no such file: {name}"


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("NeelNanda/pile-10k", False),
        ("wikitext", False),
        ("owner/name", False),
        ("t.parquet", True),
        ("data/t.jsonl", True),
        ("a/b/c", True),
        ("./t", True),
        ("~/t", True),
        ("/tmp/t", True),
        ("owner/", True),
    ],
)
def test_hub_dataset_ids_are_told_from_paths(name, path):
    assert looks_like_path(name) is path


def test_an_icl_context_longer_than_the_model_is_refused(tmp_path):
    suite = make_suite(tmp_path / "suite", steps=(0,))
    data = token_file(tmp_path / "t.parquet", lengths=(100, 100))
    done = scan(suite, tmp_path / "out", "--icl-dataset", str(data), "--icl-context", "90", "--icl-examples", "2")
    assert done.returncode == 2 and "longer than the model's context (64)" in done.stderr
    assert not list((tmp_path / "out").rglob("*.parquet"))


def test_icl_ids_beyond_the_vocabulary_are_refused_before_the_scan_records_anything(tmp_path):
    suite = make_suite(tmp_path / "suite", steps=(0, 10))
    data = rows_file(tmp_path / "t.parquet", [[1] * 70, [VOCAB] + [2] * 69])
    done = scan(suite, tmp_path / "out", "--icl-dataset", str(data), "--icl-context", "64", "--icl-examples", "2")
    assert done.returncode == 2, done.stderr
    assert f"the ICL tokens reach id {VOCAB}, beyond the vocabulary ({VOCAB})" in done.stderr
    assert list((tmp_path / "out").rglob("*")) == []  # no settings/ nor claims/, not even empty


def test_mixing_scans_with_and_without_icl_is_refused(tmp_path):
    suite = make_suite(tmp_path / "suite")
    data = token_file(tmp_path / "t.parquet")
    first = scan(suite, tmp_path / "out", "--steps", "0")
    assert first.returncode == 0, first.stderr
    second = scan(suite, tmp_path / "out", "--icl-dataset", str(data), "--icl-context", "64", "--icl-examples", "2")
    assert second.returncode == 2 and "without the ICL score" in second.stderr


def test_icl_figures_hold_the_table(tmp_path):
    suite = make_suite(tmp_path / "suite", steps=(0, 10, 20))
    data = token_file(tmp_path / "t.parquet")
    done = scan(
        suite,
        tmp_path / "out",
        "--icl-dataset",
        str(data),
        "--icl-context",
        "64",
        "--icl-examples",
        "2",
        "--tokens-per-step",
        "100",
    )
    assert done.returncode == 0, done.stderr
    results = inductscan.load_results(tmp_path / "out")
    figure = inductscan.plot_icl_score(results)
    (line,) = figure.axes[0].get_lines()[:1]
    expected = results.groupby("step")["icl_score"].first()
    assert list(line.get_xdata()) == [1000, 2000]  # tokens; step 0 has no place on a log axis
    assert list(line.get_ydata()) == [expected[10], expected[20]]
    assert "token 62 - loss at token 6" in figure.axes[0].get_ylabel()
    curves = inductscan.load_icl_curves(tmp_path / "out")
    figure = inductscan.plot_icl_curves(curves)
    lines = figure.axes[0].get_lines()
    assert len(lines) == 3 and list(lines[1].get_xdata()) == list(range(2, 65))
    assert list(lines[1].get_ydata()) == curves[curves.step == 10].sort_values("position")["loss"].tolist()
    with pytest.raises(ConfigError, match="no icl_score"):
        inductscan.plot_icl_score(results.assign(icl_score=float("nan")))


@pytest.mark.parametrize("suffix", [".jsonl", ".txt"])
def test_a_file_that_is_not_utf8_is_one_line_naming_the_byte(tmp_path, suffix):
    suite = make_suite(tmp_path / "suite", steps=(0,), tokenizer=True)
    lines = [" ".join(f"w{(i + j) % VOCAB}" for j in range(70)) for i in range(3)]
    if suffix == ".jsonl":
        lines = [json.dumps({"text": line}) for line in lines]
    text = ("\n".join(lines) + "\n").encode()
    offset = len(text) + len("w1 w")
    data = tmp_path / f"texts{suffix}"
    data.write_bytes(text + b"w1 w\xe92 w3\n")  # Latin-1's e-acute in the fourth line
    result = CliRunner().invoke(main, ["scan", str(suite), "--out", str(tmp_path / "out"), "--quiet",
                                       "--icl-dataset", str(data), "--icl-context", "64"])  # fmt: skip
    assert result.exit_code == 2, result.output
    (line,) = [line for line in result.output.splitlines() if line.strip()]
    assert line == f"error: {data} is not valid UTF-8: byte {offset:,} (line 4) is 0xe9 (invalid continuation byte); " \
        "save the file as UTF-8"  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_other_icl_settings_with_the_same_dataset_are_refused_naming_them(tmp_path):
    """The same file, other examples: each setting that changes which tokens are scored is named."""
    suite = make_suite(tmp_path / "suite", steps=(0,))
    data = token_file(tmp_path / "tokens.parquet")
    out = tmp_path / "out"
    settings = {"--icl-context": "32", "--icl-examples": "2", "--icl-seed": "0"}

    def scan_with(**changed: str):
        options = {**settings, **{f"--icl-{name}": value for name, value in changed.items()}}
        arguments = [
            "scan",
            str(suite),
            "--out",
            str(out),
            "--quiet",
            "--probe-length",
            "8",
            "--icl-dataset",
            str(data),
        ]
        return CliRunner().invoke(main, [*arguments, *(word for pair in options.items() for word in pair)])

    assert scan_with().exit_code == 0
    for name, value, named in (
        ("context", "24", "ICL context 32 there, 24 here"),
        ("examples", "3", "ICL examples 2 there, 3 here"),
        ("seed", "1", "ICL seed 0 there, 1 here"),
    ):
        refused = scan_with(**{name: value})
        assert refused.exit_code == 2, (name, refused.output)
        assert "other settings" in refused.output and named in refused.output
        assert "--icl-dataset and the ICL options" in refused.output
    again = scan_with()  # the folder's own settings resume
    assert again.exit_code == 0 and "0 scored, 1 already done" in again.output, again.output
