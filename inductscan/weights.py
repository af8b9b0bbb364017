"""A checkpoint's files, as tensors in the layout :mod:`inductscan.model` runs.

Reading (safetensors or pickled ``.bin``, whole or sharded, each tensor read only when asked for)
and converting (every weight checked for its shape and finiteness as it is copied, the nanoGPT
habit, into buffers reused from one checkpoint to the next; or one layer at a time, streamed).
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from inductscan.architecture import Architecture
from inductscan.errors import CorruptCheckpointError, NonFiniteError


def read_state_dict(files: list[Path]) -> LazyState:
    """Open weight files (safetensors or pickled ``.bin``, whole or sharded) as one state dict.

    Nothing is read until a weight is asked for: a ``.bin`` is memory-mapped and a safetensors
    file is read tensor by tensor, so converting weights one at a time never holds a whole file
    in memory. A ``.bin`` is unpickled with ``weights_only=True``: a file from the Hub must never
    run code.
    """
    return LazyState([_open_one(Path(path)) for path in files])


class LazyState(Mapping):
    """Weight name -> tensor over one or more opened files; each tensor is read when asked for.

    The files stay open (mapped) while the state is referenced, and no longer; so do the pages of
    every tensor read, which count in the process's memory. :meth:`released` lets them go sooner.
    """

    def __init__(self, parts: list[tuple[Path, object]]):
        self.owner: dict[str, tuple[Path, object]] = {}
        self.held = True
        for path, source in parts:
            for key in source.keys():
                self.owner[key] = (path, source)

    def released(self) -> LazyState:
        """The same tensors, each safetensors tensor read through a handle opened for it alone: a
        file's pages then stay mapped only while a tensor read from it is referenced, not until the
        state goes (the layer-by-layer mode: a 7B model's embeddings and first layer, read from one
        state, kept 1.3 GB of pages mapped). The values are the same."""
        state = LazyState([])
        state.owner, state.held = self.owner, False
        return state

    def __getitem__(self, key: str) -> torch.Tensor:
        path, source = self.owner[key]
        if isinstance(source, dict):  # a mapped .bin: its tensors are already views of the file
            return source[key]
        if not self.held:
            source = _open_one(path)[1]
        try:
            return source.get_tensor(key)  # a safetensors handle reads this one tensor
        except Exception as error:  # safetensors raises its own SafetensorError
            raise CorruptCheckpointError(f"cannot read weights from {path}: {error}") from error

    def __iter__(self):
        return iter(self.owner)

    def __len__(self) -> int:
        return len(self.owner)

    def __contains__(self, key: object) -> bool:
        return key in self.owner


def _open_one(path: Path) -> tuple[Path, object]:
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            return path, safe_open(str(path), framework="pt")
        try:
            return path, torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as error:
            if "mmap" not in str(error):  # only the legacy (non-zip) format cannot be mapped
                raise
            return path, torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, ValueError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        raise CorruptCheckpointError(f"cannot read weights from {path}: {error}") from error
    except Exception as error:  # safetensors raises its own SafetensorError
        if type(error).__name__ == "SafetensorError":
            raise CorruptCheckpointError(f"cannot read weights from {path}: {error}") from error
        raise


@dataclass(frozen=True)
class Layer:
    """One block's weights, all as ``x @ W`` (inputs on the left)."""

    ln1_weight: torch.Tensor  # (d_model,)
    ln1_bias: torch.Tensor
    qkv_weight: torch.Tensor  # (d_model, 3 * n_heads * d_head): q heads, then k heads, then v heads
    qkv_bias: torch.Tensor  # (3 * n_heads * d_head,)
    out_weight: torch.Tensor  # (n_heads * d_head, d_model): rows of head h are h*d_head:(h+1)*d_head
    out_bias: torch.Tensor  # (d_model,)
    ln2_weight: torch.Tensor
    ln2_bias: torch.Tensor
    mlp_in_weight: torch.Tensor  # (d_model, d_mlp)
    mlp_in_bias: torch.Tensor
    mlp_out_weight: torch.Tensor  # (d_mlp, d_model)
    mlp_out_bias: torch.Tensor

    def value_output(self, arch: Architecture) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-head W_V (head, d_model, d_head) and W_O (head, d_head, d_model)."""
        h, e = arch.n_heads, arch.d_head
        values = self.qkv_weight[:, 2 * h * e :].reshape(arch.d_model, h, e).permute(1, 0, 2)
        return values, self.out_weight.reshape(h, e, arch.d_model)


@dataclass(frozen=True)
class Weights:
    """A checkpoint's weights. ``layers`` is a tuple, or :class:`StreamedLayers`, which reads each
    layer from disk when the forward pass reaches it."""

    architecture: Architecture
    embed: torch.Tensor | StreamedEmbedding  # W_E (vocab, d_model)
    positions: torch.Tensor | None  # (n_ctx, d_model), GPT-2 only
    layers: Sequence[Layer]
    final_ln_weight: torch.Tensor
    final_ln_bias: torch.Tensor
    unembed: torch.Tensor  # W_U (d_model, vocab); may be a view of embed


LAYER_NUMBER = re.compile(r"\.\d+\.")


class Buffers:
    """Where converted weights go. With ``reuse``, each weight is copied into the tensor the same
    key got last time (when the shape agrees) instead of a fresh one: a scan converts checkpoint
    after checkpoint of one architecture without faulting in new memory for each. ``one_layer``
    gives every layer the same tensors, for streaming one layer at a time.

    ``staged`` (the default on CUDA) moves each weight to the device as it is stored: its stored
    dtype copied into a reused page-locked buffer, sent to the device without waiting, then viewed
    and converted there. Copying a half-precision tensor into a float32 device buffer straight away
    would convert it on the CPU first, and copy from pageable memory synchronously. Staged weights
    are checked for finiteness together, in one synchronisation, by :meth:`check_finite`.
    """

    def __init__(
        self,
        dtype: torch.dtype,
        device: str | torch.device,
        *,
        reuse: bool = True,
        one_layer: bool = False,
        staged: bool | None = None,
    ):
        self.dtype, self.device = dtype, torch.device(device)
        self.reuse, self.one_layer = reuse, one_layer
        self.staged = reuse and (self.device.type == "cuda" if staged is None else staged)
        self.tensors: dict[str, torch.Tensor] = {}
        self.stored: dict[str, torch.Tensor] = {}  # slot -> the weight as stored, on the device
        self.pinned: dict[str, tuple[torch.Tensor, object]] = {}  # slot -> page-locked copy, its transfer's event
        self.unchecked: list[tuple[str, torch.Tensor]] = []

    def take(
        self,
        state: Mapping[str, torch.Tensor],
        key: str,
        shape: tuple[int, ...],
        view: Callable | None = None,
        *,
        slot: str | None = None,
    ) -> torch.Tensor:
        """The weight ``key`` (through ``view``) in the buffer named ``slot`` (default: the key).

        Checked as it is copied (nanoGPT's ``from_pretrained`` habit): its stored ``shape`` must be
        the one the config implies, and every value must be finite, so that a checkpoint with a
        wrong or broken tensor is a recorded failure naming the tensor, not an error deep inside the
        forward pass or the eigenvalue solver. Staged weights are checked by :meth:`check_finite`.
        """
        source = _stored(state, key, shape)
        slot = slot or (LAYER_NUMBER.sub(".N.", key) if self.one_layer else key)
        if self.staged:
            if view is None and source.dtype == self.dtype:  # nothing to do on the device: straight into place
                self.unchecked.append((key, self._to_device(source, slot, self._buffer(slot, source.shape))))
                return self.tensors[slot]
            source = self._to_device(source, slot)
        if view is not None:
            source = view(source)
        if not self.reuse:
            return _finite(source.to(device=self.device, dtype=self.dtype).contiguous(), key)
        buffer = self._buffer(slot, source.shape)
        buffer.copy_(source)  # on the device when staged: a conversion of dtype, a transposition
        if self.staged:
            self.unchecked.append((key, buffer))
            return buffer
        return _finite(buffer, key)

    def embedding(self, state: Mapping[str, torch.Tensor], key: str, shape: tuple[int, ...], *, tied: bool):
        """``W_E`` (vocab, d_model): a buffer, as :meth:`take` gives it; or, one layer at a time and
        untied (so that no ``W_U`` is a view of it), a :class:`StreamedEmbedding`."""
        if self.one_layer and not tied:
            return StreamedEmbedding(state, key, shape, self.dtype, self.device)
        return self.take(state, key, shape)

    def _buffer(self, slot: str, shape: torch.Size) -> torch.Tensor:
        buffer = self.tensors.get(slot)
        if buffer is None or buffer.shape != shape:
            buffer = torch.empty(shape, dtype=self.dtype, device=self.device)
            self.tensors[slot] = buffer
        return buffer

    def _to_device(self, source: torch.Tensor, slot: str, into: torch.Tensor | None = None) -> torch.Tensor:
        """``source`` (on the CPU, as stored) on the device in its stored dtype, its transfer queued;
        into ``into`` when given (of that dtype), else into the slot's reused device copy.

        The page-locked copy of a slot is reused, so the copy into it first waits until that slot's
        previous transfer has read it (streamed layers share slots)."""
        pin = self.device.type == "cuda"
        pinned, sent = self.pinned.get(slot, (None, None))
        if pinned is None or pinned.shape != source.shape or pinned.dtype != source.dtype:
            pinned = torch.empty(source.shape, dtype=source.dtype, pin_memory=pin)
        elif sent is not None:
            sent.synchronize()
        pinned.copy_(source)
        stored = into if into is not None else self.stored.get(slot)
        if stored is None or stored.shape != source.shape or stored.dtype != source.dtype:
            stored = torch.empty(source.shape, dtype=source.dtype, device=self.device)
            self.stored[slot] = stored
        stored.copy_(pinned, non_blocking=pin)
        if pin:
            sent = torch.cuda.Event()
            sent.record(torch.cuda.current_stream(self.device))
        self.pinned[slot] = (pinned, sent)
        return stored

    def check_finite(self) -> None:
        """:class:`NonFiniteError` naming the first staged weight since the last call that holds a NaN
        or an infinity. One sum per weight, all read back at once (see :func:`_finite`)."""
        unchecked, self.unchecked = self.unchecked, []
        if not unchecked:
            return
        sums = torch.stack([tensor.sum() for _, tensor in unchecked])
        for flagged in torch.nonzero(~torch.isfinite(sums)).flatten().tolist():
            key, tensor = unchecked[flagged]
            _finite(tensor, key)


class StreamedEmbedding:
    """An untied model's ``W_E`` in the layer-by-layer mode: checked when the checkpoint is loaded,
    then read from its file each time it is needed, never kept. A 7B model's float32 embedding is
    0.8 GB, a fifth of the mode's peak memory, and the pass needs it only at its start (the rows of
    the probe's tokens; the copying score's ``W_U W_E``).

    Indexing gathers rows, as indexing the matrix would; :meth:`whole` gives the matrix. Both are
    in ``dtype`` on ``device``, with the values a buffer would hold.
    """

    def __init__(
        self,
        state: Mapping[str, torch.Tensor],
        key: str,
        shape: tuple[int, ...],
        dtype: torch.dtype,
        device: torch.device,
    ):
        self.state, self.key, self.shape = state, key, torch.Size(shape)
        self.dtype, self.device = dtype, device
        _finite(self._read().to(dtype), key)

    def __getitem__(self, ids: torch.Tensor) -> torch.Tensor:
        return self._read()[ids.cpu()].to(device=self.device, dtype=self.dtype)

    def whole(self) -> torch.Tensor:
        return self._read().to(device=self.device, dtype=self.dtype).contiguous()

    def _read(self) -> torch.Tensor:
        """The tensor as stored; a released state's file pages go with it."""
        return _stored(self.state, self.key, tuple(self.shape))


