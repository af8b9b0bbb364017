"""Branch-name grammars read each suite's published branch names, and the token schedules give
the counts those names round (every expected number below is worked out by hand from the batch
sizes in docs/suites.md, not read from the catalog)."""

from __future__ import annotations

import pytest

from inductscan.entries import Run
from inductscan.errors import GrammarError
from inductscan.grammar import BranchPattern, Grammar, tokens_agree
from inductscan.suites import CATALOG

# (suite, a branch name the suite publishes, run, seed, step, exact tokens at that step)
PUBLISHED = [
    ("olmo-1b", "step20000-tokens84B", "OLMo-1B", 0, 20_000, 83_886_080_000),  # 20000 x 2048 x 2048
    ("olmo-7b", "step556000-tokens2460B", "OLMo-7B", 0, 556_000, 2_459_566_080_000),  # x 2160 x 2048
    ("olmo-7b", "step452000-tokens2000B", "OLMo-7B", 0, 452_000, 1_999_503_360_000),
    ("olmo-2-1b", "stage1-step120000-tokens252B", "stage1", 0, 120_000, 251_658_240_000),  # x 512 x 4096
    ("olmo-2-7b", "stage1-step928646-tokens3896B", "stage1", 0, 928_646, 3_895_023_632_384),  # x 1024 x 4096
    ("olmo-2-7b", "step150-tokens1B", "stage1", 0, 150, 629_145_600),
    ("olmo-2-7b", "stage2-ingredient3-step11931-tokens50B", "stage2-ingredient3", 3, 11_931, 50_042_241_024),
    ("olmo-2-13b", "stage2-ingredient2-step11931-tokens100B", "stage2-ingredient2", 2, 11_931, 100_084_482_048),
    ("olmo-3-7b", "stage1-step1000", "stage1", 0, 1_000, 4_194_304_000),
    ("smollm2-1.7b", "step-125000", "SmolLM2-1.7B", 0, 125_000, 262_144_000_000),  # x 2,097,152
    ("smollm3-3b", "stage1-step-40000", "SmolLM3-3B", 0, 40_000, 94_371_840_000),  # x 2,359,296: the card's 94.4B
    ("fineweb-ablations", "step-001000-2BT", "fineweb-edu", 0, 1_000, 2_097_152_000),
]


@pytest.mark.parametrize(("suite", "name", "run", "seed", "step", "tokens"), PUBLISHED)
def test_each_suite_reads_its_published_branch_names(suite, name, run, seed, step, tokens):
    catalogued = CATALOG[suite]
    parsed = catalogued.grammar.parse(name)
    assert parsed is not None and parsed.step == step and parsed.seed == seed
    assert (parsed.run or catalogued.runs[0].name) == run
    since_stage = catalogued.tokens_of(Run(run, seed, "any"), step)  # a stage-2 name counts its own stage
    assert since_stage == tokens
    assert tokens_agree(since_stage, parsed)


def test_olmo_7b_names_rule_out_the_olmo_1b_batch():
    """OLMo 7B's names fit 2160 x 2048 tokens a step; 2048 x 2048 (OLMo 1B's) would put step
    556000 at 2,332B, not the 2460B its name says."""
    parsed = CATALOG["olmo-7b"].grammar.parse("step556000-tokens2460B")
    assert not tokens_agree(556_000 * 2048 * 2048, parsed)
    assert tokens_agree(556_000 * 2160 * 2048, parsed)


def test_a_name_may_round_down_up_or_to_the_nearest_but_no_further():
    pattern = BranchPattern("step{step}-tokens{tokens}B")
    for named, exact in (("3", 2_097_152_000), ("2", 2_097_152_000), ("4", 4_194_304_000), ("5", 4_194_304_000)):
        assert tokens_agree(exact, pattern.match(f"step1-tokens{named}B")), named
    assert not tokens_agree(4_194_304_000, pattern.match("step1-tokens9B"))
    assert not tokens_agree(2_097_152_000, pattern.match("step1-tokens1B"))  # 1.1B short of the count
    tenths = BranchPattern("step-{step}-{tokens}T", token_unit=10**12)
    assert tokens_agree(2_506_096_640_000, tenths.match("step-1-2.5T"))  # 0.1T is the rounding here
    assert not tokens_agree(2_650_000_000_000, tenths.match("step-1-2.5T"))


def test_patterns_are_tried_in_order_and_unknown_names_read_as_none():
    grammar = CATALOG["olmo-2-1b"].grammar
    assert grammar.parse("stage1-step10-tokens1B").pattern.template.startswith("stage1-")
    assert grammar.parse("step10-tokens1B").run == "stage1"
    for name in ("main", "stage3-step10-tokens1B", "stage1-step10-tokens1B-extra", "step-10"):
        assert grammar.parse(name) is None


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: BranchPattern("step{stepp}-tokens{tokens}B"),
            "grammar 'step{stepp}-tokens{tokens}B': no field {stepp}",
        ),
        (lambda: BranchPattern("ckpt-{ingredient}"), "unknown branch grammar 'ckpt-{ingredient}': it has no {step}"),
        (lambda: BranchPattern("step{step}", run="ingredient{ingredient}"), "has no {ingredient} to name its run"),
        (lambda: BranchPattern("step{step}", seed="stage"), "has no {stage} to name its run or seed"),
        (lambda: Grammar(()), "needs at least one pattern"),
    ],
)
def test_a_bad_grammar_is_one_line(make, message):
    with pytest.raises(GrammarError) as raised:
        make()
    assert message in str(raised.value) and "\n" not in str(raised.value)
