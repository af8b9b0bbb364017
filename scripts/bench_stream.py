"""Does the scan overlap downloading with scoring? Measured side by side in one run.

Makes N Stanford-like checkpoints (GPT-2 vocabulary, both Stanford attention flags, fp16
pytorch_model.bin), serves them from the loopback Hub (inductscan/testing/hub_server.py) in a separate process,
throttled so that downloading them takes about as long as scoring them, and times:

1. scoring alone: every checkpoint scored from files already on disk;
2. downloading alone: the scan's own prefetching downloader, nothing scored;
3. the scan: ``run_scan`` with ``--prefetch K``, downloads and scoring overlapped.

Its last line reads ``overlap_ratio=X.XX``: the scan's time over the larger of 1 and 2 (1.00 is
perfect overlap; no overlap at all would be about 2 when the two are equal).

    python scripts/bench_stream.py [--checkpoints 16] [--layers 4] [--width 256] [--prefetch 2] [--threads N]

A pipeline fills and drains once: with N checkpoints and equal stages, N+1 stage times is the
best a scan can do, a ratio of (N + 1) / N (1.06 for 16). On a machine whose cores scoring keeps
busy, the downloader's own CPU (HTTP, writing, hashing) adds to the scan; ``--threads`` (cores - 1)
leaves it a core, and the script prints each phase's CPU seconds so that this can be seen.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
REPO = "stanford-crfm/alias-gpt2-small-x21"


def make_checkpoints(root: Path, count: int, layers: int, width: int) -> list[Path]:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        n_layer=layers,
        n_embd=width,
        n_head=max(1, width // 64),
        vocab_size=50257,
        n_positions=1024,
        scale_attn_by_inverse_layer_idx=True,
        reorder_and_upcast_attn=True,
    )
    torch.manual_seed(0)  # a benchmark script: the global RNG is fine here
    model = GPT2LMHeadModel(config)
    generator = torch.Generator().manual_seed(0)
    folders = []
    for index in range(count):
        folder = root / f"checkpoint-{index}"
        folder.mkdir(parents=True)
        config.save_pretrained(folder)
        state = {
            key: (value + 0.01 * torch.randn(value.shape, generator=generator)).half()
            for key, value in model.state_dict().items()
        }
        torch.save(state, folder / "pytorch_model.bin")
        folders.append(folder)
    return folders


def serve(root: str, shape: tuple[int, int, int], steps: list[int], throttle, ports) -> None:
    """Make the checkpoints and serve them from the loopback Hub, in a process of its own: it takes
    no GIL time from the scan, and transformers (which imports huggingface_hub, which reads HF_*
    once) is never imported by the benchmark's own process."""
    sys.path.insert(0, str(REPO_ROOT))
    from inductscan.testing.hub_server import HubServer

    folders = make_checkpoints(Path(root), *shape)
    server = HubServer(throttle=throttle.value)
    for step, folder in zip(steps, folders):
        server.add(
            REPO, f"checkpoint-{step}", {name: Path(folder) / name for name in ("config.json", "pytorch_model.bin")}
        )
    with server:
        ports.put((server.endpoint, (folders[0] / "pytorch_model.bin").stat().st_size))
        while True:
            server.state.throttle = throttle.value  # the parent recalibrates it
            time.sleep(0.05)


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU time of a process (this one by default), from /proc."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=16)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--prefetch", type=int, default=2)
    parser.add_argument("--threads", type=int, help="torch threads for scoring (default: torch's, one per core)")
    arguments = parser.parse_args()
    if arguments.threads:
        import torch

        torch.set_num_threads(arguments.threads)
    work = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    from inductscan.suites import get_suite

    steps = list(get_suite("stanford-gpt2-small").steps[: arguments.checkpoints])
    throttle = multiprocessing.Value("d", 50e6)
    ports = multiprocessing.Queue()
    shape = (arguments.checkpoints, arguments.layers, arguments.width)
    server = multiprocessing.Process(
        target=serve, args=(str(work / "made"), shape, steps, throttle, ports), daemon=True
    )
    server.start()
    endpoint, size = ports.get(timeout=600)
    hf_home = work / "hf-home"
    os.environ.update(
        {
            "HF_ENDPOINT": endpoint,
            "HF_HOME": str(hf_home),
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_OFFLINE": "0",
        }
    )

    # huggingface_hub reads HF_* when imported: only now
    from inductscan.pipeline import Prefetcher
    from inductscan.plan import ScanConfig, plan
    from inductscan.runner import run_scan

    config = ScanConfig(prefetch=arguments.prefetch, threads=arguments.threads)
    refs = plan(get_suite("stanford-gpt2-small"), seeds=[21], steps=steps)

    def clear_cache() -> None:
        shutil.rmtree(hf_home / "hub", ignore_errors=True)

    def download_alone() -> float:
        clear_cache()
        started, client, hub = time.perf_counter(), cpu_seconds(), cpu_seconds(server.pid)
        with Prefetcher(refs, prefetch=arguments.prefetch, retry=config.retry) as prefetcher:
            for fetched in prefetcher:
                assert fetched.error is None, fetched.error
                prefetcher.release(fetched)
        cpu["download client"], cpu["download server"] = cpu_seconds() - client, cpu_seconds(server.pid) - hub
        return time.perf_counter() - started

    cpu: dict[str, float] = {}

    # 1. scoring alone: a scan of files already in the cache (fetched untimed, kept); only the
    # announcements (HEADs, no bodies) still go to the server
    clear_cache()
    with Prefetcher(refs, prefetch=arguments.prefetch, keep_weights=True) as prefetcher:
        list(prefetcher)
    started, client = time.perf_counter(), cpu_seconds()
    alone = run_scan(refs, work / "scored-alone", replace(config, keep_weights=True), progress=False)
    assert alone.scored == len(refs) and not alone.failed, alone.failed
    scoring = time.perf_counter() - started
    cpu["scoring"] = cpu_seconds() - client

    # 2. downloading alone, throttled so that it takes about as long as scoring
    downloading = download_alone()
    throttle.value *= downloading / scoring
    time.sleep(0.2)
    downloading = download_alone()

    # 3. the scan, both overlapped
    clear_cache()
    started, client, hub = time.perf_counter(), cpu_seconds(), cpu_seconds(server.pid)
    summary = run_scan(refs, work / "scanned", config, progress=False)
    scan = time.perf_counter() - started
    cpu["scan client"], cpu["scan server"] = cpu_seconds() - client, cpu_seconds(server.pid) - hub
    assert summary.scored == len(refs) and not summary.failed, summary.failed
    server.terminate()
    shutil.rmtree(work, ignore_errors=True)

    slowest = max(scoring, downloading)
    import torch

    print(
        f"{len(refs)} checkpoints of {size / 1e6:.1f} MB ({arguments.layers} layers x {arguments.width}, "
        f"GPT-2 vocabulary), prefetch {arguments.prefetch}, throttle {throttle.value / 1e6:.1f} MB/s per connection, "
        f"{torch.get_num_threads()} torch threads on {os.cpu_count()} cores"
    )
    print(f"scoring alone     {scoring:7.2f} s  ({scoring / len(refs):.3f} s per checkpoint)")
    print(f"downloading alone {downloading:7.2f} s  ({downloading / len(refs):.3f} s per checkpoint)")
    print(f"scan (overlapped) {scan:7.2f} s  (sum of the two: {scoring + downloading:.2f} s)")
    print("CPU seconds (2 cores = 2 s per s): " + ", ".join(f"{name} {value:.1f}" for name, value in cpu.items()))
    print(f"overlap_ratio={scan / slowest:.2f}")


if __name__ == "__main__":
    main()