def _stored(state: Mapping[str, torch.Tensor], key: str, shape: tuple[int, ...]) -> torch.Tensor:
    """The weight ``key`` as stored, or :class:`CorruptCheckpointError` if it is missing or its shape
    is not the one the config implies."""
    try:
        source = state[key]
    except KeyError:
        raise CorruptCheckpointError(f"weight {key!r} is missing from the checkpoint") from None
    if tuple(source.shape) != tuple(shape):
        raise CorruptCheckpointError(f"weight {key!r} has shape {tuple(source.shape)}, the config says {shape}")
    return source


def _finite(tensor: torch.Tensor, key: str) -> torch.Tensor:
    """``tensor``, or :class:`NonFiniteError` naming ``key`` if it holds a NaN or an infinity.

    The sum is one fast pass (3 ms for GPT-2 small's embedding, against 100 ms for
    ``isfinite(...).all()``) and is finite whenever every value is, barring an overflow of the sum
    itself, which the exact count below then rules out.
    """
    if bool(torch.isfinite(tensor.sum())):
        return tensor
    nan, finite = int(torch.isnan(tensor).sum()), int(torch.isfinite(tensor).sum())
    if finite == tensor.numel():
        return tensor
    infinite = tensor.numel() - finite - nan
    raise NonFiniteError(f"weight {key!r} holds non-finite values ({nan:,} NaN, {infinite:,} infinite)")


