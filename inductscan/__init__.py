"""inductscan: find when induction heads form, across checkpoint suites and their seeds.

Public API::

    inductscan.load_results(path, **filters)  # DataFrame indexed by (seed, step, layer, head)
    inductscan.load_probe(path)               # the probe's token ids, (batch, position)
    inductscan.load_failures(path)            # checkpoints that were skipped or failed, and why
    inductscan.load_icl_curves(path)          # with --icl-dataset: mean loss per token position
    inductscan.find_phase_changes(results)    # onset / midpoint / end per run (or per head)
    inductscan.plot_timing(results)           # and plot_heatmap, plot_seed_comparison, plot_in_context_gain,
                                              # plot_icl_score, plot_icl_curves
"""

from inductscan.phases import find_phase_changes
from inductscan.store import load_failures, load_icl_curves, load_probe, load_results, package_version

__version__ = package_version()
__all__ = [
    "find_phase_changes",
    "load_failures",
    "load_icl_curves",
    "load_probe",
    "load_results",
    "plot_heatmap",
    "plot_icl_curves",
    "plot_icl_score",
    "plot_in_context_gain",
    "plot_seed_comparison",
    "plot_timing",
    "__version__",
]
PLOTS = ("plot_heatmap", "plot_icl_curves", "plot_icl_score", "plot_in_context_gain", "plot_seed_comparison",
         "plot_timing")


def __getattr__(name: str):
    """The plot functions, imported on first use so that ``import inductscan`` needs no matplotlib."""
    if name in PLOTS:
        from inductscan import plots

        return getattr(plots, name)
    raise AttributeError(f"module 'inductscan' has no attribute {name!r}")
