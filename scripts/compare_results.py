"""Are two results folders the same scan? Every score bit for bit, row for row.

For a change that must not change behaviour (a restructuring, a speed-up): scan the same
checkpoints with the code before and after it into two folders, then

    python scripts/compare_results.py BEFORE AFTER

prints the rows compared and exits 0 when every score, checkpoint score, hash and probe record is
identical; else it names the first columns and rows that differ and exits 1. Columns that differ
by design (``scored_at``, ``inductscan_version``) are left out, as are the run names of local runs
when the two folders were scanned from different copies of the checkpoints (``--ignore-paths``).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd

import inductscan

BY_DESIGN = ["scored_at", "inductscan_version"]
PATHS = ["run", "repo"]


def table(folder: str, ignore_paths: bool) -> pd.DataFrame:
    frame = inductscan.load_results(folder).reset_index().drop(columns=BY_DESIGN)
    if ignore_paths:
        frame = frame.drop(columns=PATHS)
    keys = [name for name in ("suite", "run", "seed", "step", "layer", "head") if name in frame.columns]
    return frame.sort_values(keys).reset_index(drop=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--ignore-paths", action="store_true", help="Leave out run and repo (different copies).")
    args = parser.parse_args()
    before, after = table(args.before, args.ignore_paths), table(args.after, args.ignore_paths)
    if list(before.columns) != list(after.columns) or len(before) != len(after):
        print(f"different shapes: {before.shape} {list(before.columns)} against {after.shape} {list(after.columns)}")
        return 1
    differing = []
    for column in before.columns:
        left, right = before[column].to_numpy(), after[column].to_numpy()
        if left.dtype.kind == "f":
            same = (left == right) | (np.isnan(left) & np.isnan(right))
        else:
            same = pd.Series(left).fillna("<NA>").to_numpy() == pd.Series(right).fillna("<NA>").to_numpy()
        if not same.all():
            differing.append(f"{column} ({(~same).sum()} rows, first at row {int(np.argmin(same))})")
    if differing:
        print(f"{len(before)} rows; differing: {', '.join(differing)}")
        return 1
    print(f"{len(before)} rows, {len(before.columns)} columns: identical, bit for bit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
