"""The toy suite: small attention-only GPT-2 models that form induction heads within minutes on a CPU.

Each seed trains a stock ``GPT2LMHeadModel`` (2 layers, d_model 64, 4 heads, vocab 256, context
64, MLPs zeroed and frozen so the model is attention only) on random tokens after a BOS in which
five segments of 3-10 tokens are copied from random positions to random later positions.
Copies at random offsets force a real induction mechanism; copies at fixed offsets teach
positional shortcuts instead. Checkpoints are saved with ``save_pretrained`` at log-spaced steps
from 0, and every ``dense_every`` steps over the stretch where this recipe's seeds form their
induction heads (``ToyConfig.save_steps``), so the suite holds a real phase change with many
checkpoints inside the rise, not a step between two. With segments of 6-16 tokens (the issue's first
recipe) one seed in three learned a copier whose layer-0 heads average a window ~10 tokens back
instead of the previous token: it copies, but is no induction head. Short segments rule it out.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from inductscan.errors import ConfigError, parameter
from inductscan.suites import MANIFEST_NAME, TOY_NAME, TOY_PROBE, TRAINED_MARK

BOS = 0
DONE_NAME = TRAINED_MARK


@dataclass(frozen=True)
class ToyConfig:
    layers: int = 2
    d_model: int = 64
    heads: int = 4
    vocab: int = 256
    context: int = 64
    init_std: float = 0.1  # GPT-2's 0.02 formed no induction head in 4,000 steps
    mlp_width: int = 4  # the MLPs are zeroed and frozen; a narrow one costs nothing to run
    learning_rate: float = 3e-3
    batch: int = 32
    segments: int = 5
    segment_min: int = 3  # segments of 6-16 let some seeds settle on a windowed, offset-10 copier
    segment_max: int = 10
    train_steps: int = 3000
    log_checkpoints: int = 32  # step 0 and log-spaced steps from 10 to train_steps
    # This recipe's seeds form their induction heads between steps ~1,850 and ~2,300 (onset to end,
    # README.md's `make demo` table), where the log grid has two checkpoints (2050 and 2480). The
    # window holds that with room either side, in steps rather than a share of train_steps: the
    # heads form when they do, however long training goes on after.
    dense_from: int = 1600
    dense_to: int = 2600
    dense_every: int = 25

    def __post_init__(self) -> None:
        if self.train_steps < 10 or self.log_checkpoints < 2:
            raise ConfigError(
                f"the toy suite needs {parameter('train_steps')} >= 10 (and >= 2 checkpoints), got {self.train_steps} "
                f"steps and {self.log_checkpoints} checkpoints"
            )
        if self.dense_every < 1 or not 0 <= self.dense_from <= self.dense_to:
            raise ConfigError(
                f"the dense window needs 0 <= dense_from <= dense_to and dense_every >= 1, got "
                f"{self.dense_from}..{self.dense_to} every {self.dense_every}"
            )
        if self.segment_max * 2 > self.context - 1:
            raise ConfigError(f"segments up to {self.segment_max} do not fit twice in context {self.context}")

    def save_steps(self) -> list[int]:
        """Step 0, the last step, log-spaced steps between them (rounded), and inside the window
        ``dense_from``..``dense_to`` (as far as training goes) every ``dense_every`` steps instead."""
        spaced = np.geomspace(10, self.train_steps, self.log_checkpoints - 1)
        logged = {int(round(step, -1 if step >= 100 else 0)) for step in spaced}
        dense = range(self.dense_from, min(self.dense_to, self.train_steps) + 1, self.dense_every)
        outside = {step for step in logged if not self.dense_from <= step <= self.dense_to}
        return sorted({0, self.train_steps, *outside, *dense})


def make_batch(config: ToyConfig, generator: torch.Generator) -> torch.Tensor:
    """(batch, context) tokens: BOS, then random ids with segments copied to later positions."""
    ids = torch.randint(1, config.vocab, (config.batch, config.context), generator=generator)
    ids[:, 0] = BOS
    span = config.context - 1  # positions 1..context-1 hold tokens
    for row in range(config.batch):
        for _ in range(config.segments):
            length = int(torch.randint(config.segment_min, config.segment_max + 1, (1,), generator=generator))
            source = 1 + int(torch.randint(0, span - 2 * length + 1, (1,), generator=generator))
            earliest = source + length
            target = earliest + int(torch.randint(0, config.context - length - earliest + 1, (1,), generator=generator))
            ids[row, target : target + length] = ids[row, source : source + length].clone()
    return ids


def build_model(config: ToyConfig, generator: torch.Generator):
    """An attention-only GPT-2, initialised from ``generator`` (not the global RNG)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    model_config = GPT2Config(
        n_layer=config.layers,
        n_embd=config.d_model,
        n_head=config.heads,
        vocab_size=config.vocab,
        n_positions=config.context,
        initializer_range=config.init_std,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=BOS,
        eos_token_id=BOS,
        tie_word_embeddings=True,
        n_inner=config.mlp_width,
    )
    model = GPT2LMHeadModel(model_config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if ".mlp." in name:
                parameter.zero_()
                parameter.requires_grad_(False)  # attention only
            elif ".ln_" in name or "ln_f" in name:
                parameter.fill_(1.0 if name.endswith("weight") else 0.0)
            elif name.endswith("bias"):
                parameter.zero_()
            else:
                parameter.normal_(0.0, config.init_std, generator=generator)
    return model


def _save(model, folder: Path) -> None:
    """save_pretrained into a temporary folder, then rename: a checkpoint folder is whole or absent."""
    temporary = folder.parent / f".{folder.name}.partial"
    shutil.rmtree(temporary, ignore_errors=True)
    model.save_pretrained(temporary)
    shutil.rmtree(folder, ignore_errors=True)
    temporary.rename(folder)


def train_seed(config: ToyConfig, seed: int, folder: Path, on_step: Callable[[int], None] | None = None) -> dict:
    """Train one seed and save its checkpoints under ``folder/checkpoint-N``; returns its record."""
    generator = torch.Generator().manual_seed(seed)
    model = build_model(config, generator)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
    save_steps = set(config.save_steps())
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    losses = {}
    for step in range(config.train_steps + 1):
        if step in save_steps:
            _save(model, folder / f"checkpoint-{step}")
        if step == config.train_steps:
            break
        ids = make_batch(config, generator)
        loss = model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step in save_steps:
            losses[step] = round(loss.item(), 4)
        if on_step is not None:
            on_step(step)
    record = {"seed": seed, "seconds": round(time.perf_counter() - started, 1), "loss_at_saved_steps": losses}
    (folder / DONE_NAME).write_text(json.dumps({"config": asdict(config), **record}, indent=1))
    return record


def is_trained(config: ToyConfig, folder: Path) -> bool:
    done = folder / DONE_NAME
    return done.is_file() and json.loads(done.read_text()).get("config") == asdict(config)


def write_manifest(out: Path, config: ToyConfig, seeds: list[int]) -> None:
    manifest = {
        "suite": TOY_NAME,
        "description": "toy attention-only GPT-2 models trained by `inductscan toy-suite`",
        "tokens_per_step": config.batch * config.context,
        "probe": asdict(TOY_PROBE),
        "seeds": seeds,
        "training": asdict(config),
    }
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1))


