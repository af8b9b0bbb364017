"""The README's screenshot of the report (docs/report.png), taken by the tests' headless Chromium.

By default of a synthetic scan (three seeds on the toy suite's 70 steps, a phase change in each,
written by the scan's own writer: inductscan.testing.synthetic); --results takes a real results
folder instead, e.g. `make demo`'s build/toy-results.

    .venv/bin/python scripts/report_screenshot.py [--results FOLDER] [--out docs/report.png]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from PIL import Image

from inductscan.report import write_report
from inductscan.testing import browser
from inductscan.testing.synthetic import write_synthetic_scan
from inductscan.toy import ToyConfig

WINDOW = (1280, 1500)  # the header, the phase table and the timing curves, the heatmap's top
WIDTH = 960  # of the PNG, resized


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, help="A results folder (default: a synthetic scan).")
    parser.add_argument("--out", type=Path, default=Path("docs/report.png"))
    arguments = parser.parse_args()
    out = arguments.out.resolve()
    given = None if arguments.results is None else arguments.results.resolve()
    with tempfile.TemporaryDirectory() as temporary:
        os.chdir(temporary)  # the page's title names the folder as given: "results", not a temporary path
        results = given
        if results is None:
            results = Path("results")
            steps = ToyConfig().save_steps()
            write_synthetic_scan(results, steps=steps, midpoints={0: 400, 1: 700, 2: 1200}, layers=3, heads=6)
        page = write_report(results, Path(temporary) / "report.html").path
        raw = Path(temporary) / "raw.png"
        console = browser.screenshot(page, raw, width=WINDOW[0], height=WINDOW[1])
        errors = [message for message in console if "Uncaught" in message]
        if errors:
            raise SystemExit(f"the page had script errors: {errors}")
        image = Image.open(raw).convert("RGB")
        image = image.resize((WIDTH, round(image.height * WIDTH / image.width)), Image.LANCZOS)
        out.parent.mkdir(parents=True, exist_ok=True)
        image.save(out, optimize=True)
    print(f"{out}: {out.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
