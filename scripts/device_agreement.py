"""Do the scan's scores on one device equal those on the CPU? Run after scripts/bench.py.

Scans the checkpoints that scripts/bench.py made (its ``--work`` and ``--shape``) again on the CPU,
into ``WORK/SHAPE/cpu-results``, and compares every score of every head and checkpoint with those
of the benchmark's own scan (``WORK/SHAPE/scan-results``, made on ``--device``). Prints the largest
difference of each score and exits 1 if one exceeds ``--tolerance`` (1e-4, the GPU target).

    python scripts/device_agreement.py --work /tmp/inductscan-bench --shape gpt2-small --checkpoints 2
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
sys.path[:0] = [str(SCRIPTS.parent), str(SCRIPTS)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/inductscan-bench"))
    parser.add_argument("--shape", default="gpt2-small")
    parser.add_argument("--checkpoints", type=int, default=2, help="how many of the benchmark's checkpoints to rescan")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    arguments = parser.parse_args()
    work = arguments.work / arguments.shape
    os.environ.update(HF_HOME=str(work / "hf_home"), HF_HUB_OFFLINE="1")  # before huggingface_hub is imported

    import shutil

    import bench

    from inductscan.metrics import METRICS
    from inductscan.plan import ScanConfig, plan
    from inductscan.results.read import load_results
    from inductscan.runner import run_scan

    suite = bench.suite_of(arguments.shape)
    steps = bench.bench_steps(arguments.shape, arguments.checkpoints)
    out = work / "cpu-results"
    shutil.rmtree(out, ignore_errors=True)
    run_scan(plan(suite, seeds=[suite.runs[0].seed], steps=steps), out, ScanConfig(device="cpu"), progress=False)
    cpu = load_results(out)
    device = load_results(work / "scan-results")
    device = device[device.index.isin(cpu.index)]
    if len(device) != len(cpu) or not len(cpu):
        raise SystemExit(f"the benchmark's scan holds {len(device)} of the {len(cpu)} rows scanned on the CPU")
    worst = 0.0
    for name in (name for name in METRICS if name in cpu.columns and cpu[name].notna().any()):
        difference = float((device[name] - cpu.loc[device.index, name]).abs().max())
        worst = max(worst, difference)
        print(f"{name:20} max |device - cpu| {difference:.2e}")
    print(f"scores_agree={worst <= arguments.tolerance} max_difference={worst:.2e} rows={len(cpu)}")
    sys.exit(0 if worst <= arguments.tolerance else 1)


if __name__ == "__main__":
    main()