class _Prefixed(Mapping):
    """A state dict seen without the ``transformer.`` prefix that LM-head GPT-2 files carry."""

    def __init__(self, state: Mapping[str, torch.Tensor], prefix: str):
        self.state, self.prefix = state, prefix

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.state[self.prefix + key]

    def __iter__(self):
        return (key.removeprefix(self.prefix) for key in self.state if key.startswith(self.prefix))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.prefix + key in self.state


def _normalise(arch: Architecture, state: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    """Accept GPT-2 weights saved from the bare model as well as from the LM-head model."""
    if arch.family == "gpt2" and any(key.startswith("transformer.") for key in state):
        return _Prefixed(state, "transformer.")
    return state


def convert(
    arch: Architecture,
    state: Mapping[str, torch.Tensor],
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
    *,
    buffers: Buffers | None = None,
    family: TensorMap | None = None,
) -> Weights:
    """Turn a Hugging Face state dict into :class:`Weights` in ``dtype`` on ``device``.

    With ``buffers``, the weights are copied into its tensors (see :class:`Buffers`): the
    previous checkpoint converted into the same buffers is overwritten. ``family`` maps the names
    of another family's weights (see :mod:`inductscan.families.native`); None: GPT-2's or GPT-NeoX's.
    """
    buffers = buffers or Buffers(dtype, device, reuse=False)
    state = _normalise(arch, state)
    family = family or FAMILIES[arch.family]
    layers = tuple(family.layer(arch, state, buffers, index) for index in range(arch.n_layers))
    weights = family.globals(arch, state, buffers, layers)
    buffers.check_finite()
    return weights


class StreamedLayers(Sequence):
    """A checkpoint's layers, each read from its files only when asked for, into one layer's worth
    of buffers that every layer shares: a layer is valid until the next one is read.

    Each read maps the files afresh and lets go of them after, so no more than one layer of the
    files stays resident either.
    """

    def __init__(
        self,
        arch: Architecture,
        open_state: Callable[[], Mapping[str, torch.Tensor]],
        buffers: Buffers,
        family: TensorMap | None = None,
    ):
        if not buffers.one_layer:
            raise ValueError("StreamedLayers needs Buffers(one_layer=True)")
        self.arch, self.open_state, self.buffers = arch, open_state, buffers
        self.family = family or FAMILIES[arch.family]

    def __len__(self) -> int:
        return self.arch.n_layers

    def __getitem__(self, index: int) -> Layer:
        if not 0 <= index < len(self):
            raise IndexError(index)
        state = _normalise(self.arch, _released(self.open_state()))
        layer = self.family.layer(self.arch, state, self.buffers, index)
        self.buffers.check_finite()
        return layer


def convert_streamed(
    arch: Architecture,
    open_state: Callable[[], Mapping[str, torch.Tensor]],
    buffers: Buffers,
    family: TensorMap | None = None,
) -> Weights:
    """:class:`Weights` whose unembedding and final norm are in memory, whose layers are
    :class:`StreamedLayers` and whose untied embedding is a :class:`StreamedEmbedding`: peak memory is
    one layer plus the unembedding. ``family`` as for :func:`convert`."""
    state = _normalise(arch, _released(open_state()))
    family = family or FAMILIES[arch.family]
    family.layer(arch, state, buffers, 0)  # fails early, as convert does, on a missing or misshapen weight
    weights = family.globals(arch, state, buffers, StreamedLayers(arch, open_state, buffers, family))
    buffers.check_finite()
    return weights


def _released(state: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    return state.released() if isinstance(state, LazyState) else state


@dataclass(frozen=True)
class TensorMap:
    """A family's weight names: one layer's tensors, and the embeddings and final norm around them."""

    layer: Callable[[Architecture, Mapping, Buffers, int], Layer]
    globals: Callable[[Architecture, Mapping, Buffers, Sequence[Layer]], Weights]


def _gpt2_layer(arch: Architecture, state: Mapping, buffers: Buffers, index: int) -> Layer:
    # GPT-2's Conv1D stores (in, out) already, and c_attn's columns are [q | k | v], heads contiguous.
    p = f"h.{index}."
    d, m = arch.d_model, arch.d_mlp
    shapes = {
        "ln_1.weight": (d,),
        "ln_1.bias": (d,),
        "attn.c_attn.weight": (d, 3 * d),
        "attn.c_attn.bias": (3 * d,),
        "attn.c_proj.weight": (d, d),
        "attn.c_proj.bias": (d,),
        "ln_2.weight": (d,),
        "ln_2.bias": (d,),
        "mlp.c_fc.weight": (d, m),
        "mlp.c_fc.bias": (m,),
        "mlp.c_proj.weight": (m, d),
        "mlp.c_proj.bias": (d,),
    }
    return Layer(*(buffers.take(state, p + name, shape) for name, shape in shapes.items()))


def _gpt2_globals(arch: Architecture, state: Mapping, buffers: Buffers, layers: Sequence[Layer]) -> Weights:
    d = arch.d_model
    embed = buffers.take(state, "wte.weight", (arch.vocab_size, d))
    positions = buffers.take(state, "wpe.weight", (arch.n_ctx, d))
    final = buffers.take(state, "ln_f.weight", (d,)), buffers.take(state, "ln_f.bias", (d,))
    return Weights(arch, embed, positions, layers, *final, embed.T)


def _neox_layer(arch: Architecture, state: Mapping, buffers: Buffers, index: int) -> Layer:
    p = f"gpt_neox.layers.{index}."
    h, e, d, m = arch.n_heads, arch.d_head, arch.d_model, arch.d_mlp

    def take(name: str, shape: tuple[int, ...], view=None, *, optional: bool = False) -> torch.Tensor:
        if optional and p + name not in state:  # attention_bias=False saves none
            return torch.zeros(shape, dtype=buffers.dtype, device=buffers.device)
        return buffers.take(state, p + name, shape, view)

    # NeoX's fused projection is (n_heads, [q|k|v], d_head) along its outputs; regroup to q, k, v.
    return Layer(
        take("input_layernorm.weight", (d,)),
        take("input_layernorm.bias", (d,)),
        take(
            "attention.query_key_value.weight",
            (3 * d, d),
            lambda w: w.reshape(h, 3, e, d).transpose(0, 1).reshape(3 * h * e, d).T,
        ),
        take(
            "attention.query_key_value.bias",
            (3 * d,),
            lambda b: b.reshape(h, 3, e).transpose(0, 1).reshape(3 * h * e),
            optional=True,
        ),
        take("attention.dense.weight", (d, d), lambda w: w.T),
        take("attention.dense.bias", (d,), optional=True),
        take("post_attention_layernorm.weight", (d,)),
        take("post_attention_layernorm.bias", (d,)),
        take("mlp.dense_h_to_4h.weight", (m, d), lambda w: w.T),
        take("mlp.dense_h_to_4h.bias", (m,)),
        take("mlp.dense_4h_to_h.weight", (d, m), lambda w: w.T),
        take("mlp.dense_4h_to_h.bias", (d,)),
    )


def _neox_globals(arch: Architecture, state: Mapping, buffers: Buffers, layers: Sequence[Layer]) -> Weights:
    d, vocab = arch.d_model, arch.vocab_size
    embed = buffers.embedding(state, "gpt_neox.embed_in.weight", (vocab, d), tied=False)
    # Pythia files call the unembedding embed_out; transformers 5 calls it lm_head in memory.
    unembed_key = "lm_head.weight" if "lm_head.weight" in state else "embed_out.weight"
    unembed = buffers.take(state, unembed_key, (vocab, d), slot="unembed").T
    final = (
        buffers.take(state, "gpt_neox.final_layer_norm.weight", (d,)),
        buffers.take(state, "gpt_neox.final_layer_norm.bias", (d,)),
    )
    return Weights(arch, embed, None, layers, *final, unembed)


FAMILIES = {"gpt2": TensorMap(_gpt2_layer, _gpt2_globals), "gpt_neox": TensorMap(_neox_layer, _neox_globals)}
