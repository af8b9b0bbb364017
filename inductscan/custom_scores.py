"""Users' own scores, computed by a scan beside the declared ones (docs/custom_scores.md).

:func:`register_score` declares a score as :class:`inductscan.metrics.Metric` declares the
package's own, with the function that computes it from what the forward pass has anyway:

- a head score (``level="head"``): ``function(pattern, layout) -> (head,)``, called once per layer
  with the layer's attention probabilities ``pattern`` (batch, head, query, key), float32, on the
  scan's device, and the probe's :class:`inductscan.probe.Layout` (where the first copy and the
  repeats sit); it returns one value per head (a tensor, an array or a list);
- a checkpoint score (``level="checkpoint"``): ``function(token_losses, layout) -> float``, called
  once per checkpoint with the loss of predicting each probe token from the position before it,
  (batch, position - 1) float32 (entry ``p - 1`` is token ``p``'s), as ``loss_first`` and
  ``loss_repeat`` are computed from them (inductscan/scores.py, ``loss_summary``).

The function must not change its inputs in place. A package makes its scores known to every scan
through the entry point group ``inductscan.scores`` (each entry point names a module, or a
function to call, that registers them); ``inductscan scan --score-module NAME`` imports a module
for one scan. A scan records each score's ``version`` with every row, as it records the probe:
rows scored with another version of a score, or without it, are never extended (the scan is
refused). Reading a folder needs none of this code: the folder records its scores' declarations
(see :func:`inductscan.results.declarations.learn_scores`).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from inductscan import metrics
from inductscan.errors import ConfigError, parameter
from inductscan.metrics import Metric

ENTRY_POINT_GROUP = "inductscan.scores"
NAME = re.compile(r"[a-z][a-z0-9_]*\Z")  # a column name in SQL and a file name in the folder, unquoted
# The table's other columns (inductscan/results/schema.py) and the derived ones: a score named so would hide one.
RESERVED = {
    "suite", "repo", "run", "revision", "seed", "step", "tokens", "layer", "head", "weights_sha256", "probe",
    "icl", "dtype", "scoring_version", "custom_scores", "scored_at", "inductscan_version", "same_weights_as",
    "hazard",
}  # fmt: skip


@dataclass(frozen=True)
class CustomScore:
    """A registered score: its declaration and the function that computes it."""

    metric: Metric
    function: Callable

    @property
    def name(self) -> str:
        return self.metric.name


_REGISTERED: dict[str, CustomScore] = {}
_entry_points_loaded = False


def register_score(
    name: str,
    *,
    level: str = "head",
    unit: str,
    direction: str = "rises",
    threshold: float | None = None,
    min_rise: float,
    label: str | None = None,
    version: str,
    function: Callable,
) -> CustomScore:
    """Declare a score that every scan of this process computes, stored in a column ``name`` after
    the package's own, and timed, queried, plotted and reported like them.

    level: ``"head"`` or ``"checkpoint"`` (the function's inputs are in the module's docstring).
    unit, direction (``"rises"`` or ``"falls"`` as induction heads form), threshold (the default
    level of ``first_above_threshold``, None for none) and min_rise (the smallest change counted as
    a phase change): as :class:`inductscan.metrics.Metric` has them. label: a few words for plots
    (default: the name). version: any string; change it whenever the function changes a value, so
    that rows of two definitions never pass for one another. Registering a name again replaces it.

    Example::

        inductscan.register_score("first_token", unit="attention probability", threshold=0.5,
                                  min_rise=0.05, version="1", function=first_token)
    """
    if isinstance(name, str) and name in RESERVED:
        raise ConfigError(f"score name {name!r} is a column of the table already: choose another name")
    if not isinstance(name, str) or not NAME.match(name):
        raise ConfigError(f"score name {name!r}: use lower-case letters, digits and _")
    if not callable(function):
        raise ConfigError(f"score {name!r}: function must be callable, got {function!r}")
    if not isinstance(version, str) or not version:
        raise ConfigError(f"score {name!r}: version must be a non-empty string, got {version!r}")
    metric = Metric(name, level, label or name.replace("_", " "), unit, direction, threshold, min_rise, version)
    metrics.add_metric(metric)  # refuses a name of the package's own
    score = CustomScore(metric, function)
    _REGISTERED[name] = score
    return score


def unregister_score(name: str) -> None:
    """Forget a registered score (a later scan no longer computes it)."""
    _REGISTERED.pop(name, None)
    metrics.remove_metric(name)


def reset() -> None:
    """Forget every registered score and every score learnt from a results folder; the next scan
    loads the entry points again. For tests and notebooks: a score otherwise lasts the process."""
    global _entry_points_loaded
    for name in [name for name in metrics.all_metrics() if metrics.is_added(name)]:
        metrics.remove_metric(name)
    _REGISTERED.clear()
    _entry_points_loaded = False


def registered() -> tuple[CustomScore, ...]:
    """The scores registered now, in the order of their names (their columns' order)."""
    return tuple(_REGISTERED[name] for name in sorted(_REGISTERED))


def versions(scores: tuple[CustomScore, ...]) -> dict[str, str]:
    """name -> version: what a scan records with every row (inductscan.results.settings.Settings)."""
    return {score.name: score.metric.version for score in scores}


def load_entry_points() -> None:
    """Load, once a process, every entry point of the group ``inductscan.scores``: each names a
    module (imported) or a callable (called with no argument) that registers scores. One that
    fails is a :class:`ConfigError` naming it."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda point: point.name):
        try:
            loaded = point.load()
        except Exception as error:  # the user's code: any error is the plugin's, named with it
            raise ConfigError(f"cannot load the score plugin {point.name} ({point.value}): {error}") from error
        if callable(loaded):
            loaded()


def import_modules(names: list[str]) -> None:
    """Import each module of ``names`` (scan --score-module), which registers its scores: a dotted
    name on ``sys.path``, or a ``.py`` file (a console script has no working folder on its path)."""
    for name in names:
        try:
            if name.endswith(".py"):
                _import_file(Path(name))
            else:
                importlib.import_module(name)
        except ConfigError:  # a registration refused: its own line says why
            raise
        except ModuleNotFoundError as error:
            hint = ""
            if error.name == name and Path(f"{name}.py").is_file():
                hint = (
                    f" (to import the file here, give {parameter('score_modules')} "
                    f"{name}.py, or put its folder on PYTHONPATH)"
                )
            raise ConfigError(f"cannot import {parameter('score_modules')} {name}: {error}{hint}") from error
        except (ImportError, OSError) as error:
            raise ConfigError(f"cannot import {parameter('score_modules')} {name}: {error}") from error
        except Exception as error:  # the module's own code failed: say where, in one line
            raise ConfigError(f"cannot import {parameter('score_modules')} {name}: {_where(error)}") from error


def _where(error: Exception) -> str:
    """``TypeError: ... (file, line N)``: the error and the last line of the user's code it passed."""
    import traceback

    frames = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if "importlib" not in frame.filename and not frame.filename.startswith("<frozen")
    ]
    where = f" ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""
    return f"{type(error).__name__}: {error}{where}"


