"""One selection, three renderings (inductscan/results/selection.py): the pyarrow filter, the SQL
WHERE and the pandas mask keep the same rows of a table written by the package's own writer."""

from __future__ import annotations

import duckdb
import pyarrow.dataset as ds
import pytest
import torch

from inductscan.errors import ConfigError
from inductscan.metrics import HEAD_METRICS
from inductscan.probe import ProbeConfig, TokenSpec, make_probe
from inductscan.results.folder import ResultsFolder
from inductscan.results.schema import folder_schema
from inductscan.results.selection import Selection, selection
from inductscan.results.write import write_scores

PROBE = make_probe(ProbeConfig(length=8, batch=2), TokenSpec(0, 96))
CHECKPOINT = {"loss_first": 5.0, "loss_repeat": 4.0, "in_context_gain": 1.0}
KEYS = ["suite", "run", "seed", "step", "layer", "head"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two suites, three runs (two share seed 21), steps 0..40, 2 layers x 3 heads."""
    out = tmp_path_factory.mktemp("selection") / "results"
    for suite, run, seed in (("suite-a", "alias", 21), ("suite-a", "beren", 49), ("suite-b", "other", 21)):
        for step in (0, 10, 20, 30, 40):
            identity = dict(suite=suite, repo=f"org/{run}", run=run, revision=f"step{step}", seed=seed, step=step,
                            tokens=100 * step)  # fmt: skip
            heads = {name: torch.full((2, 3), step / 100, dtype=torch.float64) for name in HEAD_METRICS}
            write_scores(out, identity, heads, CHECKPOINT, weights_sha256=f"{step:064d}", probe=PROBE, dtype="float32")
    return out


SELECTIONS = [
    selection(),
    selection(seed=21),
    selection(suite="suite-a", seed=[21, 49], step_range=(10, 30)),
    selection(run=["alias", "other"], layer=1, head=[0, 2]),
    Selection({"step": slice(None, 20), "head": range(1, 3)}),
    Selection({"step": slice(25, None), "suite": ("suite-b",)}),
    Selection({"seed": [], "layer": 0}),
    Selection({"step": slice(None, None), "run": {"beren"}}),
]


@pytest.mark.parametrize("chosen", SELECTIONS, ids=repr)
def test_the_arrow_filter_the_sql_where_and_the_pandas_mask_keep_the_same_rows(folder, chosen):
    files = ResultsFolder(folder).visible_files()
    schema = folder_schema(folder)
    every = ds.dataset(files, schema=schema, format="parquet").to_table(columns=KEYS).to_pandas()
    by_arrow = ds.dataset(files, schema=schema, format="parquet").to_table(
        columns=KEYS, filter=chosen.expression(schema)
    )
    by_arrow = sorted(by_arrow.to_pandas().itertuples(index=False, name=None))
    where, parameters = chosen.where(schema.names)
    listed = ", ".join(f"'{name}'" for name in files)
    statement = f"SELECT {', '.join(KEYS)} FROM read_parquet([{listed}]){where}"
    by_sql = sorted(duckdb.connect().execute(statement, parameters).fetchall())
    by_mask = sorted(every[chosen.mask(every)].itertuples(index=False, name=None))
    assert by_arrow == by_sql == by_mask
    expected = [row for row in sorted(every.itertuples(index=False, name=None)) if _kept(chosen, dict(zip(KEYS, row)))]
    assert by_mask == expected  # and each is the selection by hand


def _kept(chosen: Selection, row: dict) -> bool:
    """The selection's meaning, spelled out once more in plain Python for one row."""
    for name, wanted in chosen.items():
        value = row[name]
        if isinstance(wanted, slice):
            if (wanted.start is not None and value < wanted.start) or (wanted.stop is not None and value > wanted.stop):
                return False
        elif isinstance(wanted, tuple):
            if value not in wanted:
                return False
        elif value != wanted:
            return False
    return True


def test_a_selection_is_a_value_and_its_keywords(folder):
    chosen = selection(suite="suite-a", seed=[21], step_range=(0, 10))
    assert dict(chosen) == {"suite": "suite-a", "seed": (21,), "step": slice(0, 10)}
    assert chosen == Selection({"suite": "suite-a", "seed": [21], "step": slice(0, 10)})
    assert Selection.from_filters(chosen) is chosen
    import inductscan

    frame = inductscan.load_results(folder, columns=["tokens"], **chosen)
    assert sorted(frame.index.get_level_values("step").unique()) == [0, 10]


def test_an_unknown_column_is_refused_alike_by_every_rendering(folder):
    chosen = Selection({"seeed": 1})
    schema = folder_schema(folder)
    for render in (lambda: chosen.expression(schema), lambda: chosen.where(schema.names)):
        with pytest.raises(ConfigError, match="cannot filter on 'seeed'; columns are suite, repo, run"):
            render()


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        ({"step_range": (100, 0)}, "step_range must be (low, high) with low <= high, got (100, 0)"),
        ({"step_range": "0:100"}, "step_range must be (low, high) with low <= high, got '0:100'"),
        ({"step_range": (0, 1, 2)}, "step_range must be (low, high) with low <= high, got (0, 1, 2)"),
        ({"seed": "0,1"}, "seed must be an integer or a list of integers, got '0,1'"),
        ({"seed": [0, "1"]}, "seed must be an integer or a list of integers, got [0, '1']"),
    ],
)
def test_a_selection_of_the_wrong_shape_is_named_not_read_as_nothing(keywords, message):
    with pytest.raises(ConfigError) as raised:
        selection(**keywords)
    assert str(raised.value) == message
    assert dict(selection(seed=[0, 1], step_range=(0, 0))) == {"seed": (0, 1), "step": slice(0, 0)}
