"""Work done in the machine's idle moments, by a low-priority thread that whoever needs the result overtakes.

A scan's forward pass keeps every core busy most of the time, but not all of it: between its
matrix products come small operations, Python, waits. Work that can be done beside it (hashing
the next checkpoint's weight files; ``W_U W_E`` for the copying score) used to run in threads of
normal priority, which took a core from the forward pass and slowed it by about what they did
(on 2 cores: hashing GPT-2 small's 326 MB file costs half a second of a core). Here such work runs
in threads at the lowest priority (nice 19; on Linux a thread has its own), which the scheduler
gives only the cores' idle moments, so it costs the forward pass next to nothing.

So that the work never takes longer than done in line, however busy the machine is with other
processes: it is cut into steps, and the first caller of :meth:`IdleWork.result` takes over the
steps not yet started, at its own priority (and, for steps that do not depend on each other, on
several threads), after the one step in progress, if any, ends.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, ThreadPoolExecutor
from typing import Generic, TypeVar

Step = TypeVar("Step")
LOWEST_PRIORITY = 19
IDLE_THREADS = 8  # at most this many pieces of work at once (the shards of one checkpoint, hashed side by side)

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _lower_priority() -> None:
    """Give the calling thread the lowest priority; where threads have none of their own (not Linux),
    it keeps its priority and the work merely runs beside the rest, as it did before."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOWEST_PRIORITY)
    except (AttributeError, OSError):
        pass


def idle_pool() -> ThreadPoolExecutor:
    """The process's low-priority threads (made on first use; a thread they start inherits the priority)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(IDLE_THREADS, thread_name_prefix="inductscan-idle", initializer=_lower_priority)
        return _pool


class IdleWork(Generic[Step]):
    """Steps run one after another in a low-priority thread; :meth:`result` returns their results.

    ``ordered``: each step must start after the one before it ended (hashing a file chunk by
    chunk); else the steps are independent and a caller who takes over runs the rest on
    ``workers`` threads (slices of a matrix product). A step that raises stops the work; the
    error is raised by :meth:`result`.
    """

    def __init__(self, steps: Sequence[Callable[[], Step]], *, ordered: bool = True, workers: int = 1):
        self._steps = list(steps)
        self._results: list[Step | None] = [None] * len(self._steps)
        self._next = 0
        self._ordered, self._workers = ordered, max(1, workers)
        self._error: BaseException | None = None
        self._wanted = False  # a caller asked for the result: the background thread starts no further step
        self._running = threading.Lock()  # held while a step runs: the caller waits for that one step
        self._future = idle_pool().submit(self._in_background) if self._steps else None

    def _in_background(self) -> None:
        while True:
            with self._running:
                if self._wanted or self._next == len(self._steps) or self._error is not None:
                    return
                index, self._next = self._next, self._next + 1
                self._run(index)

    def _run(self, index: int) -> None:
        try:
            self._results[index] = self._steps[index]()
        except BaseException as error:  # any error of a step is the caller's: result() raises it
            self._error = self._error or error

    def result(self) -> list[Step]:
        """Every step's result, in order; the steps not yet started run here, now."""
        self._wanted = True
        with self._running:
            left = range(self._next, len(self._steps))
            self._next = len(self._steps)
            if self._error is None:
                if self._ordered or self._workers == 1 or len(left) < 2:
                    for index in left:
                        self._run(index)
                        if self._error is not None:
                            break
                else:
                    with ThreadPoolExecutor(min(self._workers, len(left))) as pool:
                        list(pool.map(self._run, left))
        if self._error is not None:
            raise self._error
        return list(self._results)  # type: ignore[arg-type]

    def cancel(self) -> None:
        """Start no further step (the one in progress, if any, ends first); :meth:`result` then raises."""
        self._wanted = True
        with self._running:
            self._next = len(self._steps)
            self._error = self._error or CancelledError()
