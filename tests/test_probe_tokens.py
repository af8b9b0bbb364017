"""The probe's token ids chosen by the user: --probe-tokens LOW:HIGH and --probe-tokens-file, their
record with the results, the refusal of a re-scan with other ids, and one-line errors."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
import torch
from click.testing import CliRunner

import inductscan
from inductscan.cli import main
from inductscan.errors import ConfigError

from .conftest import REPO_ROOT, make_local_suite

PROBE = ["--probe-length", "8", "--probe-batch", "4"]  # the settings of tests/data/results-0.1.0
LEGACY = REPO_ROOT / "tests" / "data" / "results-0.1.0"  # written before the probe's ids could be chosen
BOS = SPECIAL = 95  # the test GPT-2's bos_token_id and eos_token_id (inductscan/testing), vocabulary 96


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def suite(tmp_path):
    return make_local_suite(tmp_path / "suite", seeds=(0,), steps=(0, 10))


def scan(runner, suite, out, *more):
    return runner.invoke(main, ["scan", str(suite), "--out", str(out), *PROBE, "--quiet", *more])


def one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def expected_probe(allowed: list[int], *, length=8, repeats=4, batch=4, seed=0) -> torch.Tensor:
    """docs/scores.md's probe, computed here: `length` uniform draws from the allowed ids by
    torch.Generator(seed), repeated, after BOS."""
    draws = torch.randint(len(allowed), (batch, length), generator=torch.Generator().manual_seed(seed))
    segment = torch.tensor(allowed)[draws]
    return torch.cat([torch.full((batch, 1), BOS), segment.repeat(1, repeats)], dim=1)


def recorded(out) -> dict:
    (probe,) = set(inductscan.load_results(out).probe)
    return json.loads(probe)


def test_a_range_draws_only_its_ids_and_no_special_one(runner, suite, tmp_path):
    assert scan(runner, suite, tmp_path / "default").exit_code == 0
    result = scan(runner, suite, tmp_path / "ranged", "--probe-tokens", "40:96")
    assert result.exit_code == 0 and "2 scored" in result.output, result.output

    ids = inductscan.load_probe(tmp_path / "ranged")
    allowed = [token for token in range(40, 96) if token != SPECIAL]
    assert torch.equal(ids, expected_probe(allowed))
    drawn = set(ids[:, 1:].flatten().tolist())
    assert drawn <= set(range(40, 95)) and SPECIAL not in drawn
    assert min(inductscan.load_probe(tmp_path / "default")[:, 1:].flatten().tolist()) < 40  # the range changed them
    assert {key: recorded(tmp_path / "ranged")[key] for key in ("token_low", "token_high", "excluded", "bos")} == {
        "token_low": 40,
        "token_high": 96,
        "excluded": [SPECIAL],
        "bos": BOS,
    }

    # the Python API takes the same choice, and draws the same probe
    config = inductscan.ScanConfig(probe_length=8, probe_batch=4, probe_tokens=(40, 96))
    inductscan.scan(str(suite), tmp_path / "api", config=config, progress=False)
    assert torch.equal(inductscan.load_probe(tmp_path / "api"), ids)


def test_a_file_s_ids_are_the_only_ids_drawn(runner, suite, tmp_path):
    listed = [7, 11, 13, 17, 19, 23, 29, 31, 37, 41]
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("41 7 11\n13\n\n  17 19 23 29\t31 37 95 7\n")  # spacing, a repeat and a special id
    out = tmp_path / "results"
    result = scan(runner, suite, out, "--probe-tokens-file", str(ids_file))
    assert result.exit_code == 0 and "2 scored" in result.output, result.output

    ids = inductscan.load_probe(out)
    assert torch.equal(ids, expected_probe(listed))
    assert set(ids[:, 1:].flatten().tolist()) <= set(listed)
    lines = "".join(f"{token}\n" for token in sorted(listed + [SPECIAL]))  # `sort -n -u ids.txt | sha256sum`
    digest = hashlib.sha256(lines.encode()).hexdigest()
    assert recorded(out)["token_list_sha256"] == digest
    page = inductscan.write_report(out, tmp_path / "report.html").path.read_text()
    assert f"tokens listed (sha256 {digest[:16]}) [7, 96), BOS 95" in page

    # the same ids written otherwise are the same setting: the scan resumes
    ids_file.write_text("\n".join(map(str, reversed([*listed, SPECIAL]))))
    assert "0 scored, 2 already done" in scan(runner, suite, out, "--probe-tokens-file", str(ids_file)).output
    # other ids are another setting, refused like any other change of the probe
    ids_file.write_text(" ".join(map(str, [*listed, 43])))
    one_line_error(
        scan(runner, suite, out, "--probe-tokens-file", str(ids_file)),
        "other settings",
        "probe token_list_sha256",
        "the same --probe-tokens-file as before",
    )
    one_line_error(scan(runner, suite, out), "other settings", "probe token_list_sha256", "--probe-tokens-file")


def test_a_rescan_with_another_range_is_refused_and_with_the_same_one_resumes(runner, suite, tmp_path):
    out = tmp_path / "results"
    assert scan(runner, suite, out, "--probe-tokens", "40:96").exit_code == 0
    assert "0 scored, 2 already done" in scan(runner, suite, out, "--probe-tokens", "40:96").output
    one_line_error(
        scan(runner, suite, out, "--probe-tokens", "41:96"),
        "other settings",
        "probe token_low 40 there, 41 here",
        "--probe-tokens 40:96 as before",
    )
    one_line_error(scan(runner, suite, out), "probe token_low 40 there, 0 here", "--probe-tokens 40:96")
    assert "0 scored, 2 already done" in scan(runner, suite, out, "--probe-tokens", "40:96").output


def test_a_folder_written_before_the_option_reads_as_the_default(runner, suite, tmp_path):
    legacy = tmp_path / "legacy"
    shutil.copytree(LEGACY, legacy)
    assert "2 scored" in scan(runner, suite, legacy, "--probe-tokens", "0:96").output  # the default's very ids
    one_line_error(scan(runner, suite, legacy, "--probe-tokens", "1:96"), "probe token_low 0 there, 1 here")
    assert "0 scored, 2 already done" in scan(runner, suite, legacy).output


def test_bad_choices_give_one_line(runner, suite, tmp_path):
    out = tmp_path / "results"
    one_line_error(scan(runner, suite, out, "--probe-tokens", "40"), "--probe-tokens must be LOW:HIGH", "'40'")
    one_line_error(scan(runner, suite, out, "--probe-tokens", "50:40"), "0 <= LOW < HIGH")
    one_line_error(scan(runner, suite, out, "--probe-tokens", "a:b"), "integers")
    one_line_error(scan(runner, suite, out, "--probe-tokens", "0:200"), "exceeds the vocabulary", "id < 96")
    one_line_error(scan(runner, suite, out, "--probe-tokens", "88:96"), "leaves 7 distinct token id(s)", "at least 8")

    missing = tmp_path / "nowhere.txt"
    one_line_error(scan(runner, suite, out, "--probe-tokens-file", str(missing)), "nowhere.txt: no such file")
    words = tmp_path / "words.txt"
    words.write_text("1 2 3\n4 five 6\n")
    one_line_error(scan(runner, suite, out, "--probe-tokens-file", str(words)), "line 2", "'five'", "not a token id")
    outside = tmp_path / "outside.txt"
    outside.write_text(" ".join(map(str, range(90, 102))))
    one_line_error(
        scan(runner, suite, out, "--probe-tokens-file", str(outside)),
        "outside the vocabulary (0 <= id < 96)",
        "96, 97, 98, 99, 100 and 1 more",
    )
    few = tmp_path / "few.txt"
    few.write_text("1\n2\n3\n3\n95\n")  # 3 distinct ids once the special one is left out
    one_line_error(scan(runner, suite, out, "--probe-tokens-file", str(few)), "leaves 3 distinct", "at least 8")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    one_line_error(scan(runner, suite, out, "--probe-tokens-file", str(empty)), "lists no token id")
    one_line_error(scan(runner, suite, out, "--probe-tokens", "0:96", "--probe-tokens-file", str(few)), "give one")
    assert not (out / "scores").exists()


@pytest.mark.parametrize(
    "choice",
    [
        {"probe_tokens": (5, 5)},
        {"probe_tokens": (-1, 5)},
        {"probe_tokens": (1, 2, 3)},
        {"probe_token_ids": ()},
        {"probe_token_ids": (1, -2)},
        {"probe_token_ids": (1, 2.0)},
        {"probe_tokens": (0, 9), "probe_token_ids": (1, 2)},
    ],
)
def test_the_python_api_refuses_a_bad_choice(choice):
    with pytest.raises(ConfigError):
        inductscan.ScanConfig(**choice)
