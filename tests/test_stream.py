"""Streaming a Hub suite through huggingface_hub from a real HTTP server on 127.0.0.1, with faults."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import inductscan
from inductscan.suites import get_suite
from inductscan.testing.hub_server import HubHandler, HubServer

from .conftest import REPO_ROOT, gpt2_model, invoke_cli, run_cli

REPO = "stanford-crfm/alias-gpt2-small-x21"


def stanford_checkpoints(root: Path, count: int, *, seed: int = 0) -> list[Path]:
    """``count`` distinct tiny GPT-2s with GPT-2's vocabulary, as Stanford branches hold them
    (config.json + fp16 pytorch_model.bin): one random model, a different perturbation each."""
    model = gpt2_model(
        seed, vocab_size=50257, bos_token_id=50256, eos_token_id=50256, n_positions=128, n_embd=32, n_layer=2, n_head=2
    )
    generator = torch.Generator().manual_seed(seed)
    folders = []
    for index in range(count):
        folder = root / f"made-{index}"
        folder.mkdir(parents=True)
        model.config.save_pretrained(folder)
        state = {
            key: (value + 0.01 * torch.randn(value.shape, generator=generator)).half()
            for key, value in model.state_dict().items()
        }
        torch.save(state, folder / "pytorch_model.bin")
        folders.append(folder)
    return folders


def serve(server: HubServer, step: int, folder: Path, *, weights: bool = True) -> None:
    files = {"config.json": folder / "config.json"}
    if weights:
        files["pytorch_model.bin"] = folder / "pytorch_model.bin"
    server.add(REPO, f"checkpoint-{step}", files)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def hub_env(server: HubServer, hf_home: Path) -> dict:
    return {
        "HF_ENDPOINT": server.endpoint,
        "HF_HOME": str(hf_home),
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }


def weight_blobs(hf_home: Path) -> list[Path]:
    blobs = hf_home / "hub" / f"models--{REPO.replace('/', '--')}" / "blobs"
    return [path for path in blobs.glob("*") if path.stat().st_size > 100_000] if blobs.is_dir() else []


def test_every_fault_kind_through_huggingface_hub(tmp_path):
    made = stanford_checkpoints(tmp_path, 9)
    with HubServer() as server:
        for step, folder in zip((0, 10, 20, 40, 50, 60, 80, 100), made):
            serve(server, step, folder)
        serve(server, 70, made[7], weights=False)  # the branch lacks its weights
        serve(server, 90, made[0])  # the same weights as step 0 (as many pythia-2.8b branches do)
        # step 30: no such branch (as pythia-410m-seed9 step40000)
        server.fault(REPO, "checkpoint-10", "pytorch_model.bin", "drop", times=1)
        server.fault(REPO, "checkpoint-20", "pytorch_model.bin", "error", times=2)
        server.fault(REPO, "checkpoint-40", "pytorch_model.bin", "truncate", times=1)
        server.fault(REPO, "checkpoint-50", "pytorch_model.bin", "wrong-size")
        server.fault(REPO, "checkpoint-60", "pytorch_model.bin", "corrupt")
        server.fault(REPO, "checkpoint-80", "config.json", "error")
        server.fault(REPO, "checkpoint-100", "pytorch_model.bin", "stall", times=1)
        out, hf_home = tmp_path / "results", tmp_path / "hf-home"
        env = {**hub_env(server, hf_home), "HF_HUB_DOWNLOAD_TIMEOUT": "1"}
        result = run_cli(
            "scan",
            "stanford-gpt2-small",
            "--seeds",
            "21",
            "--steps",
            "0,10,20,30,40,50,60,70,80,90,100",
            "--out",
            str(out),
            "--quiet",
            "--retry-backoff",
            "0.01",
            env=env,
        )
        assert result.returncode == 1, result.stderr + result.stdout
        assert "6 scored" in result.stdout and "5 failed or skipped" in result.stdout
        assert server.downloads(REPO, "checkpoint-100", "pytorch_model.bin") == 2  # timed out once, then fetched
        assert server.downloads(REPO, "checkpoint-10", "pytorch_model.bin") == 2  # resumed after the drop
        assert server.downloads(REPO, "checkpoint-60", "pytorch_model.bin") == 4  # refused on every attempt

    frame = inductscan.load_results(out).reset_index()
    assert sorted(set(frame.step)) == [0, 10, 20, 40, 90, 100]
    assert frame.groupby("step").size().eq(2 * 2).all()  # scored exactly once: one row per head
    served = {0: made[0], 10: made[1], 20: made[2], 40: made[3], 90: made[0], 100: made[7]}
    for step, folder in served.items():  # what was scored is exactly what was served
        assert set(frame[frame.step == step].weights_sha256) == {sha256(folder / "pytorch_model.bin")}
    failures = inductscan.load_failures(out).set_index("step")
    assert sorted(failures.index) == [30, 50, 60, 70, 80]
    assert failures.loc[30, "kind"] == "skipped" and "no such revision" in failures.loc[30, "reason"]
    assert failures.loc[50, "kind"] == "failed" and "refused" in failures.loc[50, "reason"]
    assert "should be of size" in failures.loc[50, "reason"]
    assert failures.loc[60, "kind"] == "failed" and "refused: sha256" in failures.loc[60, "reason"]
    assert failures.loc[70, "kind"] == "skipped" and "has no weight file" in failures.loc[70, "reason"]
    assert failures.loc[80, "kind"] == "skipped" and "500" in failures.loc[80, "reason"]
    assert "after 4 attempts" in failures.loc[80, "reason"]
    # identical weights on two branches: flagged in the table and warned about
    marks = frame.groupby("step").same_weights_as.first()
    assert marks[0] == 90 and marks[90] == 0 and marks[[10, 20, 40, 100]].isna().all()
    assert "steps 0, 90 serve identical weights" in result.stderr
    # weights are deleted once scored; no refused or partial file is left in the cache
    assert weight_blobs(hf_home) == []
    assert not list((hf_home / "hub").rglob("*.incomplete"))


def test_keep_weights_keeps_them_and_a_rescan_downloads_nothing(tmp_path):
    made = stanford_checkpoints(tmp_path, 3)
    with HubServer() as server:
        for step, folder in zip((0, 10, 20), made):
            serve(server, step, folder)
        out, hf_home = tmp_path / "results", tmp_path / "hf-home"
        env = hub_env(server, hf_home)
        first = run_cli(
            "scan",
            "stanford-gpt2-small",
            "--seeds",
            "21",
            "--steps",
            "0,10,20",
            "--out",
            str(out),
            "--quiet",
            "--keep-weights",
            env=env,
        )
        assert first.returncode == 0, first.stderr
        assert sorted(blob.name for blob in weight_blobs(hf_home)) == sorted(
            sha256(f / "pytorch_model.bin") for f in made
        )
        again = run_cli(
            "scan",
            "stanford-gpt2-small",
            "--seeds",
            "21",
            "--steps",
            "0,10,20",
            "--out",
            str(tmp_path / "2"),
            "--quiet",
            env=env,
        )
        assert again.returncode == 0 and "3 scored" in again.stdout
        assert all(server.downloads(REPO, f"checkpoint-{step}", "pytorch_model.bin") == 1 for step in (0, 10, 20))
        # the files were in the cache before the second scan: it leaves them there
        assert len(weight_blobs(hf_home)) == 3
    refused = invoke_cli("scan", "stanford-gpt2-small", "--keep-weights", "--max-disk", "1GB", "--out", str(out))
    assert refused.returncode == 2 and "--max-disk cannot bound" in refused.stderr


class RecordingHubServer(HubServer):
    """A :class:`HubServer` that records every request as it starts and ends, in order, and can
    hold a request until a condition holds: a test then asserts on what happened in which order,
    and makes the interleaving it needs happen, instead of sleeping and hoping."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.events: list[tuple[str, str, str]] = []  # ("start" or "end", method, path)
        self.expired: list[str] = []  # holds that gave up waiting
        self._holds: list[tuple[str, str, Callable[[], bool], int]] = []
        self._changed = threading.Condition()
        handler = type("Handler", (RecordingHandler,), {"state": self.state, "hub": self})
        for server in self._servers:
            server.RequestHandlerClass = handler

    def resolve(self, repo: str, revision: str, name: str) -> str:
        return f"/{repo}/resolve/{revision}/{name}"

    def cdn(self, repo: str, revision: str, name: str) -> str:
        return f"/cdn/{self.state.repos[(repo, revision)][name].sha256}"

    def hold(self, method: str, path: str, until: Callable[[], bool], *, nth: int = 1) -> None:
        """Answer the ``nth`` request ``method path`` only once ``until()`` is true (given up after
        HOLD_TIMEOUT seconds and noted in ``expired``; the client's read timeout must be longer)."""
        self._holds.append((method, path, until, nth))

    def seen(self, phase: str, method: str, path: str) -> bool:
        with self._changed:
            return (phase, method, path) in self.events

    def count(self, phase: str, method: str, path: str) -> int:
        with self._changed:
            return self.events.count((phase, method, path))

    def position(self, phase: str, method: str, path: str) -> int:
        with self._changed:
            return self.events.index((phase, method, path))

    def record(self, phase: str, method: str, path: str) -> int:
        """Note the event; return how many such events there have been, this one included."""
        with self._changed:
            self.events.append((phase, method, path))
            self._changed.notify_all()
            return self.events.count((phase, method, path))

    def wait_for_holds(self, method: str, path: str, number: int) -> None:
        """Wait out the holds on the ``number``-th request ``method path``."""
        for held_method, held_path, until, nth in self._holds:
            if (held_method, held_path, nth) != (method, path, number):
                continue
            with self._changed:  # woken by every request; a condition on files is looked at every 10 ms
                deadline = time.monotonic() + HOLD_TIMEOUT
                while not until() and time.monotonic() < deadline:
                    self._changed.wait(0.01)
                if not until():
                    self.expired.append(f"{method} {path}")


