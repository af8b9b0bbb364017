"""The cost of ``scan --head-effects`` against the plain scan with the same ICL data, side by side.

Makes ``--checkpoints`` random GPT-2-small-shaped checkpoints (12 layers x 768, 12 heads, GPT-2's
vocabulary, fp16 ``pytorch_model.bin`` as the Stanford runs store them) as a local suite, and a
parquet file of ``--examples`` random token sequences of ``--context`` tokens for the ICL score.
Then, alternating, scans the suite into fresh folders (``run_scan``, in this process, the same
settings both ways): plain with ``--icl-dataset``, and with ``--head-effects --head-effects-top K``
as well. The seconds per checkpoint of each, and their ratio, are printed; so is where the time
of the effects goes, from one checkpoint's weights in memory: the plain scoring (probe, ICL losses),
and per target the attribution pass (one forward, one backward) and the exact ablated passes.

    python scripts/bench_effects.py                       # GPT-2 small, 16 x 512, top 8, 2 checkpoints
    python scripts/bench_effects.py --layers 2 --width 128 --heads 4 --vocab 1000 --context 128   # a quick check
    python scripts/bench_effects.py --checkpoints 1 --icl-part   # the ICL part alone, to compare two trees

The last line reads ``effects_ratio=R plain_s_per_ckpt=P effects_s_per_ckpt=E``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from inductscan import effects
from inductscan.families.registry import make_scorer, read_architecture
from inductscan.icl import IclConfig, load_examples
from inductscan.plan import ScanConfig, plan, suite_probe
from inductscan.runner import run_scan
from inductscan.suites import local_suite
from inductscan.testing import save_checkpoint
from inductscan.weights import read_state_dict


def make_suite(root: Path, checkpoints: int, layers: int, width: int, heads: int, vocab: int) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        n_layer=layers, n_embd=width, n_head=heads, vocab_size=vocab, bos_token_id=vocab - 1, eos_token_id=vocab - 1
    )
    for step in range(checkpoints):
        torch.manual_seed(step)  # transformers initialises from the global RNG; a benchmark model
        save_checkpoint(GPT2LMHeadModel(config).eval(), root / "seed0" / f"checkpoint-{step}", fmt="bin")
    return root


def make_texts(path: Path, examples: int, context: int, vocab: int) -> Path:
    generator = torch.Generator().manual_seed(0)
    rows = torch.randint(0, vocab - 1, (examples, context + 8), generator=generator).tolist()
    pq.write_table(pa.table({"input_ids": rows}), path)
    return path


def per_checkpoint(suite: Path, out: Path, config: ScanConfig) -> float:
    refs = plan(local_suite(suite))
    started = time.perf_counter()
    summary = run_scan(refs, out, config, progress=False)
    assert summary.scored == len(refs) and not summary.failed, summary.failed
    return (time.perf_counter() - started) / len(refs)


def breakdown(suite: Path, config: ScanConfig, top: int, icl_only: bool = False) -> list[tuple[str, float]]:
    """Seconds of each part, on the first checkpoint's weights in memory; ``icl_only``: the ICL part
    alone, as a scan with effects runs it (the plain ICL losses, then the ICL target's effects)."""
    folder = suite / "seed0" / "checkpoint-0"
    arch = read_architecture(folder / "config.json")
    scorer = make_scorer(arch, getattr(torch, config.dtype), config.device)
    weights = scorer.load(lambda: read_state_dict([folder / "pytorch_model.bin"]))
    probe = suite_probe(plan(local_suite(suite))[0].suite, arch, config)
    examples = load_examples(config.icl, None)
    parts = []

    def timed(name, work):
        started = time.perf_counter()
        work()
        parts.append((name, time.perf_counter() - started))

    if icl_only:
        icl = effects.icl_target(examples)
        timed(
            f"ICL losses + icl attribution + {top} exact",
            lambda: (scorer.token_losses(weights, examples.ids), effects.head_effects(weights, icl, top=top)),
        )
        return parts
    timed("plain: probe scores", lambda: scorer.score(weights, probe))
    timed("plain: ICL losses", lambda: scorer.token_losses(weights, examples.ids))
    for target in (effects.probe_target(probe), effects.icl_target(examples)):
        timed(f"{target.name}: attribution pass", lambda target=target: effects.head_effects(weights, target, top=0))
        timed(
            f"{target.name}: attribution + {top} exact",
            lambda target=target: effects.head_effects(weights, target, top=top),
        )
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1, help="alternations of plain and effects scans")
    parser.add_argument("--examples", type=int, default=16)
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--vocab", type=int, default=50257)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument(
        "--icl-part",
        action="store_true",
        help="time only the ICL part of one checkpoint's effects (nine tenths of the cost), no scans",
    )
    arguments = parser.parse_args()
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    with tempfile.TemporaryDirectory(prefix="bench-effects-") as temporary:
        root = Path(temporary)
        suite = make_suite(
            root / "suite", arguments.checkpoints, arguments.layers, arguments.width, arguments.heads, arguments.vocab
        )
        texts = make_texts(root / "texts.parquet", arguments.examples, arguments.context, arguments.vocab)
        icl = IclConfig(str(texts), examples=arguments.examples, context=arguments.context)
        plain = ScanConfig(icl=icl, prefetch=0)
        with_effects = ScanConfig(icl=icl, prefetch=0, head_effects=True, head_effects_top=arguments.top)
        if arguments.icl_part:
            ((name, seconds),) = breakdown(suite, with_effects, arguments.top, icl_only=True)
            print(f"icl_part_s={seconds:.2f} ({name}, one checkpoint's weights in memory)")
            return
        times: dict[str, list[float]] = {"plain": [], "effects": []}
        for round_ in range(arguments.rounds):
            for name, config in (("plain", plain), ("effects", with_effects)):
                seconds = per_checkpoint(suite, root / f"{name}-{round_}", config)
                times[name].append(seconds)
                print(f"round {round_}: {name:8s} {seconds:8.2f} s per checkpoint", flush=True)
        for name, seconds in breakdown(suite, with_effects, arguments.top):
            print(f"  {name:34s} {seconds:8.2f} s", flush=True)
    plain_s, effects_s = statistics.median(times["plain"]), statistics.median(times["effects"])
    print(
        f"shape={arguments.layers}x{arguments.width} heads={arguments.heads} vocab={arguments.vocab} "
        f"icl={arguments.examples}x{arguments.context} top={arguments.top} threads={torch.get_num_threads()}"
    )
    print(f"effects_ratio={effects_s / plain_s:.2f} plain_s_per_ckpt={plain_s:.2f} effects_s_per_ckpt={effects_s:.2f}")


if __name__ == "__main__":
    main()
