"""The head and checkpoint scores of docs/scores.md, as pure vectorised tensor functions.

Each attention-pattern score is a mean over sequences and query positions of a weighted sum of
attention probabilities, so it is one (query, key) weight matrix whose rows are already divided
by the number of query positions: ``score[h] = sum_{b,q,k} A[b,h,q,k] W[q,k] / batch``.
``L`` is the probe's segment length; the earlier copies of the token at ``q`` sit at
``q - L, q - 2L, ...``, never before the first probe position ``o``.
"""

from __future__ import annotations

import functools
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

from inductscan.idle import IdleWork
from inductscan.probe import Layout

PATTERN_SCORES = ("induction", "prefix_matching", "duplicate_token", "previous_token")


def _earlier_copies(layout: Layout, q: int) -> range:
    return range(q - layout.length, layout.offset - 1, -layout.length)


def pattern_weights(layout: Layout) -> dict[str, torch.Tensor]:
    """(position, position) weight matrices for each pattern score, rows normalised by query count.

    - induction: ``A[q, q - L + 1]``, the token after the most recent earlier copy (TransformerLens).
    - prefix_matching: ``sum_c A[q, c + 1]`` over every earlier copy ``c`` (Olsson et al.).
    - duplicate_token: ``sum_c A[q, c]``.
    - previous_token: ``A[q, q - 1]`` for every ``q`` whose previous position holds a probe token.
    """
    n = layout.n_positions
    weights = {name: torch.zeros(n, n, dtype=torch.float64) for name in PATTERN_SCORES}
    induction_queries = layout.induction_positions()
    for q in induction_queries:
        weights["induction"][q, q - layout.length + 1] = 1.0
        for c in _earlier_copies(layout, q):
            weights["prefix_matching"][q, c + 1] += 1.0
            weights["duplicate_token"][q, c] += 1.0
    for name in ("induction", "prefix_matching", "duplicate_token"):
        weights[name] /= len(induction_queries)
    previous_queries = range(layout.offset + 1, n)
    for q in previous_queries:
        weights["previous_token"][q, q - 1] = 1.0 / len(previous_queries)
    return weights


