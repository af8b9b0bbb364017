"""inductscan: find when induction heads form, across checkpoint suites and their seeds.

Public API (see inductscan/api.py and docs/scores.md)::

    inductscan.scan(source, out, seeds=..., config=inductscan.ScanConfig(...))  # -> ScanSummary
    inductscan.status(results)                # done, failed, skipped, missing per run
    inductscan.load_results(path, **filters)  # DataFrame indexed by (suite, run, seed, step, layer, head)
    inductscan.compact(path)                  # one file per run instead of one per checkpoint (a scan does it too)
    inductscan.query(path, best=True)         # rows as a flat frame: selections, best and top heads
    inductscan.sql(path, "SELECT ...")        # any SQL (DuckDB) over the tables, as `query --sql`
    inductscan.load_probe(path)               # the probe's token ids, (batch, position)
    inductscan.load_failures(path)            # checkpoints that were skipped or failed, and why
    inductscan.load_icl_curves(path)          # with --icl-dataset: mean loss per token position
    inductscan.find_phase_changes(results)    # onset / midpoint / end per run (or per head)
    inductscan.phase_changes([r1, r2], x="fraction")  # the same, read from folders, as `inductscan phases`
    inductscan.plot("timing", results, "timing.png")  # any kind of `inductscan plot` (inductscan.plot_kinds)
    inductscan.compare_seeds(path, seeds=[21, 49])  # two seeds' per-token log-probabilities, as `compare`
    inductscan.register_score(name, ...)      # a score of your own, computed by every scan (docs/custom_scores.md)
    inductscan.plot_timing(results)           # and plot_heatmap, plot_seed_comparison, plot_in_context_gain,
                                              # plot_icl_score, plot_icl_curves
    inductscan.write_report(results, "report.html")  # one self-contained interactive HTML page
    inductscan.head_pattern(results, step, layer, head)  # one head's attention, its checkpoint re-run;
                                              # plot_head_pattern draws it, save_head_pattern writes it
    inductscan.compare_timing([r1, r2], x="fraction")  # phase timing of several folders or suites
    inductscan.load_token_losses(path)        # with --token-losses: each ICL token's loss per checkpoint
    inductscan.seed_scatter(losses)           # and curve_shapes, loss_pca; plots: plot_compare,
                                              # plot_seed_scatter, plot_token_curves, plot_loss_pca

``import inductscan`` loads nothing heavy: pandas and pyarrow are imported when a table is first
read, torch and transformers when a scan (or a pattern) is, matplotlib when a plot is, plotly when a report is.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("inductscan")
except PackageNotFoundError:
    __version__ = "unknown"

LAZY = {  # name: the module that defines it, imported on first use
    "find_phase_changes": "inductscan.phases",
    "register_score": "inductscan.custom_scores",
    "unregister_score": "inductscan.custom_scores",
    "query": "inductscan.results.queries",
    "sql": "inductscan.results.queries",
    "compact": "inductscan.results.compact",
    "load_failures": "inductscan.results.records",
    "load_icl_curves": "inductscan.results.read",
    "load_probe": "inductscan.results.probes",
    "load_results": "inductscan.results.read",
    "scan": "inductscan.api",
    "phase_changes": "inductscan.phase_table",
    "plot": "inductscan.plot_kinds",
    "compare_seeds": "inductscan.seed_comparison",
    "PlanArguments": "inductscan.plan",
    "status": "inductscan.status_report",
    "ScanConfig": "inductscan.plan",
    "RayOptions": "inductscan.plan",
    "write_report": "inductscan.report",
    **{
        name: "inductscan.pattern"
        for name in ("head_pattern", "head_patterns", "plot_head_pattern", "save_head_pattern")
    },
    "load_token_losses": "inductscan.results.token_losses",
    "compare_timing": "inductscan.timing_compare",
    "load_several": "inductscan.timing_compare",
    **{name: "inductscan.compare" for name in ("seed_scatter", "curve_shapes", "classify_curves", "loss_pca")},
    **{
        name: "inductscan.compare_plots"
        for name in ("plot_compare", "plot_seed_scatter", "plot_token_curves", "plot_loss_pca")
    },
    **{
        name: "inductscan.plots"
        for name in (
            "plot_heatmap",
            "plot_icl_curves",
            "plot_icl_score",
            "plot_in_context_gain",
            "plot_seed_comparison",
            "plot_timing",
        )
    },
}
__all__ = ["__version__", *LAZY]


def __dir__() -> list[str]:
    return sorted(__all__)


def __getattr__(name: str):
    if name in LAZY:
        import importlib

        return getattr(importlib.import_module(LAZY[name]), name)
    raise AttributeError(f"module 'inductscan' has no attribute {name!r}")
