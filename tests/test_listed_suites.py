"""Suites whose revisions are read from the Hub: the plan lists a repo's branches (a real HTTP
server on 127.0.0.1 serving huggingface_hub's refs endpoint), parses them with the suite's
grammar, keeps the listing in the results folder, and a re-plan, ``status`` and an offline re-run
use it. Bad input is one line each.

Plans and statuses run in this process (huggingface_hub's endpoint and offline flag are set for
it); scans run in a fresh process, as the other Hub tests do, since huggingface_hub reads the
HF_* variables it downloads with at import.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from huggingface_hub import constants

import inductscan
from inductscan.cli import main
from inductscan.errors import BranchListingError, CheckpointUnavailableError
from inductscan.plan import plan_scan
from inductscan.recent_suites import TINYLLAMA_REPOS
from inductscan.testing.hub_server import HubServer

OLMO2 = "allenai/OLMo-2-0425-1B"
# A handful of branches named as OLMo 2 names them: an early one without the stage prefix, a gap
# (no step 2500), a name that disagrees with 2,097,152 tokens a step (step 2000 is 4.19B tokens,
# not 9B), a stage-2 run, the default branch, and one that no pattern reads.
OLMO2_BRANCHES = (
    "main",
    "step150-tokens1B",
    "stage1-step1000-tokens3B",
    "stage1-step2000-tokens9B",
    "stage1-step3000-tokens7B",
    "stage2-ingredient1-step500-tokens2B",
    "stage1-step3000-unsharded-backup",
)


@pytest.fixture
def hub(monkeypatch):
    """The loopback Hub, as this process's huggingface_hub endpoint, online."""
    with HubServer() as server:
        monkeypatch.setattr(constants, "ENDPOINT", server.endpoint)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        yield server


def serve_names(server: HubServer, repo: str, names, folder) -> None:
    """Serve a branch per name, each holding a small config (a plan fetches no file)."""
    config = folder / "config.json"
    config.write_text("{}")
    for name in names:
        server.add(repo, name, {"config.json": config})


def planned(refs) -> list[tuple]:
    return [(ref.run.name, ref.run.seed, ref.step, ref.tokens) for ref in refs]


def test_olmo2_plan_lists_reads_and_keeps_the_branches(hub, tmp_path):
    serve_names(hub, OLMO2, OLMO2_BRANCHES, tmp_path)
    out = tmp_path / "results"
    refs = plan_scan("olmo-2-1b", results=out)
    assert planned(refs) == [
        ("stage1", 0, 150, 314_572_800),  # 150 x 2,097,152
        ("stage1", 0, 1000, 2_097_152_000),
        ("stage1", 0, 2000, 4_194_304_000),
        ("stage1", 0, 3000, 6_291_456_000),
        ("stage2-ingredient1", 1, 500, 7_340_032_000),  # stage 1's last step, 6,291,456,000, + 500 x 2,097,152
    ]
    assert [ref.revision for ref in refs] == [
        "step150-tokens1B",
        "stage1-step1000-tokens3B",
        "stage1-step2000-tokens9B",
        "stage1-step3000-tokens7B",
        "stage2-ingredient1-step500-tokens2B",
    ]
    kept = json.loads((out / "listings" / "allenai_OLMo-2-0425-1B.json").read_text())
    assert kept["repo"] == OLMO2 and {branch["name"] for branch in kept["branches"]} == set(OLMO2_BRANCHES)
    notes = refs[0].suite.notes
    assert len(notes) == 2
    assert "stage1-step2000-tokens9B: the name says 9 x 1,000,000,000 tokens, the schedule 4,194,304,000" in notes[1]
    assert (
        "1 branch(es) that no pattern of olmo-2-1b's grammar reads, not planned: stage1-step3000-unsharded-backup"
        in notes[0]
    )
    assert hub.refs_requests(OLMO2) == 1


def test_a_replan_status_and_an_offline_plan_use_the_kept_listing(hub, tmp_path, monkeypatch):
    serve_names(hub, OLMO2, OLMO2_BRANCHES, tmp_path)
    out = tmp_path / "results"
    first = planned(plan_scan("olmo-2-1b", results=out, seeds=[0], step_range=(1000, 3000)))
    assert first == planned(plan_scan("olmo-2-1b", results=out, seeds=[0], step_range=(1000, 3000)))
    report = inductscan.status(out, "olmo-2-1b")
    assert [(run.name, run.seed, run.planned, len(run.missing)) for run in report.runs] == [
        ("stage1", 0, 4, 4),
        ("stage2-ingredient1", 1, 1, 1),
    ]
    assert any("stage1-step2000-tokens9B" in line for line in report.lines())
    assert hub.refs_requests(OLMO2) == 1  # listed once; the re-plan and the status read the kept listing
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert planned(plan_scan("olmo-2-1b", results=out, seeds=[0], step_range=(1000, 3000))) == first
    assert hub.refs_requests(OLMO2) == 1