def pattern_scores(pattern: torch.Tensor, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Scores from attention probabilities, all in one matrix product over the (query, key) cells
    that some score weighs: a few hundred of the probe's 10,000, so only those are gathered.

    pattern: (..., batch, head, query, key) -> each score (..., head).
    """
    batch = pattern.shape[-4]
    stacked = torch.stack(list(weights.values()), dim=-1)  # (query, key, score)
    # the cells found where the weights are (the CPU): nonzero on a GPU would wait for the pass
    queries, keys = stacked.abs().sum(dim=-1).nonzero(as_tuple=True)
    cells = stacked[queries, keys].to(pattern.device)
    queries, keys = queries.to(pattern.device), keys.to(pattern.device)
    per_batch = pattern[..., queries, keys].double() @ cells  # (..., batch, head, score)
    summed = per_batch.sum(dim=-3) / batch  # (..., head, score)
    return {name: summed[..., index] for index, name in enumerate(weights)}


def attention_sink(pattern: torch.Tensor) -> torch.Tensor:
    """Mean attention to the first position over every sequence and every query but the first
    (whose only key is the first position): how much of its attention the head parks on a sink.

    pattern: (..., batch, head, query, key) -> (..., head), float64.
    """
    return pattern[..., 1:, 0].double().mean(dim=(-3, -1))


def copying_score(
    embed: torch.Tensor,
    values: torch.Tensor,
    outputs: torch.Tensor,
    unembed: torch.Tensor,
    final_ln_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Eigenvalue copying score ``sum(lambda) / sum(|lambda|)`` of the full OV circuit (Elhage et al.).

    The nonzero eigenvalues of ``W_E W_V W_O W_U`` (vocab x vocab) are those of the
    (d_head x d_head) matrix ``W_O W_U W_E W_V``, computed here. The input LayerNorm gains are
    expected already folded into ``values``; the final LayerNorm's gain ``final_ln_weight`` is
    folded into ``W_U`` here (None: already folded).

    embed (vocab, d_model), values (..., d_model, d_head), outputs (..., d_head, d_model),
    unembed (d_model, vocab) -> (...,).
    """
    return eigenvalue_ratio(ov_circuits(values, outputs, through_vocab(unembed, embed, final_ln_weight)))


def through_vocab(unembed: torch.Tensor, embed: torch.Tensor, final_ln_weight: torch.Tensor | None) -> torch.Tensor:
    """``diag(g) W_U W_E`` (d_model, d_model): the part of every head's OV circuit that runs through the
    vocabulary, with the final LayerNorm's gain ``g`` folded into ``W_U``. The costly product, shared."""
    product = vocab_product(unembed, embed)
    return product if final_ln_weight is None else final_ln_weight[:, None] * product


def ov_circuits(values: torch.Tensor, outputs: torch.Tensor, through: torch.Tensor) -> torch.Tensor:
    """``W_O W_U W_E W_V`` per head, (..., d_head, d_head), in float64; ``through`` from :func:`through_vocab`.

    ``W_O W_U W_E`` is one (heads * d_head, d_model) x (d_model, d_model) product, not one per head.
    """
    left = (outputs.reshape(-1, outputs.shape[-1]) @ through).view(outputs.shape)  # (..., d_head, d_model)
    return (left @ values).double()


def eigenvalue_ratio(circuits: torch.Tensor) -> torch.Tensor:
    """``sum(lambda) / sum(|lambda|)`` of each (..., n, n) matrix, eigenvalues in float64, on the CPU.

    See :class:`EigenvalueRatios`; a matrix holding a NaN or an infinity gets NaN.
    """
    with EigenvalueRatios() as ratios:
        ratios.submit(circuits)
        return ratios.gather()[0][0]


class EigenvalueRatios:
    """Eigenvalue ratios (see :func:`eigenvalue_ratio`) computed on the CPU in threads, whatever the
    device of the matrices.

    Eigenvalue problems this small (64 x 64 for GPT-2 small) do not belong on a GPU: for GPT-2
    small's 144 heads ``torch.linalg.eigvals`` takes 0.63 s on an H100 against 0.12 s on one CPU
    core. LAPACK's routine runs on one core, so the matrices are split between at most
    ``torch.get_num_threads()`` threads and go through numpy's LAPACK, which releases the GIL (on
    two cores 0.045 s for the 144 heads, against 0.06 s through torch's).

    Matrices on an accelerator are copied to pinned memory without waiting and their eigenvalues
    start at once, overlapping the rest of the forward pass, which runs on the device; each thread
    waits for its own copy alone. Matrices on the CPU wait for :meth:`gather` and go together: there
    the threads would take the cores from the forward pass (it ran 0.09 s slower beside them, for
    0.055 s of eigenvalues).

    ``submit`` each (..., n, n) stack as soon as it exists; ``gather`` returns, per submitted stack,
    its ratios (...,) and whether each matrix was finite (...,); a non-finite matrix's ratio is NaN.
    ``at_once`` starts CPU stacks at once too (None: only an accelerator's).
    """

    def __init__(self, workers: int | None = None, *, at_once: bool | None = None):
        self.workers = max(1, torch.get_num_threads() if workers is None else workers)
        self.at_once = at_once
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="inductscan-eigvals")
        self._started: list[tuple[list[torch.Size], list[Future]]] = []  # stacks, their pieces' futures
        self._waiting: list[tuple[torch.Size, torch.Tensor]] = []  # CPU stacks, until gather

    def __enter__(self) -> EigenvalueRatios:
        # one BLAS thread inside each LAPACK call, the threads here being the parallelism: from 128 x 128
        # (the Llama family's heads) LAPACK's inner products go multi-threaded, and beside the other
        # thread's they busy-wait: 256 heads of OLMo-1B took 18 s on 2 cores, against 1 s single-threaded
        blas = _process_wide_openblas()
        self._blas_limit = blas.limit(limits=1) if blas is not None else None
        return self

    def __exit__(self, *exc) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        if getattr(self, "_blas_limit", None) is not None:
            self._blas_limit.restore_original_limits()

    def submit(self, circuits: torch.Tensor) -> None:
        batch_shape, n = circuits.shape[:-2], circuits.shape[-1]
        flat = circuits.detach().reshape(-1, n, n)
        if flat.device.type == "cpu":
            if self.at_once:
                self._start([batch_shape], flat.double())
            else:
                self._waiting.append((batch_shape, flat.double()))
            return
        ready = None
        if flat.device.type == "cuda":
            stream = torch.cuda.current_stream(flat.device)
            flat = flat.to("cpu", torch.float64, non_blocking=True)  # into pinned memory, asynchronously
            ready = torch.cuda.Event()
            ready.record(stream)
        else:
            flat = flat.to("cpu", torch.float64)
        self._start([batch_shape], flat, ready)

    def _start(self, batch_shapes: list[torch.Size], flat: torch.Tensor, ready=None) -> None:
        pieces = torch.tensor_split(flat, max(1, min(self.workers, len(flat))))
        self._started.append((batch_shapes, [self._pool.submit(_ratios, piece, ready) for piece in pieces]))

    def gather(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each submitted stack's (ratios, finite), in the order submitted; waits for the threads."""
        if self._waiting:
            shapes, stacks = zip(*self._waiting, strict=True)
            self._start(list(shapes), torch.cat(stacks))
            self._waiting = []
        gathered = []
        for batch_shapes, futures in self._started:
            parts = [future.result() for future in futures]
            ratios = torch.cat([ratio for ratio, _ in parts]).split([shape.numel() for shape in batch_shapes])
            finite = torch.cat([finite for _, finite in parts]).split([shape.numel() for shape in batch_shapes])
            gathered.extend(
                (ratio.reshape(shape), flags.reshape(shape))
                for ratio, flags, shape in zip(ratios, finite, batch_shapes, strict=True)
            )
        self._started = []
        return gathered


def _ratios(flat: torch.Tensor, ready=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(ratio, finite) of each (n, n) matrix of ``flat`` (matrices, n, n), float64 on the CPU."""
    if ready is not None:
        ready.synchronize()  # the copy from the device has landed (releases the GIL while waiting)
    array = flat.numpy()
    finite = np.isfinite(array).all(axis=(-2, -1))
    ratios = torch.full((len(array),), float("nan"), dtype=torch.float64)
    if finite.any():
        eigenvalues = torch.from_numpy(np.linalg.eigvals(array if finite.all() else array[finite]))
        ratio = eigenvalues.sum(dim=-1).real / eigenvalues.abs().sum(dim=-1)
        ratios[torch.from_numpy(finite)] = ratio
    return ratios, torch.from_numpy(finite)


def vocab_product(unembed: torch.Tensor, embed: torch.Tensor) -> torch.Tensor:
    """``W_U W_E`` (d_model, d_model), a sum over the whole vocabulary.

    With tied embeddings (``W_U = W_E^T``, GPT-2) it is the Gram matrix ``W_E^T W_E``: on the CPU,
    numpy hands ``a.T @ a`` to BLAS's symmetric rank-k update, which does half the work of a
    general product (0.16 s against 0.32 s for GPT-2 small on 2 cores).
    """
    if _gram_applies(unembed, embed):
        return torch.from_numpy(_gram(embed.numpy()))
    return unembed @ embed


def _gram_applies(unembed: torch.Tensor, embed: torch.Tensor) -> bool:
    """Whether ``W_U W_E`` is the Gram matrix of a contiguous CPU ``W_E`` that numpy can take."""
    tied = unembed.T.data_ptr() == embed.data_ptr() and unembed.T.stride() == embed.stride()
    numpy_can = embed.dtype in (torch.float32, torch.float64) and embed.is_contiguous()
    return tied and embed.device.type == "cpu" and numpy_can


class ThroughVocab:
    """:func:`through_vocab`, started at once and made where it costs least: for a tied CPU embedding
    with numpy's OpenBLAS, the Gram matrix's slices (see :func:`_gram`) are multiplied in the machine's
    idle time (:mod:`inductscan.idle`) while the forward pass runs, each on one BLAS thread; else at
    once. :meth:`result` (or leaving the ``with`` block) finishes it; the bits are :func:`through_vocab`'s.
    """

    def __init__(
        self,
        unembed: torch.Tensor,
        embed: torch.Tensor,
        final_ln_weight: torch.Tensor | None,
        *,
        in_idle_time: bool = True,
    ):
        self.final_ln_weight = final_ln_weight
        self._value: torch.Tensor | None = None
        self._work: IdleWork | None = None
        self._limit = None
        blas = _process_wide_openblas() if in_idle_time and _gram_applies(unembed, embed) else None
        if blas is None:
            self._value = through_vocab(unembed, embed, final_ln_weight)
            return
        self._limit = blas.limit(limits=1)  # process-wide: every slice runs on its own thread alone
        slices = np.array_split(embed.numpy(), GRAM_SLICES)
        self._work = IdleWork(
            [functools.partial(_slice_gram, part) for part in slices],
            ordered=False,
            workers=min(torch.get_num_threads(), GRAM_SLICES),
        )

    @property
    def pending(self) -> bool:
        """Whether the product is still being made in idle time (:meth:`result` would finish it)."""
        return self._value is None

    def result(self) -> torch.Tensor:
        if self._value is None:
            try:
                product = torch.from_numpy(functools.reduce(np.add, self._work.result()))
            finally:
                self._release()
            self._value = product if self.final_ln_weight is None else self.final_ln_weight[:, None] * product
        return self._value

    def _release(self) -> None:
        if self._limit is not None:
            self._limit.restore_original_limits()
            self._limit = None

    def __enter__(self) -> ThroughVocab:
        return self

    def __exit__(self, *exc) -> None:
        if self._work is not None and self._value is None:  # the caller failed before it needed the product
            self._work.cancel()
        self._release()


def _slice_gram(part: np.ndarray) -> np.ndarray:
    return part.T @ part


GRAM_SLICES = 8  # fixed, not one per thread: the sum's rounding must not depend on the thread count


def _gram(array: np.ndarray) -> np.ndarray:
    """``array.T @ array``, summed over 8 slices of the rows, each slice a single-threaded BLAS call,
    the slices run in torch's threads.

    numpy's OpenBLAS (pthreads) leaves its worker threads busy-waiting for a while after a
    multi-threaded call, and the forward pass that follows ran 0.06 s slower beside them; the
    slices in threads are also a little faster than one two-threaded call. The slices are the same
    on any number of threads, so a one-thread Ray task and a two-thread laptop get the same bits.
    Where numpy's BLAS is another (whose thread count may be per calling thread), the slices run
    one after another, each on that BLAS's own threads.
    """
    slices = np.array_split(array, GRAM_SLICES)
    blas = _process_wide_openblas()
    if blas is None:
        parts = [_slice_gram(part) for part in slices]
    else:
        workers = max(1, min(torch.get_num_threads(), GRAM_SLICES))
        with blas.limit(limits=1), ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(_slice_gram, slices))
    return functools.reduce(np.add, parts)


@functools.cache
def _process_wide_openblas():
    """numpy's BLAS, as a threadpoolctl controller, when it is OpenBLAS on pthreads: its thread count
    is one setting for the whole process, so a limit set here holds in the threads of :func:`_gram`.
    None for any other BLAS."""
    from threadpoolctl import ThreadpoolController

    blas = ThreadpoolController().select(user_api="blas")
    libraries = blas.info()
    if libraries and all(
        lib["internal_api"] == "openblas" and lib.get("threading_layer") == "pthreads" for lib in libraries
    ):
        return blas
    return None


def logit_directions(
    unembed: torch.Tensor, final_ln_weight: torch.Tensor, tokens: torch.Tensor, *, centred: bool = True
) -> torch.Tensor:
    """Residual-stream directions whose dot product with a centred, scale-divided head output is its
    direct logit attribution to each of ``tokens``, relative to the mean logit.

    The head output goes through the final LayerNorm as TransformerLens's ``apply_ln_to_stack``
    does: centred over d_model, divided by the scale, times the gain; then projected on
    ``W_U[:, t] - mean_v W_U[:, v]``. Centring is folded in by centring the direction; a final
    RMSNorm (``centred=False``) does not centre.

    unembed (d_model, vocab), final_ln_weight (d_model,), tokens (...) -> (..., d_model), float64.
    """
    # W_U is usually a transposed view: averaging its rows of the contiguous (vocab, d_model) side is
    # 10x faster than a strided reduction, and needs no float64 copy of the whole matrix.
    mean = unembed.T.mean(dim=0).double()
    relative = unembed.T[tokens].double() - mean  # (..., d_model)
    direction = relative * final_ln_weight.double()
    return direction - direction.mean(dim=-1, keepdim=True) if centred else direction


def head_logit_contributions(
    z: torch.Tensor, outputs: torch.Tensor, directions: torch.Tensor, which: torch.Tensor
) -> torch.Tensor:
    """Each head's output ``z W_O`` projected on its query's logit direction, before the LayerNorm scale.

    A probe repeats its tokens, so the directions are given once per distinct target and
    ``which`` picks each query's: projecting them through every head's ``W_O`` is one
    (targets, d_model) x (d_model, H*E) product, a third of projecting one per query. It runs in
    the model's precision; the per-head sums are accumulated in float64.

    z (batch, head, query, d_head), outputs (head, d_head, d_model), directions (targets,
    d_model), which (batch, query) indexes directions -> (batch, query, head).
    """
    heads, d_head, d_model = outputs.shape
    projected = directions.to(outputs.dtype) @ outputs.reshape(heads * d_head, d_model).T  # (targets, H * E)
    per_head = projected[which].view(*which.shape, heads, d_head)  # (B, Q, H, E)
    return (z.transpose(1, 2) * per_head).double().sum(dim=-1)


def induction_logit(contributions: torch.Tensor, final_scale: torch.Tensor) -> torch.Tensor:
    """Mean direct logit attribution over sequences and induction positions.

    contributions (..., batch, query, head), final_scale (batch, query) -> (..., head).
    """
    return (contributions / final_scale.double()[..., None]).mean(dim=(-3, -2))


def token_losses(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """The loss of predicting each token from the position before it.

    logits (batch, position, vocab), ids (batch, position) -> (batch, position - 1).
    """
    batch, positions, vocab = logits.shape
    flat = F.cross_entropy(logits[:, :-1].reshape(-1, vocab), ids[:, 1:].reshape(-1), reduction="none")
    return flat.view(batch, positions - 1)


def loss_summary(token_losses: torch.Tensor, layout: Layout) -> dict[str, float]:
    """``loss_first``, ``loss_repeat`` and ``in_context_gain`` (nats) from per-token losses.

    token_losses (batch, position - 1): entry ``p - 1`` is the loss of predicting token ``p``
    from position ``p - 1``. The first copy's tokens are ``o..o+L-1`` (less position 0, which
    has nothing before it), the repeats' are ``o+L..P-1``.
    """
    per_token = token_losses.double()
    first = range(max(layout.offset, 1), layout.offset + layout.length)
    repeat = range(layout.offset + layout.length, layout.n_positions)
    loss_first = per_token[:, first.start - 1 : first.stop - 1].mean().item()
    loss_repeat = per_token[:, repeat.start - 1 : repeat.stop - 1].mean().item()
    return {"loss_first": loss_first, "loss_repeat": loss_repeat, "in_context_gain": loss_first - loss_repeat}
