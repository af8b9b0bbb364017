"""What a user selects of a results table, as one value with its three renderings.

A :class:`Selection` maps columns to what is wanted of them: a value keeps rows equal to it, a list
(or tuple, set, range) keeps rows in it, ``slice(low, high)`` keeps ``low <= value <= high`` (either
end may be None). It renders itself as a pyarrow filter expression (:meth:`Selection.expression`,
pushed down to the parquet reader), a SQL WHERE clause with its parameters (:meth:`Selection.where`,
for DuckDB) and a pandas mask (:meth:`Selection.mask`, for a frame already read); the three keep the
same rows (tests/results/test_selection.py). It is a mapping of the filters, so that
``load_results(path, **selection)`` takes it as keywords.

Imports nothing heavy: each rendering imports its library when asked.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from numbers import Integral
from typing import TYPE_CHECKING

from inductscan.errors import ConfigError, parameter

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.dataset as ds

LISTS = (list, tuple, set, frozenset, range)


def _kept(value: object) -> object:
    """A filter's value as the selection keeps it: a list-like one as a tuple (a value, not a
    container the caller may change), a slice or a single value as given."""
    return tuple(value) if isinstance(value, LISTS) else value


class Selection(Mapping):
    """The rows a user selects: column -> a value, a list of values, or a ``slice`` of them."""

    def __init__(self, filters: Mapping[str, object] | None = None) -> None:
        self._filters = {name: _kept(value) for name, value in (filters or {}).items()}

    @classmethod
    def from_filters(cls, filters: Mapping[str, object] | None) -> Selection:
        """``filters`` (a selection already, or keywords as :func:`inductscan.load_results` takes them)."""
        return filters if isinstance(filters, Selection) else cls(filters)

    def __getitem__(self, name: str) -> object:
        return self._filters[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._filters)

    def __len__(self) -> int:
        return len(self._filters)

    def __repr__(self) -> str:
        return f"Selection({self._filters!r})"

    def check(self, columns: list[str]) -> None:
        """Raise :class:`ConfigError` naming the first filtered column that is not one of ``columns``."""
        for name in self._filters:
            if name not in columns:
                raise ConfigError(f"cannot filter on {name!r}; columns are {', '.join(columns)}")

    def expression(self, schema: pa.Schema) -> ds.Expression | None:
        """The pyarrow dataset filter of the selection (None: every row), for a table of ``schema``."""
        import pyarrow.dataset as ds

        self.check(schema.names)
        expression = None
        for name, wanted in self._filters.items():
            field = ds.field(name)
            if isinstance(wanted, slice):
                parts = [field >= wanted.start] if wanted.start is not None else []
                parts += [field <= wanted.stop] if wanted.stop is not None else []
                if not parts:
                    continue
                term = parts[0] if len(parts) == 1 else parts[0] & parts[1]
            elif isinstance(wanted, tuple):
                term = field.isin(list(wanted))
            else:
                term = field == wanted
            expression = term if expression is None else expression & term
        return expression

    def where(self, known: list[str]) -> tuple[str, list]:
        """A SQL WHERE clause (with its leading space, or "" for every row) and its parameters, for a
        table with the columns ``known``."""
        self.check(known)
        terms, parameters = [], []
        for name, wanted in self._filters.items():
            column = f'"{name}"'
            if isinstance(wanted, slice):
                for bound, operator in ((wanted.start, ">="), (wanted.stop, "<=")):
                    if bound is not None:
                        terms.append(f"{column} {operator} ?")
                        parameters.append(bound)
            elif isinstance(wanted, tuple):
                terms.append(f"{column} IN ({', '.join('?' for _ in wanted)})" if wanted else "FALSE")
                parameters += list(wanted)
            else:
                terms.append(f"{column} = ?")
                parameters.append(wanted)
        return (" WHERE " + " AND ".join(terms)) if terms else "", parameters

    def mask(self, frame: pd.DataFrame) -> pd.Series:
        """A boolean Series over ``frame``'s rows (its columns, not its index): True where a row is selected."""
        import pandas as pd

        self.check(list(frame.columns))
        keep = pd.Series(True, index=frame.index)
        for name, wanted in self._filters.items():
            column = frame[name]
            if isinstance(wanted, slice):
                if wanted.start is not None:
                    keep &= (column >= wanted.start).fillna(False).astype(bool)
                if wanted.stop is not None:
                    keep &= (column <= wanted.stop).fillna(False).astype(bool)
            elif isinstance(wanted, tuple):
                keep &= column.isin(list(wanted)).astype(bool)
            else:
                keep &= (column == wanted).fillna(False).astype(bool)
        return keep


def integers(values: object, name: str) -> list | None:
    """``values`` (one integer, or a list, tuple or range of them) as a list, None as None;
    anything else is a :class:`ConfigError` naming the parameter ``name``."""
    if values is None:
        return None
    listed = [values] if isinstance(values, Integral) else values
    if not isinstance(listed, LISTS) or not all(isinstance(value, Integral) for value in listed):
        raise ConfigError(f"{parameter(name)} must be an integer or a list of integers, got {values!r}")
    return list(listed)


def selection(
    *,
    suite: str | list[str] | None = None,
    run: str | list[str] | None = None,
    seed: int | list[int] | None = None,
    step_range: tuple[int, int] | None = None,
    **columns,
) -> Selection:
    """A selection as the commands take one (``step_range``: both ends kept); None selects every
    value of that column."""
    integers(seed, "seed")  # a list of numbers, or one: else one line
    filters = {"suite": suite, "run": run, "seed": seed, **columns}
    filters = {name: value for name, value in filters.items() if value is not None}
    if step_range is not None:
        bounds = tuple(step_range) if isinstance(step_range, (tuple, list)) else ()
        if len(bounds) != 2 or not all(isinstance(bound, Integral) for bound in bounds) or bounds[0] > bounds[1]:
            raise ConfigError(f"{parameter('step_range')} must be (low, high) with low <= high, got {step_range!r}")
        filters["step"] = slice(*bounds)
    return Selection(filters)
