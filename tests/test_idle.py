"""Work in the machine's idle time (inductscan/idle.py): a low-priority thread does the steps, a caller
who needs the result takes over what is left, and what it makes is what the work made in line makes."""

from __future__ import annotations

import hashlib
import os
import threading
from concurrent.futures import CancelledError

import numpy as np
import pytest
import torch

from inductscan import scores
from inductscan.checkpoints import HASH_CHUNK, WeightsDigest
from inductscan.errors import CheckpointUnavailableError
from inductscan.idle import LOWEST_PRIORITY, IdleWork


def test_steps_run_in_order_in_a_lowest_priority_thread():
    seen = []

    def step(number: int):
        seen.append((number, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
        return number * number

    work = IdleWork([lambda number=number: step(number) for number in range(6)])
    assert work.result() == [0, 1, 4, 9, 16, 25]
    assert [number for number, _, _ in seen] == list(range(6))
    background = [priority for _, thread, priority in seen if thread != threading.get_native_id()]
    assert all(priority == LOWEST_PRIORITY for priority in background)


def test_the_caller_takes_over_the_steps_not_yet_started():
    gate, first_started = threading.Event(), threading.Event()
    threads = []

    def first():
        first_started.set()
        gate.wait(10)
        threads.append(threading.get_native_id())
        return "first"

    def later():
        threads.append(threading.get_native_id())
        return "later"

    work = IdleWork([first, later, later])
    assert first_started.wait(10)
    threading.Timer(0.2, gate.set).start()  # the caller waits for the step in progress, then does the rest
    assert work.result() == ["first", "later", "later"]
    caller = threading.get_native_id()
    assert threads[0] != caller and threads[1:] == [caller, caller]


def test_independent_steps_left_over_run_on_several_threads():
    gate = threading.Event()
    started = threading.Event()
    threads = set()

    def block():
        started.set()
        gate.wait(10)

    def slow():
        threads.add(threading.get_native_id())
        threading.Event().wait(0.05)
        return 1

    work = IdleWork([block, *[slow] * 6], ordered=False, workers=2)
    assert started.wait(10)
    threading.Timer(0.1, gate.set).start()
    assert work.result()[1:] == [1] * 6
    assert len(threads) == 2  # the caller's two threads, neither of them the background one


def test_an_error_of_a_step_is_the_callers_and_stops_the_work():
    ran = []

    def fail():
        raise OSError(5, "broken")

    work = IdleWork([lambda: ran.append(1), fail, lambda: ran.append(3)])
    with pytest.raises(OSError, match="broken"):
        work.result()
    assert ran == [1]


def test_cancelled_work_starts_no_further_step():
    gate, started = threading.Event(), threading.Event()
    ran = []

    def first():
        started.set()
        gate.wait(10)

    work = IdleWork([first, lambda: ran.append("second")])
    assert started.wait(10)
    threading.Timer(0.1, gate.set).start()
    work.cancel()
    with pytest.raises(CancelledError):
        work.result()
    assert ran == []


def test_a_digest_made_in_idle_time_is_the_files_sha256(tmp_path):
    one = tmp_path / "model.bin"
    one.write_bytes(os.urandom(2 * HASH_CHUNK + 12345))  # two whole steps and a ragged end
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    assert WeightsDigest(files=[one]).result() == hashlib.sha256(one.read_bytes()).hexdigest()
    assert WeightsDigest(files=[empty]).result() == hashlib.sha256(b"").hexdigest()
    shards = "".join(f"{path.name}:{hashlib.sha256(path.read_bytes()).hexdigest()}\n" for path in (one, empty))
    assert WeightsDigest(files=[one, empty]).result() == hashlib.sha256(shards.encode()).hexdigest()


def test_a_file_that_vanishes_before_it_is_hashed_is_a_checkpoint_error(tmp_path):
    gone = tmp_path / "gone.bin"
    digest = WeightsDigest(files=[gone])
    with pytest.raises(CheckpointUnavailableError, match="gone.bin"):
        digest.result()


def test_the_idle_time_gram_matrix_is_the_in_line_one_bit_for_bit():
    generator = torch.Generator().manual_seed(0)
    embed = torch.randn(5000, 48, generator=generator)
    gain = 0.5 + torch.rand(48, generator=generator)
    expected = scores.through_vocab(embed.T, embed, gain)
    with scores.ThroughVocab(embed.T, embed, gain) as through:
        assert through.pending
        made = through.result()
    assert not through.pending
    assert np.array_equal(made.numpy(), expected.numpy())
    with scores.ThroughVocab(embed.T, embed, gain, in_idle_time=False) as at_once:
        assert not at_once.pending
        assert np.array_equal(at_once.result().numpy(), expected.numpy())


def test_leaving_the_gram_unfinished_lets_go_of_the_blas_limit():
    from threadpoolctl import threadpool_info

    before = [library["num_threads"] for library in threadpool_info() if library["user_api"] == "blas"]
    embed = torch.randn(4000, 32)
    with pytest.raises(RuntimeError, match="the caller failed"):
        with scores.ThroughVocab(embed.T, embed, None):
            raise RuntimeError("the caller failed")
    after = [library["num_threads"] for library in threadpool_info() if library["user_api"] == "blas"]
    assert after == before
