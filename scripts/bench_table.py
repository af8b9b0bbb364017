"""The results table at full-suite scale: inductscan's table commands beside DuckDB, in one run.

Builds, through the project's own writer (:func:`inductscan.results.write.write_scores`), the table of a
full Stanford CRFM scan: 10 runs (stanford-gpt2-small and -medium, 5 seeds each) x 609 steps x
144 heads, one parquet file per checkpoint, every head's scores drawn so that each run has a
phase change. For ``--scales 1,2,4`` it adds copies of those runs under other suite names (the
2x table holds 20 runs, the 4x 40), written once into the largest folder; the smaller folders
hard-link its files. Then, for each scale and each in its own process (wall time and peak RSS
from ``wait4``):

    import       ``python -c "import inductscan"``
    duckdb-raw   DuckDB over the raw per-checkpoint files: the best head per (suite, run, seed, step)
    compact      ``inductscan compact R`` (folds the per-checkpoint files into one file per run)
    query-best   ``inductscan query R --best --format csv``
    load         ``load_results(R, seed=21, step=slice(1000, 5000))`` (filtered)
    phases       ``inductscan phases R``
    plot         ``inductscan plot R -o timing.png``
    status       ``inductscan status R``
    scan-start   a scan of both Stanford suites into R (1x only: all 6,090 checkpoints done), offline,
                 each suite's first config.json cached: the start-up checks from start to "nothing
                 to do", the interpreter and torch's import (the probe is drawn with it) included

The inductscan commands run on the compacted folder, DuckDB on the raw files (what a user had
before compaction). The last lines compare each command with DuckDB and the 1x table with the
larger ones (cost per million rows).

    python scripts/bench_table.py --work /tmp/bench-table --scales 1,2,4
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

STEP_FROM, STEP_TO, SEED = 1000, 5000, 21
BEST_SQL = """
SELECT suite, run, seed, step, arg_max(layer, induction) AS layer, arg_max(head, induction) AS head,
       max(induction) AS induction
FROM read_parquet('{glob}') GROUP BY ALL ORDER BY suite, run, seed, step
"""


def build(folder: Path, copies: int) -> int:
    """Write ``copies`` x 10 runs x 609 steps x 144 heads through the project's writer; return rows."""
    import torch

    from inductscan.probe import make_probe
    from inductscan.results.write import write_scores
    from inductscan.suites import get_suite

    generator = torch.Generator().manual_seed(0)
    rows = 0
    started = time.perf_counter()
    for copy in range(copies):
        for suite in (get_suite("stanford-gpt2-small"), get_suite("stanford-gpt2-medium")):
            probe = make_probe(suite.probe, _tokens(suite))
            name = suite.name if copy == 0 else f"{suite.name}-copy{copy}"
            for run in suite.runs:
                onset = torch.empty(()).uniform_(3.0, 4.0, generator=generator)  # log10 of the midpoint step
                for step in suite.steps:
                    identity = dict(
                        suite=name,
                        repo=run.repo,
                        run=run.name,
                        revision=suite.revision_of(step),
                        seed=run.seed,
                        step=step,
                        tokens=step * suite.tokens_per_step,
                    )
                    heads = _heads(step, float(onset), generator)
                    gain = float(heads["induction"].max()) * 4
                    checkpoint = {"loss_first": 7.0, "loss_repeat": 7.0 - gain, "in_context_gain": gain}
                    write_scores(
                        folder,
                        identity,
                        heads,
                        checkpoint,
                        weights_sha256=f"{copy}{step:063d}",
                        probe=probe,
                        dtype="float32",
                    )
                    rows += 144
            print(f"  built {name}: {rows:,} rows, {time.perf_counter() - started:.0f} s", flush=True)
    return rows


def _tokens(suite):
    from inductscan.probe import TokenSpec

    return TokenSpec(*suite.token_range, (), suite.bos_token_id)


def _heads(step: int, onset: float, generator) -> dict:
    import math

    import torch

    from inductscan.metrics import HEAD_METRICS

    rise = 1 / (1 + math.exp(-6 * (math.log10(max(step, 1)) - onset)))
    heads = {name: torch.rand(12, 12, generator=generator, dtype=torch.float64) * 0.05 for name in HEAD_METRICS}
    heads["induction"][5, 1] += 0.8 * rise
    heads["induction"][6, 9] += 0.5 * rise
    return heads


def link_subset(source: Path, target: Path, copies: int) -> None:
    """A folder with the first ``copies`` copies of ``source``'s runs, its files hard-linked."""
    suites = ["stanford-gpt2-small", "stanford-gpt2-medium"]
    suites += [f"{name}-copy{copy}" for copy in range(1, copies) for name in suites[:2]]
    for suite in suites:
        shutil.copytree(source / "scores" / suite, target / "scores" / suite, copy_function=os.link)
    shutil.copytree(source / "probes", target / "probes", copy_function=os.link)


