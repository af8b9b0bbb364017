"""One head's attention pattern at one checkpoint, re-run from what a results folder recorded.

A scan keeps each head's scores, not its pattern: the patterns of a whole scan would dwarf the table
(the arithmetic is in docs/scores.md, "Looking at one head"). So a pattern is made again when it is
wanted. :func:`head_patterns` finds the checkpoint as the scan found it (its run's local folder, or
its Hub repo at the step's revision, through the Hugging Face cache), checks that its weights are
the ones scored (their sha256), runs the folder's own probe through it (the token ids stored in
``probes/``, with the recorded dtype) and returns the heads' (query, key) attention probabilities:
the same probabilities the scores were taken from. :func:`plot_head_pattern` draws one, with the
cells the induction score weighs marked.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from inductscan import scores
from inductscan.checkpoints import CheckpointFiles, CheckpointRef, fetch_planned, locate
from inductscan.errors import (
    CheckpointError,
    CheckpointUnavailableError,
    ConfigError,
    OutputError,
    UnknownRunError,
    parameter,
)
from inductscan.families.registry import make_scorer, read_architecture
from inductscan.hub import Retry, remove_cached
from inductscan.probe import Layout
from inductscan.results import sql
from inductscan.results.probes import load_probe
from inductscan.results.queries import load_selection
from inductscan.results.selection import selection
from inductscan.status_report import recorded_suites
from inductscan.weights import read_state_dict

RECORDED = ["tokens", "repo", "revision", "weights_sha256", "probe", "dtype", "induction"]


@dataclass(frozen=True)
class Checkpoint:
    """What a results folder recorded of one scored checkpoint."""

    suite: str
    run: str
    seed: int
    step: int
    tokens: int
    repo: str
    weights_sha256: str
    probe: dict  # the probe's record (its parameters and the sha256 of its token ids)
    dtype: str
    induction: np.ndarray  # (layer, head): each head's recorded induction score

    @property
    def layers(self) -> int:
        return self.induction.shape[0]

    @property
    def heads(self) -> int:
        return self.induction.shape[1]

    @property
    def layout(self) -> Layout:
        return Layout(self.probe["length"], self.probe["repeats"], self.probe.get("bos") is not None)

    def describe(self) -> str:
        return f"{self.run} (seed {self.seed}) step {self.step:,}"


@dataclass(frozen=True)
class HeadPattern:
    """One head's attention probabilities on the probe: ``values`` (query, key), float64, zero above
    the diagonal; one probe sequence's (``sequence``), or the mean over the probe's sequences
    (``sequence`` None). ``numpy.asarray(pattern)`` is ``values``."""

    values: np.ndarray
    checkpoint: Checkpoint
    layer: int
    head: int
    sequence: int | None

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return np.asarray(self.values, dtype=dtype)

    @property
    def induction_cells(self) -> tuple[np.ndarray, np.ndarray]:
        return induction_cells(self.checkpoint.layout)

    @property
    def induction(self) -> float:
        """The mean of the cells the induction score weighs; of the mean pattern (``sequence`` None)
        this is the head's induction score, as the scan computed it."""
        return float(self.values[self.induction_cells].mean())

    @property
    def recorded_induction(self) -> float:
        return float(self.checkpoint.induction[self.layer, self.head])


