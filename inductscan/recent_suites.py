"""The suites researchers study now, as catalog entries: OLMo 1, 2 and 3, LLM360 Amber, TinyLlama,
SmolLM2 and SmolLM3, and the FineWeb ablation models (PolyPythias sit with Pythia in
:mod:`inductscan.suites`).

Every number is data with its source beside it (model cards, training configs, the checkpoint
lists in allenai/OLMo's ``checkpoints/official/``); what the sources could not confirm says so,
in the entry's ``facts`` (``inductscan suites NAME`` prints them) and in ``docs/suites.md``.
Tokens per step are the training batch in tokens; where only the branch names' rounded counts
backed a batch up, the listing's check of every name against the schedule says whether it holds.

Probe tokens: every family draws from ids [1000, 20000): in these BPE and SentencePiece
vocabularies (50k to 128k ids, ordered by merge rank or piece score) the lowest ids are bytes,
byte fallbacks and the most frequent merges, the highest rare merges, so the middle range is
common whole tokens, as for GPT-2 and Pythia (Olsson et al.). The probe opens with a BOS only
where training put one before documents (TinyLlama's BOS; the FineWeb models' and GPT-2's
``<|endoftext|>``); the others separated documents with an EOS after each and saw no BOS.
"""

from __future__ import annotations

from inductscan.entries import Run, Suite
from inductscan.grammar import BranchPattern, Grammar

COMMON_TOKEN_RANGE = (1000, 20000)
B = 10**9
PROBE_TOKENS_NO_BOS = "probe: ids [1000, 20000), no BOS (documents were separated by an EOS, none began with a BOS)"

# OLMo 1 names every branch stepN-tokensMB (whole billions, rounded).
OLMO1_BRANCHES = Grammar((BranchPattern("step{step}-tokens{tokens}B"),))
# OLMo 2: stage1-stepN-tokensMB; some early stage-1 branches lack the prefix (step150-tokens1B in
# OLMo-2-1124-7B); stage 2 anneals from the end of stage 1 on several data orders ("ingredients"),
# each a run whose seed is its ingredient number.
OLMO2_BRANCHES = Grammar(
    (
        BranchPattern("stage1-step{step}-tokens{tokens}B", run="stage1"),
        BranchPattern("step{step}-tokens{tokens}B", run="stage1"),
        BranchPattern(
            "stage2-ingredient{ingredient}-step{step}-tokens{tokens}B",
            run="stage2-ingredient{ingredient}",
            seed="ingredient",
            continues="stage1",
        ),
    )
)
OLMO3_BRANCHES = Grammar(
    (
        BranchPattern("stage1-step{step}-tokens{tokens}B", run="stage1"),
        BranchPattern("stage1-step{step}", run="stage1"),
    )
)
SMOLLM2_BRANCHES = Grammar((BranchPattern("step-{step}"),))
SMOLLM3_BRANCHES = Grammar((BranchPattern("stage{stage}-step-{step}"),))
FINEWEB_BRANCHES = Grammar((BranchPattern("step-{step}-{tokens}BT"),))


def _listed(name: str, repo: str, run: str, **fields) -> Suite:
    """A suite of one repo whose branches are listed; its catalogued run is ``run``, seed 0."""
    return Suite(name=name, runs=(Run(run, 0, repo),), steps=(), token_range=COMMON_TOKEN_RANGE, **fields)


