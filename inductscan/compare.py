"""Do seeds learn the same things, token by token? Analyses of the per-token loss table
(:func:`inductscan.load_token_losses`), pure numpy and pandas.

- :func:`seed_scatter`: two seeds' log-probabilities of every ICL token at one step, their
  Pearson correlation, and the tokens on which they disagree most.
- :func:`token_curves` and :func:`classify_curves`: each token's loss against tokens seen; a curve
  is S-shaped when a logistic in log tokens fits it better than a straight line by BIC.
- :func:`loss_pca`: the principal components of the (checkpoint x token) loss matrix, the
  trajectory of each seed through them, and each component's top tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from inductscan.errors import ConfigError, parameter
from inductscan.labels import run_label
from inductscan.vocabulary import RUN_KEYS

TOKEN = ["example", "position"]
MIN_CURVE_POINTS = 6  # a logistic has 4 parameters: fewer points leave BIC nothing to judge
# the logistic's centre and steepness are searched on a grid; for each, the level and height are least squares
CENTRES = 41
STEEPNESSES = np.geomspace(0.5, 60.0, 24)  # per unit of the log-token range: from almost linear to a step
BIC_MARGIN = 2.0  # "positive evidence" for the logistic (Kass & Raftery 1995): a lower BIC by at least this
DEGENERATE = 1e-7  # a singular value below this share of the largest: the Gram matrix's rounding (sqrt(eps))


def _runs(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[RUN_KEYS].drop_duplicates().sort_values(RUN_KEYS).reset_index(drop=True)


def _pick_runs(frame: pd.DataFrame, seeds: list[int] | tuple[int, ...] | None, count: int | None) -> pd.DataFrame:
    """The runs (suite, run, seed, and a ``label`` that tells them apart) chosen by ``seeds``
    (default: all), the first ``count`` of them."""
    runs = _runs(frame)
    unique = not runs["seed"].duplicated().any()
    runs["label"] = [run_label(*identity, with_run=not unique) for identity in runs[RUN_KEYS].itertuples(index=False)]
    if seeds is not None:
        require_seeds(seeds, runs["seed"])
        chosen = runs[runs["seed"].isin(list(seeds))]
        runs = pd.concat([chosen[chosen["seed"] == seed] for seed in dict.fromkeys(seeds)])
    if count is not None:
        if len(runs) < count:
            raise ConfigError(f"this needs {count} runs (seeds) of token losses, the table has {len(runs)}")
        runs = runs.head(count)
    return runs.reset_index(drop=True)


def require_seeds(wanted, held) -> None:
    """Raise :class:`ConfigError` naming the seeds of ``wanted`` that are not ``held`` (the seeds
    the token losses hold), and those held."""
    absent = sorted(set(wanted) - {int(seed) for seed in held})
    if absent:
        seeds = ", ".join(map(str, sorted({int(seed) for seed in held})))
        holds = f"the table has seeds {seeds}" if seeds else "the table holds no token losses (scanned without them)"
        raise ConfigError(f"no token losses of seed(s) {', '.join(map(str, absent))}; {holds}")


def _rows_of(frame: pd.DataFrame, run: pd.Series) -> pd.DataFrame:
    # a column at a time: comparing the frame with the row as a whole boxes every string (40x slower)
    return frame[np.logical_and.reduce([(frame[key] == run[key]).to_numpy(dtype=bool) for key in RUN_KEYS])]


@dataclass(frozen=True)
class SeedScatter:
    """Two runs' log-probabilities of the same tokens at one step."""

    labels: tuple[str, str]
    step: int
    points: pd.DataFrame  # example, position, logprob_a, logprob_b, difference (a - b)
    correlation: float  # Pearson's r of logprob_a and logprob_b

    def outliers(self, top: int = 10) -> pd.DataFrame:
        """The ``top`` tokens on which the two runs differ most (largest |logprob_a - logprob_b|)."""
        if top < 1:
            raise ConfigError(f"{parameter('top')} must be >= 1, got {top}")
        order = self.points["difference"].abs().sort_values(ascending=False, kind="stable").index
        return self.points.loc[order[:top]].reset_index(drop=True)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's correlation of two equally long samples; NaN when either is constant."""
    a, b = np.asarray(a, dtype=float) - np.mean(a), np.asarray(b, dtype=float) - np.mean(b)
    scale = np.sqrt(np.sum(a * a) * np.sum(b * b))
    return float(np.sum(a * b) / scale) if scale > 0 else float("nan")