def _import_file(path: Path) -> None:
    """Import a module from its file, once a process, under the name of its stem."""
    import importlib.util
    import sys

    if not path.is_file():
        raise FileNotFoundError(f"no file {path}")
    name = path.stem
    if name in sys.modules:
        if getattr(sys.modules[name], "__file__", None) == str(path.resolve()):
            return  # imported before: its scores are registered
        raise ImportError(f"a module named {name} is imported already (from elsewhere): rename the file")
    spec = importlib.util.spec_from_file_location(name, path.resolve())
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pickled functions (a Ray task) name their module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]  # a module that failed half way is no module: never imported by name after
        raise


def head_values(scores: tuple[CustomScore, ...], pattern, layout) -> dict:
    """Each head score of ``scores`` on one layer: pattern (batch, head, query, key) -> name: (head,)
    float64 on the CPU."""
    import torch

    found = {}
    probabilities = pattern.float()  # the same tensor for a float32 scan
    for score in scores:
        if score.metric.level == "head":
            values = torch.as_tensor(score.function(probabilities, layout), dtype=torch.float64).cpu()
            if values.shape != (pattern.shape[1],):
                raise ConfigError(
                    f"score {score.name}: its function returned shape {tuple(values.shape)}, expected one value "
                    f"per head ({pattern.shape[1]},)"
                )
            found[score.name] = values
    return found


def checkpoint_values(scores: tuple[CustomScore, ...], token_losses, layout) -> dict[str, float]:
    """Each checkpoint score of ``scores``: token_losses (batch, position - 1) -> name: value."""
    import torch

    losses = token_losses.float()
    found = {}
    for score in scores:
        if score.metric.level == "checkpoint":
            value = torch.as_tensor(score.function(losses, layout), dtype=torch.float64)
            if value.numel() != 1:
                raise ConfigError(
                    f"score {score.name}: its function returned shape {tuple(value.shape)}, expected one number"
                )
            found[score.name] = value.item()
    return found