def measure(label: str, command: list[str], env: dict | None = None) -> tuple[float, float]:
    """Run ``command``, print and return its wall seconds and peak RSS (GB). This process imports
    nothing heavy: a child's peak RSS starts from the memory it was forked with."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    error = process.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise SystemExit(f"{label} failed ({' '.join(command)}):\n{error}")
    peak = usage.ru_maxrss / 1e6
    notes = " ".join(line[len("note: ") :] for line in error.splitlines() if line.startswith("note: "))
    print(f"  {label:<11} {wall:6.2f} s  {peak:5.2f} GB  {notes}".rstrip(), flush=True)
    return wall, peak


def run_scale(work: Path, scale: int, python: str, inductscan: str) -> dict[str, tuple[float, float]]:
    raw, compacted = work / f"raw-{scale}x", work / f"compacted-{scale}x"
    shutil.rmtree(compacted, ignore_errors=True)
    shutil.copytree(raw, compacted, copy_function=os.link)
    print(f"{scale}x: {sum(1 for _ in raw.glob('scores/*/*/step-*.parquet')):,} files", flush=True)
    duck = f"import duckdb; duckdb.sql({BEST_SQL.format(glob=raw / 'scores/*/*/step-*.parquet')!r}).fetchall()"
    load = (
        "import inductscan; "
        f"inductscan.load_results({str(compacted)!r}, seed={SEED}, step=slice({STEP_FROM}, {STEP_TO}))"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(work / "hf-home")}
    times = {
        "import": measure("import", [python, "-c", "import inductscan"]),
        "duckdb-raw": measure("duckdb-raw", [python, "-c", duck]),
        "compact": measure("compact", [inductscan, "compact", str(compacted)]),
        "query-best": measure("query-best", [inductscan, "query", str(compacted), "--best", "--format", "csv"]),
        "load": measure("load", [python, "-c", load]),
        "phases": measure("phases", [inductscan, "phases", str(compacted)]),
        "plot": measure("plot", [inductscan, "plot", str(compacted), "-o", str(work / "timing.png")]),
        "status": measure("status", [inductscan, "status", str(compacted)], env),
    }
    if scale == 1:  # in a process of its own: this one stays small, and so do the children it forks
        subprocess.run([python, __file__, "--cache-configs", str(work / "hf-home")], check=True)
        times["scan-start"] = measure("scan-start", [python, "-c", SCAN_START, str(compacted)], env)
    return times


SCAN_START = """
import sys, time
from inductscan.plan import ScanConfig, plan_scan
from inductscan.runner import run_scan
started = time.perf_counter()
refs = plan_scan("stanford-gpt2-small") + plan_scan("stanford-gpt2-medium")
summary = run_scan(refs, sys.argv[1], ScanConfig(), progress=False)
assert summary.already_done == len(refs) == 6090, summary.line(sys.argv[1])
print(f"note: (the plan and the checks, after the imports: {time.perf_counter() - started:.2f} s)", file=sys.stderr)
"""


def cache_configs(hf_home: Path) -> None:
    """Each suite's first config.json in a Hub-layout cache, as after any earlier scan: the scan
    reads it (offline) to make the probe it compares with the folder's."""
    from transformers import GPT2Config

    from inductscan.suites import get_suite
    from inductscan.testing import place_in_hub_cache

    for name, shape in (
        ("small", dict(n_layer=12, n_embd=768, n_head=12)),
        ("medium", dict(n_layer=24, n_embd=1024, n_head=16)),
    ):
        suite = get_suite(f"stanford-gpt2-{name}")
        config = hf_home / f"config-{name}.json"
        hf_home.mkdir(parents=True, exist_ok=True)
        GPT2Config(**shape).to_json_file(config)
        if not (hf_home / "hub" / f"models--{suite.runs[0].repo.replace('/', '--')}").is_dir():
            place_in_hub_cache(hf_home, suite.runs[0].repo, suite.revision_of(suite.steps[0]), {"config.json": config})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-table"), help="Where the tables are built.")
    parser.add_argument("--scales", default="1,2,4", help="Table sizes, in multiples of 10 runs x 609 x 144.")
    parser.add_argument("--rebuild", action="store_true", help="Write the tables again even if they exist.")
    parser.add_argument("--cache-configs", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cache_configs:
        cache_configs(args.cache_configs)
        return
    scales = sorted(int(scale) for scale in args.scales.split(","))
    bin_folder = Path(sys.executable).parent
    python, inductscan = sys.executable, str(bin_folder / "inductscan")
    largest = args.work / f"raw-{scales[-1]}x"
    if args.rebuild or not (largest / "scores").is_dir():
        shutil.rmtree(args.work, ignore_errors=True)
        print(f"building {largest} ...", flush=True)
        build(largest, scales[-1])
    for scale in scales[:-1]:
        if not (args.work / f"raw-{scale}x" / "scores").is_dir():
            link_subset(largest, args.work / f"raw-{scale}x", scale)
    results = {scale: run_scale(args.work, scale, python, inductscan) for scale in scales}
    print("\nratio to DuckDB over the raw files (wall time):")
    for scale, times in results.items():
        duck = times["duckdb-raw"][0]
        ratios = "  ".join(f"{name}={wall / duck:.2f}" for name, (wall, _) in times.items() if name != "duckdb-raw")
        print(f"  {scale}x: {ratios}")
    print("\nseconds per million rows (rows = scale x 10 x 609 x 144):")
    for name in results[scales[0]]:
        per = [results[scale][name][0] / (scale * 0.87696) for scale in scales if name in results[scale]]
        print(f"  {name:<11} " + "  ".join(f"{scale}x={value:.2f}" for scale, value in zip(scales, per)))
    first = results[scales[0]]
    print(
        f"summary scale={scales[0]}x query_best_s={first['query-best'][0]:.2f} "
        f"query_best_vs_duckdb={first['query-best'][0] / first['duckdb-raw'][0]:.2f} "
        f"query_best_peak_gb={first['query-best'][1]:.2f} "
        f"load_vs_duckdb={first['load'][0] / first['duckdb-raw'][0]:.2f} "
        f"phases_vs_duckdb={first['phases'][0] / first['duckdb-raw'][0]:.2f} "
        + (f"scan_start_s={first['scan-start'][0]:.2f}" if "scan-start" in first else "")
    )


if __name__ == "__main__":
    main()
