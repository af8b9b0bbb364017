"""The one renderer (inductscan/cli/output.py): a pandas frame and the same values as plain rows
(DuckDB's answer) print alike, as a table, csv and json."""

from __future__ import annotations

import json

import click
import pandas as pd
from click.testing import CliRunner

from inductscan.cli.output import NO_ROWS, Rows, emit

COLUMNS = ["seed", "step", "induction"]
ROWS = [(0, 10, 0.25), (21, 2000, 0.123456)]


def printed(table, fmt: str) -> str:
    @click.command()
    def show():
        emit(table, fmt)

    return CliRunner().invoke(show, []).output


def test_a_frame_and_plain_rows_print_the_same_values():
    frame, rows = pd.DataFrame(ROWS, columns=COLUMNS), Rows(COLUMNS, ROWS)
    assert printed(frame, "csv") == printed(rows, "csv")
    assert json.loads(printed(frame, "json")) == json.loads(printed(rows, "json"))
    # the table's cells agree (pandas spaces its columns two apart, the plain rows one)
    cells = [line.split() for line in printed(rows, "table").splitlines()]
    assert [line.split() for line in printed(frame, "table").splitlines()] == cells


def test_the_table_is_right_aligned_with_four_decimals():
    assert printed(Rows(COLUMNS, ROWS), "table").splitlines() == [
        "seed step induction",
        "   0   10    0.2500",
        "  21 2000    0.1235",
    ]
    assert printed(Rows(COLUMNS, ROWS), "csv") == "seed,step,induction\n0,10,0.25\n21,2000,0.123456\n"
    assert json.loads(printed(Rows(COLUMNS, [(1, 2, float("nan"))]), "json")) == [
        {"seed": 1, "step": 2, "induction": None}
    ]


def test_no_rows():
    assert printed(Rows(COLUMNS, []), "table") == NO_ROWS + "\n"
    assert printed(pd.DataFrame(columns=COLUMNS), "table") == NO_ROWS + "\n"
    assert printed(Rows(COLUMNS, []), "csv") == "seed,step,induction\n"