def seed_scatter(losses: pd.DataFrame, *, seeds: tuple[int, int] | None = None, step: int | None = None) -> SeedScatter:
    """Per-token log-probabilities (``-loss``) of two runs at one step: ``seeds`` (default: the
    table's first two runs), ``step`` (default: the last step both have)."""
    if losses.empty:
        raise ConfigError("no token losses to compare")
    if seeds is not None and len(seeds) != 2:
        raise ConfigError(f"a seed scatter compares two seeds, got {len(seeds)}")
    first, second = (row for _, row in _pick_runs(losses, seeds, 2).iterrows())
    rows_a, rows_b = _rows_of(losses, first), _rows_of(losses, second)
    shared = sorted(set(rows_a["step"]) & set(rows_b["step"]))
    if step is None:
        if not shared:
            raise ConfigError("the two seeds have no step in common")
        step = shared[-1]
    elif step not in shared:
        raise ConfigError(f"step {step} is not a step of both seeds; their common steps: {_listed(shared)}")
    a = rows_a[rows_a["step"] == step].set_index(TOKEN)["loss"]
    b = rows_b[rows_b["step"] == step].set_index(TOKEN)["loss"]
    joined = pd.concat([-a.astype(float), -b.astype(float)], axis=1, keys=["logprob_a", "logprob_b"], join="inner")
    points = joined.reset_index()
    points["difference"] = points["logprob_a"] - points["logprob_b"]
    labels = (first["label"], second["label"])
    return SeedScatter(labels, int(step), points, pearson(points["logprob_a"], points["logprob_b"]))


def _listed(values: list[int]) -> str:
    shown = ", ".join(map(str, values[:8]))
    return shown + (", ..." if len(values) > 8 else "") if values else "none"


def token_curves(losses: pd.DataFrame, run: pd.Series | None = None) -> pd.DataFrame:
    """One run's loss matrix: rows are checkpoints (index: step and tokens, in step order), columns
    the tokens (example, position). ``run`` defaults to the table's first run."""
    run = _runs(losses).iloc[0] if run is None else run
    rows = _rows_of(losses, run)
    return rows.pivot_table(index=["step", "tokens"], columns=TOKEN, values="loss", aggfunc="first").sort_index()


def changing_most(matrix: pd.DataFrame, count: int) -> pd.DataFrame:
    """The ``count`` token columns whose loss changes most from the first checkpoint to the last."""
    change = (matrix.iloc[-1] - matrix.iloc[0]).abs()
    return matrix[change.sort_values(ascending=False, kind="stable").index[:count]]


def _least_squares_rss(design: np.ndarray, curves: np.ndarray) -> np.ndarray:
    """Residual sum of squares of each curve's least-squares fit. design (points, parameters),
    curves (points, curves) -> (curves,)."""
    coefficients, *_ = np.linalg.lstsq(design, curves, rcond=None)
    residuals = curves - design @ coefficients
    return np.sum(residuals * residuals, axis=0)


def bic(rss: np.ndarray, points: int, parameters: int) -> np.ndarray:
    """Bayesian information criterion of least-squares fits with Gaussian noise:
    ``n log(RSS / n) + k log(n)`` (the residuals floored to keep an exact fit finite)."""
    return points * np.log(np.maximum(rss, 1e-12) / points) + parameters * np.log(points)