def test_a_step_the_listing_lacks_is_planned_as_known_missing_naming_the_branches_nearby(hub, tmp_path):
    serve_names(hub, OLMO2, OLMO2_BRANCHES, tmp_path)
    refs = plan_scan("olmo-2-1b", results=tmp_path / "results", seeds=[0], steps=[1000, 2500])
    assert [ref.step for ref in refs] == [1000, 2500]
    assert refs[0].missing_upstream is None
    missing = refs[1].missing_upstream
    assert missing is not None and missing.kind == "missing" and missing.source.endswith("allenai_OLMo-2-0425-1B.json")
    with pytest.raises(CheckpointUnavailableError) as raised:
        assert refs[1].revision is None  # raises: the listing names no branch for it
    assert str(raised.value).startswith(f"{OLMO2} lists no branch for stage1 step 2500 (")
    assert str(raised.value).endswith(
        "the nearest: stage1-step1000-tokens3B, stage1-step2000-tokens9B, stage1-step3000-tokens7B"
    )


def one_line(result, *expected: str) -> str:
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert line.startswith("error: ") and "\n" not in line, line
    for text in expected:
        assert text in line, line
    return line


def test_offline_without_a_kept_listing_is_one_line(hub, tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    out = tmp_path / "results"
    out.mkdir()
    result = CliRunner().invoke(main, ["status", str(out), "--suite", "olmo-2-1b"])
    one_line(
        result,
        "HF_HUB_OFFLINE is set and no listing of allenai/OLMo-2-0425-1B's branches is kept in",
        str(out / "listings" / "allenai_OLMo-2-0425-1B.json"),
        "run the same command once with the Hub reachable",
    )
    assert hub.refs_requests(OLMO2) == 0


def test_a_listed_suite_with_the_hub_unreachable_says_that_its_listing_is_needed_first(tmp_path, monkeypatch):
    from .test_offline import closed_port_endpoint

    monkeypatch.setattr(constants, "ENDPOINT", closed_port_endpoint())
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    out = tmp_path / "results"
    result = CliRunner().invoke(main, ["scan", "olmo-2-1b", "--steps", "150", "--out", str(out), "--quiet"])
    line = result.output.strip()
    assert result.exit_code != 0 and "\n" not in line, result.output
    assert f"listing the branches of {OLMO2}: cannot reach the Hub" in line, line
    # offline needs the kept listing, not only cached checkpoints: the hint says to list once online
    assert "run the same command once with the Hub reachable" in line, line
    assert "with the checkpoints already in the cache (" not in line, line


def test_a_listing_kept_for_another_repo_is_refused(hub, tmp_path):
    serve_names(hub, OLMO2, OLMO2_BRANCHES, tmp_path)
    out = tmp_path / "results"
    plan_scan("olmo-2-1b", results=out)
    kept = out / "listings" / "allenai_OLMo-2-0425-1B.json"
    record = json.loads(kept.read_text())
    (out / "listings" / "allenai_OLMo-2-1124-7B.json").write_text(json.dumps(record))  # copied under another name
    result = CliRunner().invoke(main, ["status", str(out), "--suite", "olmo-2-7b"])
    one_line(
        result,
        "allenai_OLMo-2-1124-7B.json lists the branches of 'allenai/OLMo-2-0425-1B', not of allenai/OLMo-2-1124-7B",
    )


def test_a_repo_without_branches_and_one_whose_branches_no_pattern_reads(hub, tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    hub.add_repo(OLMO2)
    result = CliRunner().invoke(main, ["status", str(out), "--suite", "olmo-2-1b"])
    one_line(result, f"{OLMO2} lists no branches (the Hub's listing): olmo-2-1b reads its checkpoints from branches")
    serve_names(hub, OLMO2, ("main", "checkpoint-1000", "v1.0"), tmp_path)
    result = CliRunner().invoke(main, ["status", str(out), "--suite", "olmo-2-1b"])
    one_line(
        result, f"{OLMO2} lists 3 branch(es)", "none of them in olmo-2-1b's grammar stage1-step{step}-tokens{tokens}B"
    )
    assert not (out / "listings").exists()  # a listing nothing can be planned from is not kept
    with pytest.raises(BranchListingError, match="the Hub has no such repository"):
        plan_scan("smollm2-135m", results=out)


def test_fineweb_seeds_name_datasets_and_only_the_chosen_repos_are_listed(hub, tmp_path):
    edu, pile = "HuggingFaceFW/ablation-model-fineweb-edu", "HuggingFaceFW/ablation-model-the-pile"
    serve_names(hub, edu, ("main", "step-001000-2BT", "step-002000-4BT", "step-003000-9BT"), tmp_path)
    serve_names(hub, pile, ("main", "step-001000-2BT"), tmp_path)
    refs = plan_scan("fineweb-ablations", results=tmp_path / "results", seeds=[0])
    assert planned(refs) == [
        ("fineweb-edu", 0, 1000, 2_097_152_000),
        ("fineweb-edu", 0, 2000, 4_194_304_000),
        ("fineweb-edu", 0, 3000, 6_291_456_000),
    ]
    assert [ref.revision for ref in refs] == ["step-001000-2BT", "step-002000-4BT", "step-003000-9BT"]
    assert any("step-003000-9BT: the name says 9 x" in note for note in refs[0].suite.notes)
    assert hub.refs_requests(edu) == 1 and hub.refs_requests(pile) == 0
    shown = CliRunner().invoke(main, ["suites", "fineweb-ablations", "--results", str(tmp_path / "results")])
    assert "seed     0  fineweb-edu  HuggingFaceFW/ablation-model-fineweb-edu: 3 steps (1000 .. 3000)" in shown.output
    assert f"note: {pile}: no listing kept in {tmp_path / 'results'}; a scan or status there lists it" in shown.output
    assert hub.refs_requests(pile) == 0  # `suites` asks the Hub nothing
    both = plan_scan("fineweb-ablations", results=tmp_path / "results", seeds=[0, 4])
    assert [(ref.run.name, ref.run.seed, ref.repo) for ref in both][-1] == ("the-pile", 4, pile)


def test_smollm3_stages_share_one_step_count_and_unread_branches_are_noted(hub, tmp_path):
    repo = "HuggingFaceTB/SmolLM3-3B-checkpoints"
    serve_names(hub, repo, ("main", "stage1-step-40000", "stage2-step-3480000", "lc-4k-to-32k-step-4000"), tmp_path)
    refs = plan_scan("smollm3-3b", results=tmp_path / "results")
    assert planned(refs) == [
        ("SmolLM3-3B", 0, 40_000, 94_371_840_000),  # x 2,359,296: the card's 94.4B a 40,000-step interval
        ("SmolLM3-3B", 0, 3_480_000, 8_210_350_080_000),
    ]
    assert refs[0].suite.notes == (
        f"{repo}: 1 branch(es) that no pattern of smollm3-3b's grammar reads, not planned: lc-4k-to-32k-step-4000",
    )


def test_amber_checkpoints_count_chunks_and_the_last_is_main():
    refs = plan_scan("amber", steps=[0, 358, 359])
    assert [(ref.repo, ref.revision, ref.tokens) for ref in refs] == [
        ("LLM360/Amber", "ckpt_000", 3_497_593_824),  # 1,706,976 examples x 2049 tokens: one chunk
        ("LLM360/Amber", "ckpt_358", 1_255_636_182_816),  # 359 chunks
        ("LLM360/Amber", "main", 1_259_133_776_640),  # 360 chunks: the model card's 1259.13B
    ]


def test_tinyllama_checkpoints_are_repos_of_their_own():
    refs = plan_scan("tinyllama-1.1b", steps=[50_000, 1_431_000])
    assert [(ref.repo, ref.revision, ref.tokens) for ref in refs] == [
        ("TinyLlama/TinyLlama-1.1B-step-50K-105b", "main", 104_857_600_000),  # x 2,097,152: "105b"
        ("TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T", "main", 3_001_024_512_000),  # "3T"
    ]
    assert len(TINYLLAMA_REPOS) == 7


def test_suites_lists_the_new_suites_and_shows_one_with_its_kept_listing(hub, tmp_path):
    runner = CliRunner()
    listing = runner.invoke(main, ["suites"])
    assert listing.exit_code == 0
    lines = {line.split()[0]: line for line in listing.output.splitlines()}
    assert "1 run(s), steps listed" in lines["olmo-2-1b"] and "steps listed, ~118" in lines["smollm3-3b"]
    assert "1 run(s) x 360 steps" in lines["amber"] and "1 run(s) x   7 steps" in lines["tinyllama-1.1b"]
    assert (
        "5 run(s), steps listed" in lines["fineweb-ablations"]
        and "3 run(s) x 154 steps" in lines["pythia-160m-data-seeds"]
    )
    detail = runner.invoke(main, ["suites", "olmo-2-13b"])
    assert detail.exit_code == 0
    for text in (
        "-step{step}-tokens{tokens}B  ->  stage2-ingredient{ingredient}, seed {ingredient}",
        "tokens per step: 8,388,608",
        "known gap: the first ~100k stage-1 steps are not on the Hub",
        "listing: read from the Hub when a scan or status plans the suite",
    ):
        assert text in detail.output
    serve_names(hub, OLMO2, OLMO2_BRANCHES, tmp_path)
    out = tmp_path / "results"
    plan_scan("olmo-2-1b", results=out)
    kept = runner.invoke(main, ["suites", "olmo-2-1b", "--results", str(out)])
    assert (
        "seed     0  stage1  allenai/OLMo-2-0425-1B: 4 steps (150 .. 3000), tokens 314,572,800 .. 6,291,456,000"
        in kept.output
    )
    assert (
        "seed     1  stage2-ingredient1  allenai/OLMo-2-0425-1B: 1 steps (500 .. 500), tokens 7,340,032,000"
        in kept.output
    )
    assert "note: allenai/OLMo-2-0425-1B@stage1-step2000-tokens9B" in kept.output
    assert hub.refs_requests(OLMO2) == 1  # `suites` asks the Hub nothing


# Each listed suite, a few branches named as the suite names them, and what the plan must make of
# them: (run, seed, step, tokens), tokens worked out by hand from docs/suites.md's batch sizes.
EACH_LISTED_SUITE = [
    ("olmo-1b", ("main", "step20000-tokens84B", "step21000-tokens88B"), [
        ("OLMo-1B", 0, 20_000, 83_886_080_000), ("OLMo-1B", 0, 21_000, 88_080_384_000)]),
    ("olmo-7b", ("main", "step452000-tokens2000B", "step556000-tokens2460B"), [
        ("OLMo-7B", 0, 452_000, 1_999_503_360_000), ("OLMo-7B", 0, 556_000, 2_459_566_080_000)]),
    ("olmo-1b-0724", ("main", "step1000-tokens4B", "step2000-tokens8B"), [
        ("OLMo-1B-0724", 0, 1_000, 4_194_304_000), ("OLMo-1B-0724", 0, 2_000, 8_388_608_000)]),
    ("olmo-7b-0424", ("main", "step500-tokens2B", "step1000-tokens4B"), [
        ("OLMo-7B-0424", 0, 500, 2_097_152_000), ("OLMo-7B-0424", 0, 1_000, 4_194_304_000)]),
    ("olmo-2-7b", ("main", "step150-tokens1B", "stage1-step928646-tokens3896B",
                   "stage2-ingredient3-step11931-tokens50B"), [
        ("stage1", 0, 150, 629_145_600), ("stage1", 0, 928_646, 3_895_023_632_384),
        ("stage2-ingredient3", 3, 11_931, 3_945_065_873_408)]),  # stage 1's end + 11,931 x 4,194,304: the total
    ("olmo-2-13b", ("main", "stage1-step100000-tokens839B", "stage1-step200000-tokens1678B",
                    "stage2-ingredient2-step11931-tokens100B"), [
        ("stage1", 0, 100_000, 838_860_800_000), ("stage1", 0, 200_000, 1_677_721_600_000),
        ("stage2-ingredient2", 2, 11_931, 1_777_806_082_048)]),
    ("olmo-3-7b", ("main", "stage1-step1000", "stage1-step2000"), [
        ("stage1", 0, 1_000, 4_194_304_000), ("stage1", 0, 2_000, 8_388_608_000)]),
    ("smollm2-135m", ("main", "step-240000", "step-480000"), [
        ("SmolLM2-135M", 0, 240_000, 251_658_240_000), ("SmolLM2-135M", 0, 480_000, 503_316_480_000)]),
    ("smollm2-360m", ("main", "step-160000"), [("SmolLM2-360M", 0, 160_000, 251_658_240_000)]),
    ("smollm2-1.7b", ("main", "step-125000", "step-250000"), [
        ("SmolLM2-1.7B", 0, 125_000, 262_144_000_000), ("SmolLM2-1.7B", 0, 250_000, 524_288_000_000)]),
]  # fmt: skip


@pytest.mark.parametrize(("suite", "branches", "expected"), EACH_LISTED_SUITE)
def test_each_listed_suite_plans_status_and_replans_offline_from_its_listing(
    hub, tmp_path, monkeypatch, suite, branches, expected
):
    from inductscan.suites import CATALOG

    repo = CATALOG[suite].runs[0].repo
    serve_names(hub, repo, branches, tmp_path)
    out = tmp_path / "results"
    refs = plan_scan(suite, results=out)
    assert planned(refs) == expected
    assert [ref.revision for ref in refs] == [name for name in branches if name != "main"]
    assert refs[0].suite.notes == ()  # every name agrees with the schedule
    report = inductscan.status(out, suite)
    assert sum(run.planned for run in report.runs) == len(expected) and not report.complete
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert planned(plan_scan(suite, results=out)) == expected
    assert hub.refs_requests(repo) == 1