def seed_folder(out: Path, seed: int) -> Path:
    return Path(out) / f"seed{seed}"


def _train_worker(config: ToyConfig, seed: int, folder: Path, queue) -> dict:
    from transformers.utils import logging

    torch.set_num_threads(1)  # one thread per seed: tiny matrices parallelise better across processes
    logging.set_verbosity_error()  # no per-save progress bars or notices from the workers
    logging.disable_progress_bar()

    def report(step: int) -> None:
        if queue is not None and (step + 1) % 50 == 0:
            queue.put(50)

    return train_seed(config, seed, folder, report)


def build_toy_suite(
    out: Path, seeds: list[int], config: ToyConfig = ToyConfig(), *, jobs: int = 1, progress: bool = True
) -> list[int]:
    """Train every seed not yet trained with this config into ``out``; return the seeds trained now."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    todo = [seed for seed in seeds if not is_trained(config, seed_folder(out, seed))]
    for seed in todo:  # trained with other settings, or interrupted: none of its old checkpoints may stay
        shutil.rmtree(seed_folder(out, seed), ignore_errors=True)
    write_manifest(out, config, seeds)
    if not todo:
        return []
    context = multiprocessing.get_context("spawn")
    queue = context.Manager().Queue() if progress else None
    # on a terminal only: in a log a bar is a stream of carriage-return frames; the per-seed lines stay
    bar = tqdm(
        total=len(todo) * config.train_steps,
        unit="step",
        desc=f"training {len(todo)} toy seeds",
        disable=not progress or not sys.stderr.isatty(),
        dynamic_ncols=True,
    )
    with ProcessPoolExecutor(max_workers=max(1, min(jobs, len(todo))), mp_context=context) as pool:
        futures = [pool.submit(_train_worker, config, seed, seed_folder(out, seed), queue) for seed in todo]
        while not all(future.done() for future in futures):
            _drain(queue, bar, timeout=0.5)
        _drain(queue, bar, timeout=0)
        for future in futures:
            record = future.result()
            bar.write(f"seed {record['seed']}: trained in {record['seconds']} s")
    bar.close()
    return todo


def _drain(queue, bar, *, timeout: float) -> None:
    import queue as queues

    if queue is None:
        time.sleep(timeout)
        return
    try:
        while True:
            bar.update(queue.get(timeout=timeout))
            timeout = 0
    except queues.Empty:
        pass