def classify_curves(x: np.ndarray, curves: np.ndarray) -> pd.DataFrame:
    """Whether each curve is S-shaped or smooth against ``x`` (log tokens).

    x (points,); curves (points, curves). A straight line ``a + b x`` (2 parameters) and a logistic
    ``a + b / (1 + exp(-k (x - c)))`` (4 parameters) are fitted by least squares, the logistic's
    centre ``c`` and steepness ``k`` by a grid search (the centre within the range of x; the
    steepness from almost linear to a step within one checkpoint) and its ``a``, ``b`` exactly for
    each. A curve is ``S-shaped`` when the logistic's BIC is lower than the line's by at least
    ``BIC_MARGIN`` (2: positive evidence, Kass & Raftery 1995), else ``smooth``.
    Columns: ``bic_line``, ``bic_logistic``, ``shape``.
    """
    x = np.asarray(x, dtype=float)
    curves = np.asarray(curves, dtype=float)
    points = len(x)
    if points < MIN_CURVE_POINTS:
        raise ConfigError(
            f"too few checkpoints to tell a curve's shape: {points} (with tokens seen > 0); need {MIN_CURVE_POINTS}"
        )
    ones = np.ones_like(x)
    line = _least_squares_rss(np.stack([ones, x], axis=1), curves)
    span = x.max() - x.min()
    best = np.full(curves.shape[1], np.inf)
    for centre in np.linspace(x.min(), x.max(), CENTRES):
        for steepness in STEEPNESSES / span:
            sigmoid = 1.0 / (1.0 + np.exp(-steepness * (x - centre)))
            best = np.minimum(best, _least_squares_rss(np.stack([ones, sigmoid], axis=1), curves))
    bic_line, bic_logistic = bic(line, points, 2), bic(best, points, 4)
    shape = np.where(bic_logistic <= bic_line - BIC_MARGIN, "S-shaped", "smooth")
    return pd.DataFrame({"bic_line": bic_line, "bic_logistic": bic_logistic, "shape": shape})


@dataclass(frozen=True)
class CurveShapes:
    """The curves of the tokens whose loss changes most, per run, and each one's shape."""

    curves: dict[str, pd.DataFrame]  # run label -> (checkpoints with tokens > 0, tokens) loss matrix
    shapes: pd.DataFrame  # seed label, example, position, change, bic_line, bic_logistic, shape

    def shares(self) -> pd.DataFrame:
        """Per run, the share of its classified tokens of each shape."""
        counts = self.shapes.groupby("run")["shape"].value_counts(normalize=True).unstack(fill_value=0.0)
        return counts.reindex(columns=["S-shaped", "smooth"], fill_value=0.0)


def curve_shapes(losses: pd.DataFrame, *, seeds: list[int] | None = None, count: int = 20) -> CurveShapes:
    """For each run (of ``seeds``, default all), the ``count`` tokens whose loss changes most from
    its first checkpoint with tokens seen > 0 to its last, each classified by :func:`classify_curves`
    against log tokens seen."""
    if count < 1:
        raise ConfigError(f"{parameter('top')} must be >= 1, got {count}")
    if losses.empty:
        raise ConfigError("no token losses to draw")
    matrices, shapes = {}, []
    for _, run in _pick_runs(losses, seeds, None).iterrows():
        matrix = token_curves(losses, run)
        matrix = matrix[matrix.index.get_level_values("tokens") > 0]  # log tokens: step 0 and a suite without tokens
        if matrix.empty:
            raise ConfigError(f"the token losses have no tokens seen (> 0): scan with {parameter('tokens_per_step')}")
        chosen = changing_most(matrix, count)
        x = np.log(chosen.index.get_level_values("tokens").to_numpy(dtype=float))
        classified = classify_curves(x, chosen.to_numpy())
        label = run["label"]
        classified.insert(0, "run", label)
        classified.insert(1, "example", chosen.columns.get_level_values("example"))
        classified.insert(2, "position", chosen.columns.get_level_values("position"))
        classified.insert(3, "change", (chosen.iloc[-1] - chosen.iloc[0]).to_numpy())
        matrices[label] = chosen
        shapes.append(classified)
    return CurveShapes(matrices, pd.concat(shapes, ignore_index=True))