def olmo1() -> list[Suite]:
    common = dict(grammar=OLMO1_BRANCHES, model_type="olmo", family="OLMo 1")
    no_bos = "vocabulary 50,280 ids (GPT-NeoX-derived), embeddings padded to 50,304; EOS 50279; " + PROBE_TOKENS_NO_BOS
    return [
        _listed(
            "olmo-1b",
            "allenai/OLMo-1B-hf",
            "OLMo-1B",
            description="AI2 OLMo 1B (Dolma), a branch every 1000 steps",
            tokens_per_step=2048 * 2048,
            token_source="2048 sequences x 2048 tokens; branch step20000-tokens84B (model card) agrees",
            total_tokens=738_020 * 2048 * 2048,  # last step in allenai/OLMo checkpoints/official/OLMo-1B.csv
            gaps=("steps 117,850 to 330,000: no checkpoints (allenai/OLMo checkpoints/official/OLMo-1B.csv)",),
            facts=(no_bos,),
            **common,
        ),
        _listed(
            "olmo-7b",
            "allenai/OLMo-7B-hf",
            "OLMo-7B",
            description="AI2 OLMo 7B (Dolma), a branch every 1000 steps",
            tokens_per_step=2160 * 2048,
            token_source="2160 sequences x 2048 tokens; branches step452000-tokens2000B and "
            "step556000-tokens2460B (model card) agree, 4,194,304 a step would not",
            total_tokens=558_223 * 2160 * 2048,  # last step in checkpoints/official/OLMo-7B.csv
            gaps=(
                "steps 5,000 to 40,000: no checkpoints (checkpoints/official/OLMo-7B.csv)",
                "step 557,000 saved by two restarts of the run (the same CSV lists both)",
            ),
            facts=(no_bos,),
            **common,
        ),
        _listed(
            "olmo-1b-0724",
            "allenai/OLMo-1B-0724-hf",
            "OLMo-1B-0724",
            description="AI2 OLMo 1B July 2024 (Dolma 1.7), 3.05T tokens",
            tokens_per_step=4096 * 1024,
            token_source="not confirmed by the sources: inferred from the model card's example branch "
            "step1000-tokens4B (4,194,304 = 1024 x 4096); every branch name is checked against it",
            total_tokens=3_050 * B,  # model card, nominal
            facts=(no_bos, "total tokens: the model card's 3.05T, nominal"),
            **common,
        ),
        _listed(
            "olmo-7b-0424",
            "allenai/OLMo-7B-0424-hf",
            "OLMo-7B-0424",
            description="AI2 OLMo 7B April 2024 (OLMo 1.7, Dolma 1.7), a branch every 500-1000 steps",
            tokens_per_step=1024 * 4096,
            token_source="1024 sequences x 4096 tokens, inferred: checkpoints/official/OLMo-7B-0424.csv ends "
            "at step 477,000 plus 12,000 annealing steps, 489,000 x 4,194,304 = the model card's 2.05T",
            total_tokens=489_000 * 1024 * 4096,
            facts=(no_bos,),
            **common,
        ),
    ]


def olmo2() -> list[Suite]:
    common = dict(grammar=OLMO2_BRANCHES, model_type="olmo2", family="OLMo 2")
    no_bos = (
        "vocabulary 100,278 ids (dolma2, cl100k-based), embeddings padded to 100,352; EOS 100257; OLMo-core's "
        "dolma2 tokenizer config sets no BOS; " + PROBE_TOKENS_NO_BOS
    )
    stage2 = (
        "stage-2 runs (stage2-ingredientI-...) anneal from the last stage-1 branch the repo lists; "
        "their tokens continue from it"
    )
    return [
        _listed(
            "olmo-2-1b",
            "allenai/OLMo-2-0425-1B",
            "stage1",
            description="AI2 OLMo 2 1B (April 2025): stage 1 and its stage-2 annealing runs",
            tokens_per_step=512 * 4096,
            token_source="512 sequences x 4096 tokens; branch stage1-step120000-tokens252B agrees",
            total_tokens=4_050 * B,  # 4T stage 1 + 50B stage 2, nominal
            facts=(no_bos, stage2, "total tokens: 4T + 50B, nominal"),
            **common,
        ),
        _listed(
            "olmo-2-7b",
            "allenai/OLMo-2-1124-7B",
            "stage1",
            description="AI2 OLMo 2 7B (November 2024): stage 1 and its stage-2 annealing runs",
            tokens_per_step=1024 * 4096,
            token_source="1024 sequences x 4096 tokens; branches stage1-step928646-tokens3896B, "
            "step150-tokens1B and stage2-ingredient3-step11931-tokens50B agree",
            total_tokens=(928_646 + 11_931) * 1024 * 4096,  # stage 1's last step + a 50B ingredient
            gaps=(
                "early branches without the stage1- prefix (step150-tokens1B ... step2150-tokens10B)",
                "stage-1 steps 100000, 174000, 317000, 536000, 605000, 632000, 672000 absent "
                "(huggingface.co/allenai/OLMo-2-1124-7B/discussions/6)",
            ),
            facts=(no_bos, stage2),
            **common,
        ),
        _listed(
            "olmo-2-13b",
            "allenai/OLMo-2-1124-13B",
            "stage1",
            description="AI2 OLMo 2 13B (November 2024): stage 1 and its stage-2 annealing runs",
            tokens_per_step=2048 * 4096,
            token_source="2048 sequences x 4096 tokens; branch stage2-ingredient2-step11931-tokens100B agrees",
            total_tokens=5_300 * B,  # 5T stage 1 + a 300B ingredient, nominal
            gaps=("the first ~100k stage-1 steps are not on the Hub (not confirmed by the sources read)",),
            facts=(no_bos, stage2, "total tokens: 5T + 300B, nominal"),
            **common,
        ),
    ]


