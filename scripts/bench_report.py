"""The report of a full Stanford suite: its size, how long it takes to build, and how soon it is drawn.

Writes 10 runs x 609 steps (stanford-gpt2-small's) x 144 heads (12 x 12) of synthetic scores, with
ICL curves, through the scan's own writer (inductscan.testing.synthetic), then times
``inductscan.write_report`` and, where Chromium is installed, opens the page in headless Chromium
with #selftest and reads the time at which every chart was drawn.

    .venv/bin/python scripts/bench_report.py [--keep FOLDER]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

from inductscan.report import write_report
from inductscan.suites import get_suite
from inductscan.testing import browser
from inductscan.testing.synthetic import write_synthetic_scan

RUNS, LAYERS, HEADS = 10, 12, 12


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="Write the results folder and the page here (kept).")
    arguments = parser.parse_args()
    root = arguments.keep or Path(tempfile.mkdtemp(prefix="bench-report-"))
    results = root / "results"
    steps = get_suite("stanford-gpt2-small").steps
    started = time.perf_counter()
    if not (results / "scores").is_dir():
        midpoints = {seed: 2000 * (1.2**seed) for seed in range(RUNS)}
        write_synthetic_scan(results, steps=steps, midpoints=midpoints, layers=LAYERS, heads=HEADS)
    written = time.perf_counter()
    summary = write_report(results, root / "report.html")
    built = time.perf_counter()
    row = {
        "shape": f"{RUNS} runs x {len(steps)} steps x {LAYERS * HEADS} heads",
        "write_results_s": round(written - started, 1),
        "write_report_s": round(built - written, 1),
        "report_mb": round(summary.size / 1e6, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    if browser.find_chromium():
        page = browser.selftest(summary.path)
        row |= {"charts_drawn_ms": round(page["ready_ms"]), "errors": page["errors"], "charts": page["charts"]}
    print(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