@dataclass(frozen=True)
class LossPca:
    """Principal components of the (checkpoint x token) loss matrix of one or more runs."""

    trajectory: pd.DataFrame  # run, step, tokens, pc1, pc2, ... : each checkpoint's coordinates
    components: pd.DataFrame  # (components, tokens) loadings, unit rows; columns (example, position)
    explained: np.ndarray  # share of the variance of each component

    def top_tokens(self, top: int = 5) -> pd.DataFrame:
        """Each component's ``top`` tokens by absolute loading."""
        rows = []
        for name, loadings in self.components.iterrows():
            for example, position in loadings.abs().sort_values(ascending=False).head(top).index:
                loading = loadings[(example, position)]
                rows.append({"component": name, "example": example, "position": position, "loading": loading})
        return pd.DataFrame(rows, columns=["component", "example", "position", "loading"])


def principal_components(matrix: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first ``count`` principal components of ``matrix`` (samples, features), its columns centred:
    (scores (samples, count), components (count, features), explained variance share (count,)).

    With fewer samples than features (checkpoints than tokens, as usual) they come from the
    eigenvectors of the (samples x samples) Gram matrix: the SVD's components (up to sign) at a
    fraction of its cost (1,540 checkpoints x 8,176 tokens: seconds, against a minute for the SVD).
    """
    centred = matrix - matrix.mean(axis=0)
    total = np.sum(centred * centred)
    count = min(count, *centred.shape)
    if centred.shape[0] < centred.shape[1]:
        eigenvalues, vectors = np.linalg.eigh(centred @ centred.T)  # ascending
        order = np.argsort(eigenvalues, kind="stable")[::-1][:count]
        singular = np.sqrt(np.clip(eigenvalues[order], 0.0, None))
        components = (centred.T @ vectors[:, order]).T  # (count, features), each row singular * its unit vector
        norms = np.linalg.norm(components, axis=1, keepdims=True)
        # a component of no variance (to the Gram matrix's rounding) has no direction: zeros, not rounding's noise
        real = singular[:, None] > DEGENERATE * singular.max(initial=0.0)
        vt = np.where(real, components / np.where(norms > 0, norms, 1.0), 0.0)
    else:
        _, singular, vt = np.linalg.svd(centred, full_matrices=False)
        singular, vt = singular[:count], vt[:count]
    scores = centred @ vt.T
    explained = singular**2 / total if total > 0 else np.zeros(count)
    return scores, vt, explained


def loss_pca(losses: pd.DataFrame, *, seeds: list[int] | None = None, count: int = 2) -> LossPca:
    """The first ``count`` principal components of the loss matrix whose rows are every checkpoint
    of every run (``seeds``, default all) and whose columns are the tokens all of them share."""
    if losses.empty:
        raise ConfigError("no token losses to analyse")
    runs = _pick_runs(losses, seeds, None)
    matrices = {run["label"]: token_curves(losses, run) for _, run in runs.iterrows()}
    stacked = pd.concat(matrices, names=["run"]).dropna(axis=1)
    if len(stacked) < 2:
        raise ConfigError(f"a principal component analysis needs at least 2 checkpoints, the table has {len(stacked)}")
    scores, components, explained = principal_components(stacked.to_numpy(dtype=float), count)
    names = [f"pc{index + 1}" for index in range(scores.shape[1])]
    trajectory = pd.concat([stacked.index.to_frame(index=False), pd.DataFrame(scores, columns=names)], axis=1)
    return LossPca(trajectory, pd.DataFrame(components, index=names, columns=stacked.columns), explained)