def olmo3() -> list[Suite]:
    return [
        _listed(
            "olmo-3-7b",
            "allenai/Olmo-3-1025-7B",
            "stage1",
            description="AI2 Olmo 3 7B (October 2025), stage-1 pretraining branches",
            tokens_per_step=1024 * 4096,
            token_source="4,194,304 as catalogued for this suite; not confirmed by the sources read (no "
            "branch name states tokens to check it against)",
            grammar=OLMO3_BRANCHES,
            model_type="olmo3",
            family="Olmo 3",
            facts=(
                "vocabulary dolma2 (100,278 ids, padded to 100,352); " + PROBE_TOKENS_NO_BOS,
                "branch names stage1-stepN as catalogued; stage 2/3 branches are not parsed (names unconfirmed)",
                "total tokens: not catalogued (pass --total-tokens to phases --x fraction)",
            ),
        )
    ]


AMBER_TOKENS_PER_CHUNK = 1_706_976 * 2049  # LLM360/amber-train main.py: examples per chunk x tokens each


def amber() -> Suite:
    """360 checkpoints, one after each of 360 data chunks; checkpoint N has seen N + 1 chunks."""
    return Suite(
        name="amber",
        description="LLM360 Amber 7B, 360 checkpoints (ckpt_000 ... ckpt_358, main = ckpt_359)",
        runs=(Run("Amber", 0, "LLM360/Amber"),),
        steps=tuple(range(360)),
        tokens_per_step=AMBER_TOKENS_PER_CHUNK,
        step_offset=1,
        revision="ckpt_{step:03d}",
        revisions=((359, "main"),),
        token_range=COMMON_TOKEN_RANGE,
        total_tokens=360 * AMBER_TOKENS_PER_CHUNK,  # 1,259.13B, the model card's total
        token_source="a step is a checkpoint: 1,706,976 examples of 2049 tokens a chunk (LLM360/amber-train "
        "main.py, amber-data-prep README); checkpoint N holds N + 1 chunks; 360 chunks = the card's 1259.13B",
        model_type="llama",
        family="LLM360",
        checkpoints=360,
        facts=(
            "vocabulary LLaMA's 32,000 (SentencePiece); data prepared with --eos_text '</s>' and no BOS "
            "(amber-data-prep README); " + PROBE_TOKENS_NO_BOS,
            "the last checkpoint (359) is the main branch (model card)",
        ),
    )


TINYLLAMA_TOKENS_PER_STEP = 1024 * 2048  # model card: "2 million tokens (2048 * 1024)"
# Each intermediate checkpoint is a repo of its own, its step (in thousands) and tokens in its name.
TINYLLAMA_REPOS = (
    (50_000, "TinyLlama/TinyLlama-1.1B-step-50K-105b"),
    (240_000, "TinyLlama/TinyLlama-1.1B-intermediate-step-240k-503b"),
    (480_000, "TinyLlama/TinyLlama-1.1B-intermediate-step-480k-1T"),
    (715_000, "TinyLlama/TinyLlama-1.1B-intermediate-step-715k-1.5T"),
    (955_000, "TinyLlama/TinyLlama-1.1B-intermediate-step-955k-token-2T"),
    (1_195_000, "TinyLlama/TinyLlama-1.1B-intermediate-step-1195k-token-2.5T"),
    (1_431_000, "TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T"),
)


def tinyllama() -> Suite:
    steps = tuple(step for step, _ in TINYLLAMA_REPOS)
    return Suite(
        name="tinyllama-1.1b",
        description="TinyLlama 1.1B (SlimPajama + StarCoder, 3T tokens): 7 intermediate checkpoints, a repo each",
        runs=(Run("TinyLlama-1.1B", 0, TINYLLAMA_REPOS[-1][1], steps=steps, repos=TINYLLAMA_REPOS),),
        steps=steps,
        tokens_per_step=TINYLLAMA_TOKENS_PER_STEP,
        revision="main",
        token_range=COMMON_TOKEN_RANGE,
        bos_token_id=1,
        total_tokens=1_431_000 * TINYLLAMA_TOKENS_PER_STEP,
        token_source="1024 sequences x 2048 tokens (the model card's 2048 * 1024); the repo names round the step "
        "to thousands",
        model_type="llama",
        family="TinyLlama",
        checkpoints=len(steps),
        facts=(
            "vocabulary Llama 2's 32,000; BOS 1 began every document in pretraining (as TinyLlama's "
            "author answered on its GitHub tracker); probe: ids [1000, 20000) after BOS 1",
            "each checkpoint is a repo of its own at revision main",
        ),
    )