HOLD_TIMEOUT = 30.0  # only a broken client waits it out


class RecordingHandler(HubHandler):
    hub: RecordingHubServer

    def _dispatch(self, *, body: bool) -> None:
        path = self.path.split("?")[0]
        number = self.hub.record("start", self.command, path)
        self.hub.wait_for_holds(self.command, path, number)
        try:
            super()._dispatch(body=body)
        finally:
            self.hub.record("end", self.command, path)


IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE, IN_Q_OVERFLOW = 0x40, 0x80, 0x100, 0x200, 0x4000


class FolderEvents:
    """The kernel's record (inotify(7)) of the files created, renamed and deleted in one folder.

    Read after the fact, it is complete and in order, however loaded the machine: unlike a poller
    that sums file sizes every few milliseconds, it cannot look at the wrong moment."""

    def __init__(self, folder: Path) -> None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        mask = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO
        if self.fd < 0 or libc.inotify_add_watch(self.fd, bytes(folder), mask) < 0:
            raise OSError(ctypes.get_errno(), f"inotify on {folder}")

    def read(self) -> list[tuple[str, str]]:
        """("in" or "out", file name) for every event so far, in order; the watch is closed."""
        data = b""
        while True:
            try:
                data += os.read(self.fd, 1 << 16)
            except BlockingIOError:
                break
        os.close(self.fd)
        events, offset = [], 0
        while offset < len(data):
            _, mask, _, length = struct.unpack_from("iIII", data, offset)
            name = data[offset + 16 : offset + 16 + length].rstrip(b"\0").decode()
            assert not mask & IN_Q_OVERFLOW, "inotify dropped events"
            events.append(("in" if mask & (IN_CREATE | IN_MOVED_TO) else "out", name))
            offset += 16 + length
        return events


