"""Drift of a window too large to pull: its histograms and CDF computed in the warehouse.

The SQL is built with sqlglot around the window's own query (BigQuery SQL, run by either
backend) and only summaries leave the warehouse:

* numbers: one ``GROUP BY`` per column over :data:`KS_GRID` uniform buckets of the reference's
  range (one subtraction and division a row), each bucket also counting its values at or
  below each PSI bin edge: PSI is exactly the in-memory value, and the KS statistic is read at
  the bucket boundaries (within binning error: the mass of one bucket);
* categories: ``GROUP BY`` counts.

The reference side is the champion's stored sample, in memory as in ``drift.compute_drift``,
and the verdicts are the same functions' (``drift.numeric_drift_from_counts`` and
``drift.categorical_drift_from_counts``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import sqlglot
from sqlglot import exp

from voltpipe.config import DriftThresholds
from voltpipe.errors import DataError
from voltpipe.monitoring.drift import (
    DriftResult,
    FeatureDrift,
    _kind_of,
    _thresholds,
    categorical_drift_from_counts,
    numeric_drift_from_counts,
)
from voltpipe.monitoring.drift_stats import PSI_BINS, _finite_sorted, _quantile_edges

KS_GRID = 4096
#: Largest magnitude counted as finite (NaN and +-inf compare false in both dialects).
_FINITE = 1.7e308


def _window(sql: str) -> exp.Expression:
    tree = sqlglot.parse_one(sql, read="bigquery")
    return exp.Subquery(this=tree, alias=exp.TableAlias(this=exp.to_identifier("w")))


def _col(name: str) -> exp.Column:
    return exp.column(name, table="w", quoted=True)


def _count_if(condition: exp.Expression, alias: str) -> exp.Expression:
    case = exp.Case(
        ifs=[exp.If(this=condition, true=exp.Literal.number(1))], default=exp.Literal.number(0)
    )
    return exp.Alias(this=exp.Sum(this=case), alias=exp.to_identifier(alias))


def _num(value: float) -> exp.Expression:
    lit = exp.Literal.number(repr(float(value)))
    return exp.Cast(this=lit, to=exp.DataType.build("FLOAT64", dialect="bigquery"))


def row_count_sql(sql: str) -> str:
    """``SELECT COUNT(*)`` of the window query (BigQuery SQL)."""
    return (
        exp.select(exp.alias_(exp.Count(this=exp.Star()), "n")).from_(_window(sql)).sql("bigquery")
    )


def numeric_summary_sql(
    sql: str, name: str, edges: Sequence[float] | np.ndarray, lo: float, width: float, grid: int
) -> str:
    """One numeric column's summary: finite values counted per uniform fine bucket
    ``k = floor((x - lo) / width)`` (clipped to [-1, grid]) and, per bucket, how many are
    ``<= edge`` for each PSI edge (summed over buckets: the exact cumulative counts)."""
    fl = exp.DataType.build("FLOAT64", dialect="bigquery")
    x = exp.cast(_col(name), fl)
    finite = exp.and_(x.copy() >= _num(-_FINITE), x.copy() <= _num(_FINITE))
    raw = exp.Floor(this=exp.Div(this=exp.Paren(this=x.copy() - _num(lo)), expression=_num(width)))
    k = exp.Least(
        this=exp.Greatest(
            this=exp.cast(raw, exp.DataType.build("INT64", dialect="bigquery")),
            expressions=[exp.Literal.number(-1)],
        ),
        expressions=[exp.Literal.number(grid)],
    )
    inner = exp.select(exp.alias_(x, "x"), exp.alias_(k, "k")).from_(_window(sql)).where(finite)
    xs = exp.column("x", table="s")
    cols = [exp.column("k", table="s"), exp.alias_(exp.Count(this=exp.Star()), "n")]
    cols += [_count_if(xs.copy() <= _num(e), f"le{j}") for j, e in enumerate(edges)]
    return (
        exp.select(*cols)
        .from_(exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier("s"))))
        .group_by(exp.column("k", table="s"))
        .sql("bigquery")
    )


def category_counts_sql(sql: str, name: str) -> str:
    """Counts per non-null value of a column, the value as a string."""
    value = exp.cast(_col(name), exp.DataType.build("STRING", dialect="bigquery"))
    return (
        exp.select(exp.alias_(value, "value"), exp.alias_(exp.Count(this=exp.Star()), "n"))
        .from_(_window(sql))
        .where(exp.not_(exp.Is(this=_col(name), expression=exp.Null())))
        .group_by(exp.Literal.number(1))
        .sql("bigquery")
    )


def window_rows(warehouse: Any, sql: str, parameters: dict[str, dict[str, Any]]) -> int:
    """Rows of the window, counted in the warehouse."""
    return int(warehouse.query_table(row_count_sql(sql), parameters).column("n")[0].as_py())


def compute_drift_in_warehouse(
    reference: pa.Table,
    warehouse: Any,
    sql: str,
    parameters: dict[str, dict[str, Any]],
    *,
    features: Sequence[str],
    thresholds: DriftThresholds | Mapping[str, Any] | None = None,
    bins: int = PSI_BINS,
    grid: int = KS_GRID,
) -> DriftResult:
    """``drift.compute_drift`` of the reference sample against a window left in the warehouse.

    Args:
        warehouse: a backend with ``query_table`` (``data.warehouse.open_warehouse``).
        sql, parameters: the window's BigQuery-SQL query and its typed parameters.
        features: the columns compared (numbers and categories by the reference's types).

    Raises:
        DataError: an empty window, a missing feature, or a feature with no value.
    """
    t = _thresholds(thresholds)
    missing = [f for f in features if f not in reference.column_names]
    if missing:
        raise DataError(f"feature(s) not in the reference sample: {', '.join(missing)}")
    numeric: dict[str, np.ndarray] = {}
    categorical: list[str] = []
    for f in features:
        kind = _kind_of(reference.schema.field(f).type)
        if kind == "numeric":
            numeric[f] = _finite_sorted(
                reference.column(f).cast(pa.float64()).to_numpy(zero_copy_only=False)
            )
        elif kind == "categorical":
            categorical.append(f)
    results: dict[str, FeatureDrift] = {}
    n_rows = window_rows(warehouse, sql, parameters)
    if n_rows == 0:
        raise DataError("the current window has no rows")
    for f, ref in numeric.items():
        if ref.size == 0:
            raise DataError(f"feature {f!r} has no finite value in the reference (all null)")
        edges = _quantile_edges(ref, bins)
        lo, hi = float(ref[0]), float(ref[-1])
        width = (hi - lo) / grid if hi > lo else 1.0
        got = warehouse.query_table(
            numeric_summary_sql(sql, f, edges, lo, width, grid), parameters
        ).to_pylist()
        per_bucket = np.zeros(grid + 2, dtype=np.int64)  # k = -1 .. grid
        at_edges = np.zeros(len(edges), dtype=np.int64)
        for row in got:
            per_bucket[int(row["k"]) + 1] += int(row["n"])
            at_edges += np.array([int(row[f"le{j}"] or 0) for j in range(len(edges))], np.int64)
        # #(x < lo + (k + 1) * width) for k = -1 .. grid - 1
        points = lo + width * np.arange(0, grid + 1)
        below = np.cumsum(per_bucket)[:-1]
        results[f] = numeric_drift_from_counts(
            f,
            ref,
            reference.num_rows,
            edges,
            at_edges,
            points,
            below,
            int(per_bucket.sum()),
            n_rows,
            t,
        )
    for f in categorical:
        counts = warehouse.query_table(category_counts_sql(sql, f), parameters)
        cur = dict(
            zip(counts.column("value").to_pylist(), counts.column("n").to_pylist(), strict=True)
        )
        ref_col = reference.column(f)
        from voltpipe.monitoring.drift import _category_counts

        results[f] = categorical_drift_from_counts(
            f,
            _category_counts(ref_col),
            {str(k): int(v) for k, v in cur.items()},
            len(ref_col),
            n_rows,
            t,
        )
    return DriftResult(
        features={f: results[f] for f in features if f in results},
        thresholds=t.model_dump(),
        reference_rows=reference.num_rows,
        current_rows=int(n_rows or 0),
    )
