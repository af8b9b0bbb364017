"""Where a GPT-2-small checkpoint's scan time goes, next to the forward pass alone.

Makes 3 GPT-2-small-shaped checkpoints (12 layers x 768, GPT-2 vocabulary, both Stanford
attention flags, fp16 pytorch_model.bin, as the Stanford branches hold) and prints, measured in
one run: the scan per checkpoint, loading, the forward pass alone on preloaded weights (ours and
transformers'), all the scores on preloaded weights, and the profile of the latter.

    python scripts/profile_scan.py [--work /tmp/profile-scan] [--top 15]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import time
from pathlib import Path

import torch


def make_suite(root: Path):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(scale_attn_by_inverse_layer_idx=True, reorder_and_upcast_attn=True)
    if not root.exists():
        torch.manual_seed(0)  # a script: the global RNG is fine here
        model = GPT2LMHeadModel(config)
        for step in (0, 10, 20):
            folder = root / f"checkpoint-{step}"
            folder.mkdir(parents=True)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/profile-scan"))
    parser.add_argument("--top", type=int, default=15)
    arguments = parser.parse_args()
    from transformers import GPT2LMHeadModel

    from inductscan.architecture import read_architecture
    from inductscan.measure import Scorer
    from inductscan.model import forward
    from inductscan.plan import ScanConfig, plan, suite_probe
    from inductscan.runner import run_scan
    from inductscan.suites import local_suite
    from inductscan.weights import read_state_dict

    make_suite(arguments.work / "suite")
    suite = local_suite(arguments.work / "suite")
    out = arguments.work / "results"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    summary = run_scan(plan(suite), out, ScanConfig(), progress=False)
    scan = (time.perf_counter() - started) / summary.scored

    folder = arguments.work / "suite" / "checkpoint-10"
    arch = read_architecture(folder / "config.json")
    probe = suite_probe(suite, arch, ScanConfig())
    scorer = Scorer(arch)
    load = best_of(2, lambda: scorer.load(lambda: read_state_dict([folder / "pytorch_model.bin"])))
    weights = scorer.load(lambda: read_state_dict([folder / "pytorch_model.bin"]))
    logits = torch.empty(*probe.ids.shape, arch.vocab_size)
    own = best_of(3, lambda: forward(weights, probe.ids, logits_out=logits))
    scores = best_of(3, lambda: scorer.score(weights, probe))
    reference = GPT2LMHeadModel.from_pretrained(folder, torch_dtype=torch.float32).eval()
    with torch.inference_mode():
        theirs = best_of(3, lambda: reference(probe.ids))
    floor = min(own, theirs)
    print(f"probe {tuple(probe.ids.shape)}, {torch.get_num_threads()} torch threads")
    print(f"scan per checkpoint          {scan:6.3f} s  ({scan / floor:.2f}x the floor)")
    print(f"load + convert               {load:6.3f} s")
    print(f"forward alone (inductscan)   {own:6.3f} s")
    print(f"forward alone (transformers) {theirs:6.3f} s")
    print(f"all scores, weights loaded   {scores:6.3f} s  ({scores / floor:.2f}x the floor)")
    profile = cProfile.Profile()
    profile.runcall(scorer.score, weights, probe)
    pstats.Stats(profile).sort_stats("cumulative").print_stats(arguments.top)


if __name__ == "__main__":
    main()