def smollm() -> list[Suite]:
    no_bos = "documents separated by an EOS, no BOS (as a SmolLM maintainer answered on its GitHub tracker)"
    sizes = (
        ("135m", "135M", 1_048_576, "the model card", 240_000, 2_000 * B),
        (
            "360m",
            "360M",
            768 * 2048,
            "not confirmed: inferred from the card's ~250B tokens every 160,000 steps",
            160_000,
            4_000 * B,
        ),
        ("1.7b", "1.7B", 2_097_152, "the model card", 125_000, 11_000 * B),
    )
    suites = [
        _listed(
            f"smollm2-{size}",
            f"HuggingFaceTB/SmolLM2-{label}-intermediate-checkpoints",
            f"SmolLM2-{label}",
            description=f"HuggingFace SmolLM2 {label}, a branch every {every:,} steps",
            tokens_per_step=per_step,
            token_source=f"{per_step:,} a step ({source})",
            total_tokens=total,
            grammar=SMOLLM2_BRANCHES,
            model_type="llama",
            family="SmolLM",
            facts=(f"vocabulary 49,152 ids; {no_bos}; probe: ids [1000, 20000), no BOS", "total tokens: nominal"),
        )
        for size, label, per_step, source, every, total in sizes
    ]
    suites.append(
        _listed(
            "smollm3-3b",
            "HuggingFaceTB/SmolLM3-3B-checkpoints",
            "SmolLM3-3B",
            description="HuggingFace SmolLM3 3B, a branch every 40,000 steps through three stages",
            tokens_per_step=2_359_296,
            token_source="2,359,296 a step (the model card); the step counts across stages",
            total_tokens=4_720_000 * 2_359_296,  # the end of stage 3 (model card)
            grammar=SMOLLM3_BRANCHES,
            model_type="smollm3",
            family="SmolLM",
            checkpoints=86 + 19 + 13,  # stages 1-3 (model card); the long-context branches are not parsed
            facts=(
                f"vocabulary 128,256 ids (Llama 3's); {no_bos}; probe: ids [1000, 20000), no BOS",
                "stage 1 to step 3,450,000, stage 2 to 4,200,000, stage 3 to 4,720,000 (model card)",
            ),
        )
    )
    return suites


# The FineWeb ablations: one architecture, one recipe, one run per dataset. A run's seed is its
# place in this list (fixed: new datasets go at its end), so a seed always names the same dataset;
# the run name says which. Repos confirmed on the Hub by the sources read; other siblings are not listed.
FINEWEB_RUNS = (
    ("fineweb-edu", "HuggingFaceFW/ablation-model-fineweb-edu"),
    ("fineweb", "HuggingFaceFW/ablation-model-fineweb-v1"),
    ("c4", "HuggingFaceFW/ablation-model-c4"),
    ("dolma-v1_6", "HuggingFaceFW/ablation-model-dolma-v1_6"),
    ("the-pile", "HuggingFaceFW/ablation-model-the-pile"),
)


def fineweb() -> Suite:
    return Suite(
        name="fineweb-ablations",
        description="HuggingFaceFW ablation models (1.82B Llama, 350B tokens), one run per dataset",
        runs=tuple(Run(name, seed, repo) for seed, (name, repo) in enumerate(FINEWEB_RUNS)),
        steps=(),
        tokens_per_step=1024 * 2048,
        token_source="inferred, 1024 sequences x 2048 tokens: the card's 350B tokens in 167k steps; every "
        "branch name (step-001000-2BT) is checked against it",
        token_range=COMMON_TOKEN_RANGE,
        bos_token_id=50256,
        total_tokens=167_000 * 1024 * 2048,  # the card's 167k steps
        grammar=FINEWEB_BRANCHES,
        model_type="llama",
        family="FineWeb",
        facts=(
            "a run's seed is its dataset's place in the catalog: 0 fineweb-edu, 1 fineweb, 2 c4, 3 dolma-v1_6, "
            "4 the-pile (the runs share one training seed; the dataset is what differs)",
            "GPT-2 tokenizer (50,257 ids); documents separated by <|endoftext|> 50256, as for GPT-2: "
            "probe: ids [1000, 20000) after 50256",
        ),
    )


def recent_suites() -> list[Suite]:
    return [*olmo1(), *olmo2(), *olmo3(), amber(), tinyllama(), *smollm(), fineweb()]
