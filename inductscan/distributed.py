"""A scan spread over a Ray cluster: one task per checkpoint, each fetching, scoring and writing its
own parquet file into the shared results folder.

The driver plans the scan, prepares the probes and ICL examples once, and shows the same progress
bar and summary as a local scan. A task whose worker process or node dies is retried by Ray
(``max_retries``); a retry rewrites the same checkpoint file, atomically, so every checkpoint is
scored exactly once in the table, and one that keeps dying is recorded as failed. A checkpoint
that cannot be scored is recorded by its task, as locally; any other error a task raises stops
the scan, as it would locally (an unreachable Hub or out-of-memory in its one line, a bug with its
traceback). A re-run resumes: done checkpoints are not submitted. Ray is optional:
``pip install inductscan[ray]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from inductscan import custom_scores
from inductscan.checkpoints import CheckpointRef
from inductscan.errors import ConfigError, DiskFullError, HubUnreachableError, OutOfMemory, parameter
from inductscan.pipeline import Prefetcher
from inductscan.plan import RayOptions
from inductscan.runner import Progress, ScanContext, ScanSummary, process_checkpoint
from inductscan.vocabulary import Outcome

_worker_contexts: dict[str, ScanContext] = {}  # per worker process: its Scorer's buffers survive from task to task


def checkpoint_task(ref: CheckpointRef, out: str, context: ScanContext, threads: int) -> tuple[str, str]:
    """A Ray task: fetch, score and store one checkpoint (its outcome as :func:`process_checkpoint`'s)."""
    import torch

    torch.set_num_threads(threads)
    icl_id = context.icl_examples and context.icl_examples.identifier()
    key = repr((context.config, sorted(context.probes), icl_id, custom_scores.versions(context.custom)))
    context = _worker_contexts.setdefault(key, context)
    config = context.config
    with Prefetcher(
        [ref], prefetch=0, retry=config.retry, keep_weights=config.keep_weights, verify_cached=config.verify_cached
    ) as prefetcher:
        (fetched,) = list(prefetcher)
        return process_checkpoint(fetched, context, prefetcher, Path(out))


@dataclass(frozen=True)
class RayExecutor:
    """The executor for a Ray cluster (see :func:`inductscan.runner.run_scan`)."""

    options: RayOptions = RayOptions()

    def run(
        self, todo: list[CheckpointRef], out: Path, context: ScanContext, summary: ScanSummary, progress: Progress
    ) -> None:
        run_on_ray(todo, out, context, self.options, summary, progress)


def run_on_ray(
    todo: list[CheckpointRef], out: Path, context: ScanContext, options: RayOptions, summary: ScanSummary, bar: Progress
) -> None:
    """Submit one task per checkpoint and collect them as they finish."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"{parameter('ray')} needs Ray: pip install 'inductscan[ray]'") from None
    if context.config.max_disk is not None:
        raise ConfigError(
            f"{parameter('max_disk')} bounds one process's downloads; on Ray each task holds one checkpoint at a time"
        )
    if not ray.is_initialized():
        ray.init(address=options.address, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    task = ray.remote(checkpoint_task).options(
        num_cpus=options.cpus_per_task,
        num_gpus=options.gpus_per_task,
        max_retries=options.max_retries,
        retry_exceptions=False,
    )
    shared = ray.put(context)
    threads = max(1, int(options.cpus_per_task))
    pending = {task.remote(ref, str(out), shared, threads): ref for ref in todo}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        ref = pending.pop(done[0])
        try:
            outcome = ray.get(done[0])
        except ray.exceptions.RayTaskError as error:  # the task raised: as in a local scan, never a bad checkpoint
            for task_ref in pending:
                ray.cancel(task_ref)
            if isinstance(error.cause, (HubUnreachableError, OutOfMemory, DiskFullError)):  # one line, as locally
                raise error.cause from error
            raise  # a bug: its remote traceback is in the error
        except ray.exceptions.RayError as error:  # the task's worker or node kept dying: this checkpoint's failure
            outcome = (Outcome.FAILED, f"Ray task failed: {str(error).strip().splitlines()[0]}")
        summary.record(ref, outcome, bar)