def peak_bytes(events: list[tuple[str, str]], sizes: dict[str, int]) -> int:
    """Most bytes of the blobs in ``sizes`` (sha256 -> size) on disk at once, each counted at its
    full size from the moment its download's temporary file (``SHA256.*.incomplete``) appears."""
    present: set[str] = set()
    peak = 0
    for kind, name in events:
        (present.add if kind == "in" else present.discard)(name)
        peak = max(peak, sum(sizes.get(key, 0) for key in {name.split(".")[0] for name in present}))
    return peak


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify as Linux has it")
def test_max_disk_bounds_the_cache_while_prefetching(tmp_path):
    made = stanford_checkpoints(tmp_path, 8)
    sizes = {sha256(folder / "pytorch_model.bin"): (folder / "pytorch_model.bin").stat().st_size for folder in made}
    # the budget bounds the weights downloaded: config.json blobs (small git files) are not counted
    size = max(sizes.values())
    budget = int(2.5 * size)  # two checkpoints at once, never three
    with RecordingHubServer() as server:
        steps = [10 * index for index in range(8)]
        for step, folder in zip(steps, made):
            serve(server, step, folder)
        first, second = (server.cdn(REPO, f"checkpoint-{step}", "pytorch_model.bin") for step in (0, 10))
        # the first download finishes only once the second has started: two on disk at once, if the budget allows it
        server.hold("GET", first, lambda: server.seen("start", "GET", second))
        out, hf_home = tmp_path / "results", tmp_path / "hf-home"
        blobs = hf_home / "hub" / f"models--{REPO.replace('/', '--')}" / "blobs"
        blobs.mkdir(parents=True)
        watch = FolderEvents(blobs)
        result = run_cli(
            "scan",
            "stanford-gpt2-small",
            "--seeds",
            "21",
            "--steps",
            ",".join(map(str, steps)),
            "--out",
            str(out),
            "--quiet",
            "--prefetch",
            "3",
            "--max-disk",
            str(budget),
            env={**hub_env(server, hf_home), "HF_HUB_DOWNLOAD_TIMEOUT": "60"},
        )
        events = watch.read()
        too_small = run_cli(
            "scan",
            "stanford-gpt2-small",
            "--seeds",
            "21",
            "--steps",
            "0",
            "--out",
            str(tmp_path / "x"),
            "--quiet",
            "--max-disk",
            str(size // 2),
            env=hub_env(server, hf_home),
        )
    assert result.returncode == 0, result.stderr
    assert "8 scored" in result.stdout
    assert server.expired == [], "the second download did not start while the first was held: no prefetch"
    assert server.position("start", "GET", second) < server.position("end", "GET", first)
    assert size < peak_bytes(events, sizes) <= budget  # more than one checkpoint on disk at once, never over the budget
    assert weight_blobs(hf_home) == []
    assert too_small.returncode == 1 and "more than the disk budget" in too_small.stdout
    assert server.downloads(REPO, "checkpoint-0", "pytorch_model.bin") == 1  # the second scan downloaded nothing


RSS_SCRIPT = """
import json, sys
from pathlib import Path
from inductscan.plan import ScanConfig, plan
from inductscan.runner import run_scan
from inductscan.suites import get_suite

def rss():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024

out, steps = Path(sys.argv[1]), json.loads(sys.argv[2])
refs = plan(get_suite("stanford-gpt2-small"), seeds=[21], steps=steps)
config = ScanConfig(prefetch=2)
run_scan(refs[:5], out, config, progress=False)
after_5 = rss()
summary = run_scan(refs, out, config, progress=False)
failed = [reason for _, reason in summary.failed]
print(json.dumps({"after_5": after_5, "after_50": rss(), "scored": summary.scored, "failed": failed,
                  "done": summary.already_done}))
"""


@pytest.mark.slow
def test_memory_stays_flat_over_50_checkpoints(tmp_path):
    made = stanford_checkpoints(tmp_path, 50)
    steps = list(get_suite("stanford-gpt2-small").steps[:50])
    with HubServer() as server:
        for step, folder in zip(steps, made):
            serve(server, step, folder)
        environment = {**os.environ, **hub_env(server, tmp_path / "hf-home")}
        result = subprocess.run(
            [sys.executable, "-c", RSS_SCRIPT, str(tmp_path / "results"), json.dumps(steps)],
            capture_output=True,
            text=True,
            env=environment,
            cwd=REPO_ROOT,
            timeout=600,
        )
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert (measured["done"], measured["scored"], measured["failed"]) == (5, 45, [])
    assert measured["after_50"] <= 1.10 * measured["after_5"], measured


def test_prefetch_keeps_k_checkpoints_in_flight(tmp_path, monkeypatch):
    from inductscan import pipeline
    from inductscan.plan import plan
    from inductscan.suites import local_suite

    folder = tmp_path / "suite"
    for step in range(6):
        (folder / f"checkpoint-{step}").mkdir(parents=True)
        (folder / f"checkpoint-{step}" / "config.json").write_text("{}")
        (folder / f"checkpoint-{step}" / "model.safetensors").write_bytes(b"x" * 10)
    refs = plan(local_suite(folder))
    events: list[tuple[str, int]] = []  # ("located", step) from the fetch threads, ("released", step) from here
    changed = threading.Condition()

    def record(event: tuple[str, int]) -> None:
        with changed:
            events.append(event)
            changed.notify_all()

    real_locate = pipeline.locate
    monkeypatch.setattr(pipeline, "locate", lambda ref, retry: record(("located", ref.step)) or real_locate(ref, retry))
    for prefetch in (0, 1, 3):
        events.clear()
        with pipeline.Prefetcher(refs, prefetch=prefetch) as prefetcher:
            for index, fetched in enumerate(prefetcher):
                ahead = min(index + prefetch, len(refs) - 1)
                with changed:  # while this one is "scored", the next `prefetch` are fetched, however slow the threads
                    assert changed.wait_for(lambda ahead=ahead: ("located", ahead) in events, timeout=10), events
                    located = sorted(step for kind, step in events if kind == "located")
                assert located == list(range(ahead + 1)), (prefetch, index)
                assert fetched.error is None and fetched.files.weights[0].name == "model.safetensors"
                record(("released", index))
                prefetcher.release(fetched)
        for position, (kind, step) in enumerate(events):  # never more than `prefetch` ahead of the consumer
            if kind == "located" and step > prefetch:
                assert ("released", step - prefetch - 1) in events[:position], (prefetch, events)
        assert all((folder / f"checkpoint-{step}" / "model.safetensors").is_file() for step in range(6))  # local: kept


def test_verify_cached_refuses_a_rotten_blob_and_fetches_it_again(tmp_path):
    made = stanford_checkpoints(tmp_path, 2)
    with HubServer() as server:
        for step, folder in zip((0, 10), made):
            serve(server, step, folder)
        out, hf_home = tmp_path / "results", tmp_path / "hf-home"
        env = hub_env(server, hf_home)
        scan = ("scan", "stanford-gpt2-small", "--seeds", "21", "--steps", "0,10", "--quiet", "--keep-weights")
        first = run_cli(*scan, "--out", str(out), env=env)
        assert first.returncode == 0, first.stderr
        rotten = [blob for blob in weight_blobs(hf_home) if blob.name == sha256(made[0] / "pytorch_model.bin")]
        data = bytearray(rotten[0].read_bytes())
        data[len(data) // 2] ^= 0xFF  # same name, same size, other bytes
        rotten[0].write_bytes(bytes(data))

        trusting = run_cli(*scan, "--out", str(tmp_path / "trusting"), env=env)
        assert trusting.returncode == 0 and "2 scored" in trusting.stdout
        assert all(server.downloads(REPO, f"checkpoint-{step}", "pytorch_model.bin") == 1 for step in (0, 10))

        verifying = run_cli(
            *scan, "--verify-cached", "--retry-backoff", "0.01", "--out", str(tmp_path / "verifying"), env=env
        )
        assert verifying.returncode == 0 and "2 scored" in verifying.stdout, verifying.stderr
        assert server.downloads(REPO, "checkpoint-0", "pytorch_model.bin") == 2  # refused, then fetched again
        assert server.downloads(REPO, "checkpoint-10", "pytorch_model.bin") == 1  # intact: hashed, kept
    fresh = inductscan.load_results(tmp_path / "verifying").reset_index()
    for step, folder in zip((0, 10), made):
        assert set(fresh[fresh.step == step].weights_sha256) == {sha256(folder / "pytorch_model.bin")}
    original = inductscan.load_results(out).reset_index().set_index(["step", "layer", "head"]).induction
    assert (fresh.set_index(["step", "layer", "head"]).induction == original).all()  # the served weights again
    assert hashlib.sha256(rotten[0].read_bytes()).hexdigest() == rotten[0].name  # the cache is mended


def resident_pages(path: Path) -> tuple[int, int]:
    """(pages of ``path`` in the page cache, pages in all), asked of the kernel with mincore(2)."""
    import ctypes
    import mmap

    size = path.stat().st_size
    pages = -(-size // mmap.PAGESIZE)
    libc = ctypes.CDLL(None, use_errno=True)
    with open(path, "rb") as file, mmap.mmap(file.fileno(), size, access=mmap.ACCESS_COPY) as mapped:
        vector = (ctypes.c_ubyte * pages)()
        address = ctypes.addressof(ctypes.c_char.from_buffer(mapped))
        if libc.mincore(ctypes.c_void_p(address), ctypes.c_size_t(size), vector) != 0:
            raise OSError(ctypes.get_errno(), "mincore")
        return sum(byte & 1 for byte in vector), pages


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mincore and posix_fadvise as Linux has them")
def test_read_ahead_brings_an_evicted_weight_file_back_into_the_page_cache(tmp_path):
    from inductscan.pipeline import read_ahead

    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(os.urandom(24 << 20))  # three read-ahead pieces
    with open(path, "rb") as file:
        os.fsync(file.fileno())  # clean pages: the kernel may drop them
        os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    evicted, pages = resident_pages(path)
    assert evicted < pages / 10
    read_ahead((path,))
    deadline = time.monotonic() + 10  # the reads are asynchronous
    while resident_pages(path)[0] < 0.9 * pages and time.monotonic() < deadline:
        time.sleep(0.05)
    assert resident_pages(path)[0] >= 0.9 * pages  # not all: a VM may reclaim a few pages at any time
