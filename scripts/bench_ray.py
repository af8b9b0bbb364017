"""Ray's overhead per checkpoint: the same toy-suite scan here and on a local Ray cluster.

Scans every checkpoint of the toy suite's first seed twice, side by side in one run: with the
local executor, then as one Ray task per checkpoint on a local 2-CPU Ray cluster (started before
the clock: a cluster is up before a scan is sent to it). Prints both times, their ratio and the
overhead per checkpoint in milliseconds; the last line reads ``ray_overhead_ratio=X.XX``.

    python scripts/bench_ray.py [--toy DIR] [--rounds 2]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--toy", type=Path, help="a built toy suite (default: build one seed in a temporary folder)")
    parser.add_argument("--rounds", type=int, default=2, help="alternate local and Ray this many times; best of each")
    arguments = parser.parse_args()
    import ray

    from inductscan.distributed import RayExecutor, RayOptions
    from inductscan.plan import ScanConfig, plan
    from inductscan.runner import run_scan
    from inductscan.suites import local_suite
    from inductscan.toy import ToyConfig, build_toy_suite

    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    folder = arguments.toy
    if folder is None:
        folder = work / "toy"
        build_toy_suite(folder, [0], ToyConfig(), jobs=1, progress=True)
    refs = plan(local_suite(folder), seeds=[0])
    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    print(f"Ray cluster started in {time.perf_counter() - started:.1f} s (not counted)")
    times: dict[str, list[float]] = {"local": [], "ray": []}
    for _ in range(arguments.rounds):
        for executor, runner in (("local", None), ("ray", RayExecutor(RayOptions()))):
            out = work / f"results-{executor}"
            shutil.rmtree(out, ignore_errors=True)
            started = time.perf_counter()
            summary = run_scan(refs, out, ScanConfig(), progress=False, executor=runner)
            times[executor].append(time.perf_counter() - started)
            assert summary.scored == len(refs) and not summary.failed, summary.failed
    ray.shutdown()
    local, on_ray = min(times["local"]), min(times["ray"])
    n = len(refs)
    print(
        f"{n} toy checkpoints: local {local:.2f} s ({1000 * local / n:.0f} ms each), "
        f"Ray {on_ray:.2f} s ({1000 * on_ray / n:.0f} ms each)"
    )
    print(f"overhead per checkpoint: {1000 * (on_ray - local) / n:.0f} ms")
    print(f"ray_overhead_ratio={on_ray / local:.2f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
