"""The ``inductscan`` command: a thin layer over the library, one module per group of commands.
Every command parses its options, calls one library function and prints what it returns; every
command's help has an example.

    catalog.py  suites, toy-suite       scan.py     scan, status
    query.py    query, compact          timing.py   phases
    figures.py  plot, pattern, report   compare.py  compare

options.py holds the option bundles several commands share, output.py the one renderer of tables,
errors.py the exit statuses and the map from the library's parameter names to the flags.
"""

from __future__ import annotations

import click

from inductscan.cli import catalog, compare, figures, query, scan, timing
from inductscan.cli.errors import Group

# The commands that read a table import pandas, pyarrow or DuckDB when they run: `inductscan
# query` answers in a fraction of a second, and pandas alone takes about half a second to import.


@click.group(cls=Group)
@click.version_option(package_name="inductscan", prog_name="inductscan")
def main() -> None:
    """Find when induction heads form, across public checkpoint suites and their seeds.

    \b
    Example:
        inductscan toy-suite && inductscan scan toy --out results/
        inductscan query results/ --best
    """


for command in (
    catalog.suites_command,
    catalog.toy_suite_command,
    scan.scan_command,
    scan.status_command,
    query.query_command,
    query.compact_command,
    timing.phases_command,
    figures.plot_command,
    figures.pattern_command,
    figures.report_command,
    compare.compare_command,
):
    main.add_command(command)

__all__ = ["main"]
