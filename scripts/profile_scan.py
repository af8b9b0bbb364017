"""Where a GPT-2-small checkpoint's scan time goes, next to the forward pass alone.

Makes N GPT-2-small-shaped checkpoints in a local folder (12 layers x 768, GPT-2 vocabulary, both
Stanford attention flags, fp16 pytorch_model.bin, as the Stanford branches hold: a local folder's
files are hashed by the scan, a Hub cache's are trusted by their blob's name) and prints, measured
in one run:

- the scan of the folder, each checkpoint timed through the local executor's ``around`` hook
  (load, score, write; the fetch, which hashes the next files in the machine's idle time, runs
  beside it), and once warm: from the first checkpoint done to the last, over N - 1. The start
  (plan, probe, settings checks) and the end (compaction, same-weights check) are fixed costs of
  a scan, printed apart;
- its floor, the forward pass alone on preloaded weights, logits included (inductscan's own and
  transformers' eager one), timed just before and just after the scan, the faster kept;
- loading and converting one checkpoint, all the scores on loaded weights, and the profile of the
  latter;
- with ``--parts R``, the scan's parts side by side instead, over R rounds in one process (the
  machine may be shared: only what is timed together compares): the forward pass, the scores on
  loaded weights, the load and the scores, the same with another checkpoint's file hashed beside
  it in the idle threads (as the scan hashes the next checkpoint), or after it in line, and the
  hash alone. Each is timed after a pass of its own kind; the medians, and their differences
  (what each part adds), are printed.

    python scripts/profile_scan.py [--work /tmp/profile-scan] [--checkpoints 6] [--top 15]
    python scripts/profile_scan.py --parts 5
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import pstats
import shutil
import time
from pathlib import Path
from statistics import median

import torch


def make_suite(root: Path, steps: list[int]):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(scale_attn_by_inverse_layer_idx=True, reorder_and_upcast_attn=True)
    for step in steps:
        folder = root / f"checkpoint-{step}"
        if (folder / "pytorch_model.bin").is_file():
            continue
        torch.manual_seed(step)  # a script: the global RNG is fine here
        model = GPT2LMHeadModel(config)
        folder.mkdir(parents=True, exist_ok=True)
        config.save_pretrained(folder)
        torch.save({key: value.half() for key, value in model.state_dict().items()}, folder / "pytorch_model.bin")
    return config


def best_of(repeats: int, action) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def hash_in_line(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def parts(rounds: int, scorer, probe, weight_files: list[Path]) -> None:
    """The scan's parts side by side: each action timed after one untimed run of itself, the
    actions taken in turn, ``rounds`` times; medians and what each part adds."""
    from inductscan.checkpoints import WeightsDigest
    from inductscan.model import forward
    from inductscan.weights import read_state_dict

    this, other = weight_files
    loaded = scorer.load(lambda: read_state_dict([this]))
    logits = torch.empty(*probe.ids.shape, scorer.arch.vocab_size)

    def load_and_score():
        scorer.score(scorer.load(lambda: read_state_dict([this])), probe)

    def with_idle_hash():
        digest = WeightsDigest(files=[other])  # starts in the idle threads, as the scan's fetch of the next
        load_and_score()
        digest.result()

    def with_hash_after():
        load_and_score()
        hash_in_line(other)

    actions = {
        "forward (the floor)": lambda: forward(loaded, probe.ids, logits_out=logits),
        "scores, weights loaded": lambda: scorer.score(loaded, probe),
        "load + scores": load_and_score,
        "load + scores, next file hashed beside (idle)": with_idle_hash,
        "load + scores, next file hashed after, in line": with_hash_after,
        "hash of one file, alone": lambda: hash_in_line(other),
    }
    times: dict[str, list[float]] = {name: [] for name in actions}
    with torch.inference_mode():
        for _ in range(rounds):
            for name, action in actions.items():
                action()
                started = time.perf_counter()
                action()
                times[name].append(time.perf_counter() - started)
    medians = {name: median(values) for name, values in times.items()}
    print(f"the scan's parts, side by side: medians of {rounds} rounds, each timed after one of its own kind")
    for name, value in medians.items():
        print(f"  {name:48} {value:6.3f} s  ({' '.join(f'{v:.2f}' for v in times[name])})")
    names = list(medians)
    print("what each part adds")
    for label, (later, earlier) in {
        "the scores over the forward pass": (1, 0),
        "the load": (2, 1),
        "hashing the next file beside, in idle threads": (3, 2),
        "hashing it in line": (4, 2),
    }.items():
        print(f"  {label:48} {medians[names[later]] - medians[names[earlier]]:+6.3f} s")
    print(
        f"parts_scores_over_floor={medians[names[1]] / medians[names[0]]:.2f} "
        f"parts_with_idle_hash_over_floor={medians[names[3]] / medians[names[0]]:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/profile-scan"))
    parser.add_argument("--checkpoints", type=int, default=6)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--parts", type=int, metavar="ROUNDS", help="time the scan's parts side by side instead")
    arguments = parser.parse_args()
    if arguments.checkpoints < 3:
        parser.error("--checkpoints must be at least 3: one to warm up, two to time between")
    from transformers import GPT2LMHeadModel

    from inductscan.architecture import read_architecture
    from inductscan.measure import Scorer
    from inductscan.model import forward
    from inductscan.plan import ScanConfig, plan, suite_probe
    from inductscan.runner import LocalExecutor, run_scan
    from inductscan.suites import local_suite
    from inductscan.weights import read_state_dict

    steps = [10 * index for index in range(arguments.checkpoints)]
    make_suite(arguments.work / "suite", steps)
    suite = local_suite(arguments.work / "suite")
    folder = arguments.work / "suite" / "checkpoint-10"
    arch = read_architecture(folder / "config.json")
    probe = suite_probe(suite, arch, ScanConfig())
    scorer = Scorer(arch)
    if arguments.parts:
        weight_files = [arguments.work / "suite" / f"checkpoint-{step}" / "pytorch_model.bin" for step in steps[1:3]]
        parts(arguments.parts, scorer, probe, weight_files)
        return
    weights = scorer.load(lambda: read_state_dict([folder / "pytorch_model.bin"]))
    logits = torch.empty(*probe.ids.shape, arch.vocab_size)
    reference = GPT2LMHeadModel.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager").eval()

    def floors() -> dict[str, float]:
        with torch.inference_mode():
            return {
                "inductscan": best_of(3, lambda: forward(weights, probe.ids, logits_out=logits)),
                "transformers": best_of(3, lambda: reference(probe.ids)),
            }

    before = floors()
    out = arguments.work / "results"
    shutil.rmtree(out, ignore_errors=True)
    times: list[tuple[float, float]] = []  # each checkpoint's (start, end) of load, score, write

    def around(fetched, process):
        started = time.perf_counter()
        outcome = process()
        times.append((started, time.perf_counter()))
        return outcome

    started = time.perf_counter()
    executor = LocalExecutor(around=around)
    summary = run_scan(plan(suite, steps=steps), out, ScanConfig(), progress=False, executor=executor)
    ended = time.perf_counter()
    after = floors()
    if summary.scored != len(steps):
        raise SystemExit(f"the scan scored {summary.scored} of {len(steps)}: {summary.failed}")
    steady = (times[-1][1] - times[0][1]) / (len(times) - 1)
    each = [end - start for start, end in times[1:]]
    floor = min(min(before.values()), min(after.values()))

    load = best_of(2, lambda: scorer.load(lambda: read_state_dict([folder / "pytorch_model.bin"])))
    weights = scorer.load(lambda: read_state_dict([folder / "pytorch_model.bin"]))
    scores = best_of(3, lambda: scorer.score(weights, probe))
    print(f"probe {tuple(probe.ids.shape)}, {torch.get_num_threads()} torch threads, {len(steps)} checkpoints")
    print(f"scan per checkpoint, once warm {steady:6.3f} s  ({steady / floor:.2f}x the floor)")
    print(f"  each, load + score + write   {median(each):6.3f} s  (median; the fetch and hash run beside it)")
    print(f"  start (plan, probe, checks)  {times[0][0] - started:6.3f} s  (once per scan)")
    print(f"  end (compaction, checks)     {ended - times[-1][1]:6.3f} s  (once per scan)")
    for name in ("inductscan", "transformers"):
        print(f"forward alone ({name + ')':13} {before[name]:6.3f} s before the scan, {after[name]:6.3f} s after")
    print(f"load + convert                 {load:6.3f} s")
    print(f"all scores, weights loaded     {scores:6.3f} s  ({scores / floor:.2f}x the floor)")
    print(f"scan_ratio={steady / floor:.2f} floor_s={floor:.3f}")
    profile = cProfile.Profile()
    profile.runcall(scorer.score, weights, probe)
    pstats.Stats(profile).sort_stats("cumulative").print_stats(arguments.top)


if __name__ == "__main__":
    main()
