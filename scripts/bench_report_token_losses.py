"""What the report's token-loss section costs on a seeds suite: page size, time and memory, with the
token losses and without them.

Writes 10 runs x 154 steps (pythia-160m's) of synthetic scores (2 layers x 4 heads, through the
scan's own writer: inductscan.testing.synthetic) and, for each checkpoint, 16 x 511 token losses
(the default ICL settings) through ``inductscan.results.token_losses.write``; then builds the report twice,
each in a process of its own (its peak memory its own): with the token losses, and with their
folder moved aside. Where Chromium is installed, the page with them is opened with #selftest.

    .venv/bin/python scripts/bench_report_token_losses.py [--keep FOLDER]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from inductscan.icl import IclConfig, IclExamples
from inductscan.results import token_losses
from inductscan.suites import get_suite
from inductscan.testing import browser
from inductscan.testing.synthetic import write_synthetic_scan

RUNS, EXAMPLES, CONTEXT, TOKENS_PER_STEP = 10, 16, 512, 2048
BUILD = (
    "import json, resource, sys, time; from inductscan.report import write_report; started = time.perf_counter(); "
    "summary = write_report(sys.argv[1], sys.argv[2]); print(json.dumps({'write_report_s': round(time.perf_counter() "
    "- started, 1), 'report_mb': round(summary.size / 1e6, 2), 'peak_rss_mb': "
    "round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))"
)


def write_results(results: Path) -> None:
    """Synthetic scores, and token losses that fall over training with noise of their own per run."""
    steps = get_suite("pythia-160m").steps
    write_synthetic_scan(results, steps=steps, midpoints={seed: 2000 * 1.2**seed for seed in range(RUNS)})
    ids = torch.zeros(EXAMPLES, CONTEXT, dtype=torch.long)
    examples = IclExamples(IclConfig("synthetic.parquet", examples=EXAMPLES, context=CONTEXT), ids, None, "input_ids")
    generator = np.random.default_rng(0)
    start = generator.uniform(2.0, 10.0, (EXAMPLES, CONTEXT - 1))
    for seed in range(RUNS):
        for index, step in enumerate(steps):
            identity = {"suite": "synthetic", "run": f"seed{seed}", "seed": seed, "step": int(step)}
            identity["tokens"] = int(step) * TOKENS_PER_STEP
            losses = start * (1 - 0.5 * index / len(steps)) + generator.normal(0.0, 0.3, start.shape)
            token_losses.write(results, identity, torch.tensor(losses, dtype=torch.float32), examples)


def build(results: Path, page: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", BUILD, str(results), str(page)], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="Write the results folder and the pages here (kept).")
    arguments = parser.parse_args()
    root = arguments.keep or Path(tempfile.mkdtemp(prefix="bench-report-token-losses-"))
    results = root / "results"
    started = time.perf_counter()
    if not (results / "token_losses").is_dir():
        write_results(results)
    row = {
        "shape": f"{RUNS} runs x 154 steps x {EXAMPLES} x {CONTEXT - 1} token losses",
        "write_results_s": round(time.perf_counter() - started, 1),
    }
    row["with"] = build(results, root / "with.html")
    (results / "token_losses").rename(root / "token_losses-aside")
    try:
        row["without"] = build(results, root / "without.html")
    finally:
        (root / "token_losses-aside").rename(results / "token_losses")
    if browser.find_chromium():
        page = browser.selftest(root / "with.html")
        row["with"] |= {"charts_drawn_ms": round(page["ready_ms"]), "errors": page["errors"], "charts": page["charts"]}
    print(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
