"""Do the toy suite's in-context gains depend on its induction heads? A table from a scan with
``--head-effects`` (every head exact: the toy has 8 heads, the default top is 8).

Per run and checkpoint: the in-context gain; the best induction head (highest ``induction``) and
the share of the gain that mean-ablating it removes (``gain_effect / in_context_gain``); the
largest effect of any single head, and which; whether the estimate's top head (largest
``|gain_effect_estimate|``) is that head. Then, per run, the phase change of the gain (inductscan's
own timing) and the three checks: after the change's end, ablating the best induction head removes
at least half of the gain; before its onset, no head changes it by more than 0.1 nat; after the
end, the estimate ranks the true top head first.

    INDUCTSCAN_TOY_DIR=/tmp/toy inductscan toy-suite --seeds 2
    INDUCTSCAN_TOY_DIR=/tmp/toy inductscan scan toy --head-effects --out /tmp/toy-effects
    python scripts/toy_effects.py /tmp/toy-effects
"""

from __future__ import annotations

import sys

import pandas as pd

import inductscan
from inductscan.phases import find_phase_changes

COLUMNS = ["tokens", "induction", "in_context_gain", "gain_effect", "gain_effect_estimate"]


def table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per checkpoint of one run."""
    lines = []
    for step, heads in rows.groupby("step"):
        heads = heads.reset_index()
        best = heads.loc[heads["induction"].idxmax()]
        top = heads.loc[heads["gain_effect"].abs().idxmax()]
        ranked = heads.loc[heads["gain_effect_estimate"].abs().idxmax()]
        gain = best["in_context_gain"]
        lines.append(
            {
                "step": step,
                "gain": gain,
                "best_induction": f"{best['layer']}.{best['head']} ({best['induction']:.2f})",
                "its_effect": best["gain_effect"],
                "share_removed": best["gain_effect"] / gain if gain > 0 else float("nan"),
                "largest_effect": top["gain_effect"],
                "largest_head": f"{top['layer']}.{top['head']}",
                "estimate_top_head": f"{ranked['layer']}.{ranked['head']}",
                "estimate_ranks_it_first": (ranked["layer"], ranked["head"]) == (top["layer"], top["head"]),
            }
        )
    return pd.DataFrame(lines)


def main(folder: str) -> None:
    results = inductscan.load_results(folder, columns=COLUMNS)
    phases = find_phase_changes(folder, "in_context_gain").set_index("seed")
    pd.set_option("display.width", 200)
    for seed, rows in results.groupby(level="seed"):
        shown = table(rows)
        phase = phases.loc[seed]
        onset, end = phase["onset_step"], phase["end_step"]
        print(
            f"\nseed {seed}: gain's phase change onset step {onset:.0f}, midpoint {phase['midpoint_step']:.0f}, "
            f"end {end:.0f}"
        )
        print(shown.to_string(index=False, float_format=lambda value: f"{value:.3f}"))
        before, after = shown[shown["step"] < onset], shown[shown["step"] > end]
        print(
            f"checks, seed {seed}: after the end, best induction head's share of the gain removed "
            f"min {after['share_removed'].min():.2f} (bar 0.5); before the onset, largest single-head |effect| "
            f"{before['largest_effect'].abs().max():.3f} nat (bar 0.1); after the end, the estimate ranks the "
            f"true top head first at {after['estimate_ranks_it_first'].sum()} of {len(after)} checkpoints"
        )


if __name__ == "__main__":
    main(sys.argv[1])
