"""What a thread hashing weights beside the forward pass costs it, by the thread's priority.

In one process, inductscan's forward pass on a GPT-2-small-shaped checkpoint is timed alone and
beside a thread that hashes the checkpoint's 326 MB weight file in a loop: at nice 19 (what
``inductscan/idle.py`` gives its threads), under ``SCHED_IDLE``, and at normal priority. Each
line: the fastest and the median of the passes; the rounds interleave the four cases.

    python scripts/idle_thread_cost.py [--work /tmp/profile-scan] [--passes 6] [--rounds 2]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import threading
import time
from pathlib import Path

import torch
from profile_scan import make_suite

CASES = ("alone", "nice 19", "SCHED_IDLE", "normal priority")


def hash_in_loop(data: bytes, case: str, stop: threading.Event) -> None:
    thread = threading.get_native_id()
    if case == "nice 19":
        os.setpriority(os.PRIO_PROCESS, thread, 19)
    elif case == "SCHED_IDLE":
        os.sched_setscheduler(thread, os.SCHED_IDLE, os.sched_param(0))
    view = memoryview(data)
    while not stop.is_set():
        digest = hashlib.sha256()
        for offset in range(0, len(view), 8 << 20):
            digest.update(view[offset : offset + (8 << 20)])
            if stop.is_set():
                return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/profile-scan"))
    parser.add_argument("--passes", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    arguments = parser.parse_args()
    from inductscan.architecture import read_architecture
    from inductscan.measure import Scorer
    from inductscan.model import forward
    from inductscan.plan import ScanConfig, suite_probe
    from inductscan.suites import local_suite
    from inductscan.weights import read_state_dict

    make_suite(arguments.work / "suite", [0, 10])
    folder = arguments.work / "suite" / "checkpoint-10"
    arch = read_architecture(folder / "config.json")
    probe = suite_probe(local_suite(arguments.work / "suite"), arch, ScanConfig())
    weights = Scorer(arch).load(lambda: read_state_dict([folder / "pytorch_model.bin"]))
    logits = torch.empty(*probe.ids.shape, arch.vocab_size)
    data = (folder / "pytorch_model.bin").read_bytes()
    started = time.perf_counter()
    hashlib.sha256(data).hexdigest()
    print(f"hashing the file in line: {time.perf_counter() - started:.3f} s")
    for _ in range(arguments.rounds):
        for case in CASES:
            stop = threading.Event()
            hasher = None if case == "alone" else threading.Thread(target=hash_in_loop, args=(data, case, stop))
            if hasher is not None:
                hasher.start()
            times = []
            with torch.inference_mode():
                for _ in range(arguments.passes):
                    started = time.perf_counter()
                    forward(weights, probe.ids, logits_out=logits)
                    times.append(time.perf_counter() - started)
            stop.set()
            if hasher is not None:
                hasher.join()
            print(f"{case:16} fastest {min(times):.3f} s  median {statistics.median(times):.3f} s", flush=True)


if __name__ == "__main__":
    main()