def induction_cells(layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """The (query, key) cells the induction score averages (docs/scores.md): every query ``q`` in
    repeats 2..R with key ``q - length + 1``, the token after the previous copy of ``q``'s token.
    Read from the score's own weights (:func:`inductscan.scores.pattern_weights`), so the cells
    marked are the cells scored."""
    queries_, keys = scores.pattern_weights(layout)["induction"].nonzero(as_tuple=True)
    return queries_.numpy(), keys.numpy()


def recorded_checkpoint(
    results: str | os.PathLike,
    step: int,
    *,
    suite: str | None = None,
    run: str | None = None,
    seed: int | None = None,
) -> Checkpoint:
    """The scored checkpoint at ``step`` of the one run the selection leaves; a
    :class:`ConfigError` naming the steps nearby when the run has no such step, or the runs when
    several have it."""
    chosen = {"suite": suite, "run": run, "seed": seed}
    rows = load_selection(results, columns=RECORDED, step_range=(step, step), **chosen).reset_index()
    if rows.empty:
        raise ConfigError(_no_step(results, step, chosen))
    runs = rows[["suite", "run", "seed"]].drop_duplicates().sort_values(["suite", "run"])
    if len(runs) > 1:
        named = ", ".join(f"{row.run} (suite {row.suite}, seed {row.seed})" for row in runs.itertuples())
        raise ConfigError(
            f"step {step} is scored in {len(runs)} runs: {named}; "
            f"choose one with {parameter('run')} or {parameter('seed')}"
        )
    first = rows.iloc[0]
    layers, heads = int(rows["layer"].max()) + 1, int(rows["head"].max()) + 1
    induction = np.full((layers, heads), np.nan)
    induction[rows["layer"].to_numpy(), rows["head"].to_numpy()] = rows["induction"].to_numpy()
    return Checkpoint(
        suite=str(first["suite"]),
        run=str(first["run"]),
        seed=int(first["seed"]),
        step=step,
        tokens=int(first["tokens"]),
        repo=str(first["repo"]),
        weights_sha256=str(first["weights_sha256"]),
        probe=json.loads(first["probe"]),
        dtype=first["dtype"] if isinstance(first["dtype"], str) else "float32",  # null before 0.2: float32
        induction=induction,
    )


def _no_step(results, step: int, chosen: dict) -> str:
    rows = load_selection(results, columns=["tokens"], layer=0, head=0, **chosen).reset_index()
    if rows.empty:
        seeds = sorted(seed for (seed,) in sql.distinct(results, ["seed"], selection(**(chosen | {"seed": None}))))
        return f"{results} holds no scored checkpoint of the selection (seeds held: {', '.join(map(str, seeds))})"
    steps = np.sort(rows["step"].unique())
    index = int(np.searchsorted(steps, step))
    near = ", ".join(str(value) for value in steps[max(0, index - 2) : index + 2])
    runs = rows["run"].nunique()
    where = "the selection's runs" if runs > 1 else f"run {rows['run'].iloc[0]}"
    return f"no scored checkpoint at step {step:,} in {where}; scored steps nearby: {near}"


def head_patterns(
    results: str | os.PathLike,
    step: int,
    heads: list[tuple[int, int]],
    *,
    suite: str | None = None,
    run: str | None = None,
    seed: int | None = None,
    sequence: int | None = None,
    device: str = "cpu",
    layer_by_layer: bool = False,
) -> list[HeadPattern]:
    """The attention patterns of ``heads`` ((layer, head) pairs) at one scored checkpoint, from one
    forward pass of the folder's probe; the checkpoint is fetched once (a Hub file is downloaded into
    the Hugging Face cache if it is not there, and removed again afterwards, as a scan does).

    ``sequence`` chooses one probe sequence (0 .. batch - 1); None (the default) averages the probe's
    sequences, whose copies all sit at the same positions, so that the mean of the marked cells is
    the head's recorded induction score. ``layer_by_layer`` reads each layer's weights from disk as
    the pass reaches it (a model too large for memory; the native families only).

    Raises :class:`ConfigError` for a step the folder has not scored or a layer, head or sequence
    out of range, :class:`CheckpointUnavailableError` when the checkpoint cannot be fetched any more
    or its weights are not those scored.
    """
    checkpoint = recorded_checkpoint(results, step, suite=suite, run=run, seed=seed)
    for layer, head in heads:
        _check_range("layer", layer, checkpoint.layers, "the checkpoint has", "layers")
        _check_range("head", head, checkpoint.heads, "the checkpoint has", "heads per layer")
    ids = _probe_ids(results, checkpoint)
    if sequence is not None:
        _check_range("sequence", sequence, len(ids), "the probe has", "sequences")
    ref = _checkpoint_ref(results, checkpoint)
    files = _fetch(ref)
    try:
        if files.sha256 != checkpoint.weights_sha256:
            raise CheckpointUnavailableError(
                f"the weights of {checkpoint.describe()} have changed since the scan (sha256 "
                f"{checkpoint.weights_sha256[:12]}... scored, {files.sha256[:12]}... now): its pattern is gone"
            )
        arch = read_architecture(files.config)
        scorer = make_scorer(arch, getattr(torch, checkpoint.dtype), device, layer_by_layer=layer_by_layer)
        weights = scorer.load(lambda: read_state_dict(list(files.weights)))
        found = scorer.patterns(weights, ids, {layer for layer, _ in heads})  # layer -> (batch, head, query, key)
    finally:
        for path in files.downloaded:
            remove_cached(path)
    patterns = []
    for layer, head in heads:
        values = found[layer][:, head].double()  # (batch, query, key)
        values = values.mean(dim=0) if sequence is None else values[sequence]
        patterns.append(HeadPattern(values.cpu().numpy(), checkpoint, layer, head, sequence))
    return patterns


def head_pattern(
    results: str | os.PathLike,
    step: int,
    layer: int,
    head: int,
    *,
    suite: str | None = None,
    run: str | None = None,
    seed: int | None = None,
    sequence: int | None = None,
    device: str = "cpu",
    layer_by_layer: bool = False,
) -> HeadPattern:
    """One head's attention pattern at one scored checkpoint (see :func:`head_patterns`).

    Example::

        pattern = inductscan.head_pattern("results/", 2000, layer=1, head=3, seed=0)
        pattern.values                    # (query, key) numpy array: the mean over the probe's sequences
        inductscan.plot_head_pattern(pattern).savefig("pattern.png")
    """
    (found,) = head_patterns(
        results,
        step,
        [(layer, head)],
        suite=suite,
        run=run,
        seed=seed,
        sequence=sequence,
        device=device,
        layer_by_layer=layer_by_layer,
    )
    return found


def _check_range(name: str, value: int, count: int, owner: str, what: str) -> None:
    if not 0 <= value < count:
        raise ConfigError(f"--{name} {value} is out of range: {owner} {count} {what} (0 .. {count - 1})")


def _probe_ids(results, checkpoint: Checkpoint) -> torch.Tensor:
    """The token ids of the probe the checkpoint was scored with, (batch, position), as stored."""
    ids = load_probe(results, suite=checkpoint.suite)
    if hashlib.sha256(ids.numpy().tobytes()).hexdigest() != checkpoint.probe["ids_sha256"]:
        raise OutputError(
            f"the probe stored in {Path(results) / 'probes'} is not the one {checkpoint.describe()} was scored with"
        )
    return ids


def _checkpoint_ref(results, checkpoint: Checkpoint) -> CheckpointRef:
    """Where the scan found the checkpoint: its suite and run as the folder records them."""
    suite = next(found for found in recorded_suites(Path(results)) if found.name == checkpoint.suite)
    run = next(found for found in suite.runs if found.name == checkpoint.run)
    return CheckpointRef(suite, run, checkpoint.step)


def _fetch(ref: CheckpointRef) -> CheckpointFiles:
    try:
        return fetch_planned(locate(ref, Retry()), Retry())
    except (CheckpointError, UnknownRunError) as error:
        raise CheckpointUnavailableError(f"cannot re-run {ref.describe()}: {error}") from error


def plot_head_pattern(pattern: HeadPattern, *, size: tuple[float, float] = (6.4, 5.6)):
    """A matplotlib Figure of one head's pattern: query (rows) x key (columns), the cells above the
    diagonal (which causal attention never sees) left blank, the cells the induction score weighs
    outlined in red, the repeats of the probe divided by dotted lines."""
    import matplotlib
    from matplotlib.collections import PatchCollection
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, Rectangle

    values = pattern.values
    positions = len(values)
    future = np.triu(np.ones((positions, positions), dtype=bool), k=1)
    figure = Figure(figsize=size, layout="constrained")
    axes = figure.add_subplot()
    colours = matplotlib.colormaps["viridis"].with_extremes(bad="white")
    image = axes.imshow(np.ma.masked_array(values, mask=future), cmap=colours, vmin=0.0, interpolation="nearest")
    figure.colorbar(image, ax=axes, label="attention probability", shrink=0.85)
    rows, columns = pattern.induction_cells
    cells = [Rectangle((key - 0.5, query - 0.5), 1, 1) for query, key in zip(rows, columns)]
    axes.add_collection(PatchCollection(cells, facecolor="none", edgecolor="red", linewidth=0.7))
    layout = pattern.checkpoint.layout
    for repeat in range(1, layout.repeats):
        edge = layout.offset + repeat * layout.length - 0.5
        axes.axhline(edge, color="0.6", linestyle=":", linewidth=0.6)
        axes.axvline(edge, color="0.6", linestyle=":", linewidth=0.6)
    marked = Patch(facecolor="none", edgecolor="red", label=f"induction: key = query - {layout.length} + 1")
    axes.legend(handles=[marked], loc="upper right", fontsize="small", frameon=False)
    axes.set_xlabel("key position")
    axes.set_ylabel("query position")
    checkpoint = pattern.checkpoint
    shown = f"probe sequence {pattern.sequence}" if pattern.sequence is not None else "mean of the probe's sequences"
    axes.set_title(
        f"{checkpoint.run} (seed {checkpoint.seed}), step {checkpoint.step:,}: layer {pattern.layer} head "
        f"{pattern.head}\n{shown}; induction {pattern.induction:.3f} (scored {pattern.recorded_induction:.3f})",
        fontsize="medium",
    )
    return figure


def save_head_pattern(
    results: str | os.PathLike,
    step: int,
    layer: int,
    head: int,
    output: str | os.PathLike,
    *,
    device: str = "cpu",
    **options,
) -> HeadPattern:
    """:func:`head_pattern` (``options``: its ``suite``, ``run``, ``seed``, ``sequence`` and
    ``layer_by_layer``) drawn by :func:`plot_head_pattern` into the image file ``output`` (.png,
    .svg or .pdf, in a folder that exists), checked before the checkpoint is run."""
    from inductscan.plan import ScanConfig
    from inductscan.plot_kinds import check_image_path, save_figure
    from inductscan.results.layout import refuse_a_missing_folder

    output = Path(output)
    check_image_path(output)
    refuse_a_missing_folder(output, "the plot")
    ScanConfig(device=device)  # a device torch has: cpu, cuda[:N] or mps, else one line
    found = head_pattern(results, step, layer, head, device=device, **options)
    save_figure(plot_head_pattern(found), output)
    return found
