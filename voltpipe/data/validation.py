"""Column statistics, schema inference and data validation, computed by DuckDB over parquet."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import duckdb

from voltpipe.data.io import parquet_files
from voltpipe.errors import DataError

HIST_BINS = 12
TOP_VALUES = 8
MAX_SCHEMA_CATEGORIES = 500
RANGE_MARGIN = 0.5  # a value outside [min - m*span, max + m*span] of the stored schema is an error
HIGH_NULL_RATE = 0.2
# A classification label's classes with fewer train rows are flagged (one row: an error).
FEW_CLASS_ROWS = 10
RARE_VALUE_COLUMNS_MAX = 50
# Larger magnitudes overflow float32 means and variances (the training statistics).
MAX_ABS_VALUE = 1e18

NEAR_CONSTANT = 0.999  # a numeric column with one value in more than this share of train rows

_NUMERIC = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "FLOAT",
    "DOUBLE",
    "REAL",
    "DECIMAL",
)


def column_kind(duckdb_type: str) -> str:
    """Maps a DuckDB type to numeric | boolean | string | timestamp | date | other."""
    t = duckdb_type.upper()
    if t.startswith(_NUMERIC):
        return "numeric"
    if t == "BOOLEAN":
        return "boolean"
    if t.startswith("VARCHAR") or t in ("STRING", "TEXT", "UUID"):
        return "string"
    if t.startswith("TIMESTAMP") or t == "DATETIME":
        return "timestamp"
    if t == "DATE":
        return "date"
    return "other"


def _source(path: str | Path) -> str:
    files = [str(f).replace("'", "''") for f in parquet_files(path)]
    return "read_parquet([" + ", ".join(f"'{f}'" for f in files) + "])"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _num(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None  # an overflowed statistic is unknown, not inf


def compute_statistics(path: str | Path) -> dict[str, Any]:
    """Returns per-column statistics of a Dataset folder.

    Numbers: count, nulls, min/max/mean/std, quantiles (5/25/50/75/95) and a histogram;
    strings and booleans: count, nulls, cardinality and the top values.
    """
    src = _source(path)
    con = duckdb.connect()
    try:
        desc = con.execute(f"SELECT * FROM {src} LIMIT 0").description
        rows = _one_row(con.execute(f"SELECT count(*) FROM {src}"))[0]
        columns: dict[str, Any] = {}
        for name, dtype, *_ in desc:
            kind = column_kind(str(dtype))
            c = _q(name)
            entry: dict[str, Any] = {"type": str(dtype), "kind": kind}
            count, nulls = _one_row(
                con.execute(f"SELECT count({c}), count(*) - count({c}) FROM {src}")
            )
            entry.update(count=count, nulls=nulls, null_rate=(nulls / rows) if rows else 0.0)
            if kind == "numeric":
                # Statistics of the finite values; NaN and infinities are counted apart.
                v = f"{c}::DOUBLE"
                fin = f"FILTER (WHERE isfinite({v}))"
                r = _one_row(
                    con.execute(
                        f"SELECT min({v}) {fin}, max({v}) {fin}, avg({v}) {fin}, "
                        f"stddev_samp({v}) {fin}, "
                        f"quantile_cont({v}, [0.05, 0.25, 0.5, 0.75, 0.95]) {fin}, "
                        # isnan() misses NaN read from parquet in some DuckDB versions: a value that
                        # is neither finite nor infinite is NaN.
                        f"count(*) FILTER (WHERE NOT isfinite({v})), "
                        f"count(DISTINCT {c}), count(*) FILTER (WHERE NOT isfinite({v}) AND NOT isinf({v})), "
                        f"max(abs({v})) {fin} FROM {src}"
                    )
                )
                std = r[3]
                if std is not None and not math.isfinite(std) and r[8]:
                    # Squares of huge values overflow: scale by the largest magnitude first.
                    std = _one_row(
                        con.execute(
                            f"SELECT stddev_samp({v} / ?) {fin} * ? FROM {src}", [r[8], r[8]]
                        )
                    )[0]
                entry.update(
                    min=_num(r[0]),
                    max=_num(r[1]),
                    mean=_num(r[2]),
                    std=_num(std) or 0.0,
                    quantiles=dict(
                        zip(
                            ["p05", "p25", "p50", "p75", "p95"],
                            [_num(q) for q in (r[4] or [None] * 5)],
                            strict=True,
                        )
                    ),
                    non_finite=r[5],
                    nan_count=r[7],
                    max_abs=_num(r[8]),
                    cardinality=r[6],
                )
                entry["histogram"] = _histogram(con, src, c, entry["min"], entry["max"])
                if r[6] <= RARE_VALUE_COLUMNS_MAX:
                    entry["rarest_values"] = _rarest(con, src, c)

                mode = con.execute(
                    f"SELECT {c}::DOUBLE, count(*) FROM {src} WHERE {c} IS NOT NULL "
                    "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1"
                ).fetchone()
                entry["mode"] = {"value": _num(mode[0]), "count": mode[1]} if mode else None
            elif kind in ("string", "boolean"):
                card = _one_row(con.execute(f"SELECT count(DISTINCT {c}) FROM {src}"))[0]
                top = con.execute(
                    f"SELECT CAST({c} AS VARCHAR), count(*) FROM {src} WHERE {c} IS NOT NULL "
                    f"GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {TOP_VALUES}"
                ).fetchall()
                entry.update(
                    cardinality=card, top_values=[{"value": v, "count": n} for v, n in top]
                )
                if card <= RARE_VALUE_COLUMNS_MAX:
                    entry["rarest_values"] = _rarest(con, src, c)
                if card <= MAX_SCHEMA_CATEGORIES:
                    entry["categories"] = [
                        v
                        for (v,) in con.execute(
                            f"SELECT DISTINCT CAST({c} AS VARCHAR) FROM {src} WHERE {c} IS NOT NULL ORDER BY 1"
                        ).fetchall()
                    ]
            elif kind in ("timestamp", "date"):
                lo, hi = _one_row(
                    con.execute(f"SELECT min({c})::VARCHAR, max({c})::VARCHAR FROM {src}")
                )
                entry.update(min=lo, max=hi)
            columns[name] = entry
        return {"rows": rows, "columns": columns}
    finally:
        con.close()


def _rarest(con: duckdb.DuckDBPyConnection, src: str, c: str) -> list[dict[str, Any]]:
    """The three least frequent values (a label's rarest classes) with their counts."""
    return [
        {"value": v, "count": n}
        for v, n in con.execute(
            f"SELECT CAST({c} AS VARCHAR), count(*) FROM {src} WHERE {c} IS NOT NULL "
            "GROUP BY 1 ORDER BY 2, 1 LIMIT 3"
        ).fetchall()
    ]


def _histogram(
    con: duckdb.DuckDBPyConnection, src: str, c: str, lo: float | None, hi: float | None
) -> dict[str, Any]:
    if lo is None or hi is None:
        return {"edges": [], "counts": []}
    if hi == lo:
        n = _one_row(con.execute(f"SELECT count({c}) FROM {src}"))[0]
        return {"edges": [lo, hi], "counts": [n]}
    # Scaled before subtracting: hi - lo overflows for values near the float limit.
    width = hi / HIST_BINS - lo / HIST_BINS
    counts = [0] * HIST_BINS
    for b, n in con.execute(
        f"SELECT least(greatest(CAST(floor(({c}::DOUBLE / {HIST_BINS} - ?) / ? * {HIST_BINS}) "
        "AS BIGINT), 0), "
        f"{HIST_BINS - 1}) AS b, count(*) "
        f"FROM {src} WHERE isfinite({c}::DOUBLE) GROUP BY 1",
        [lo / HIST_BINS, width],
    ).fetchall():
        if b is not None and 0 <= b < HIST_BINS:
            counts[b] += n
    return {"edges": [lo + i * width for i in range(HIST_BINS + 1)], "counts": counts}


def infer_schema(stats: dict[str, Any]) -> dict[str, Any]:
    """A schema from training statistics: each column's type, kind, range and categories."""
    schema: dict[str, Any] = {}
    for name, s in stats["columns"].items():
        entry = {"type": s["type"], "kind": s["kind"]}
        if s["kind"] == "numeric":
            entry.update(min=s.get("min"), max=s.get("max"))
        if "categories" in s:
            entry["categories"] = s["categories"]
        schema[name] = entry
    return {"columns": schema}


@dataclasses.dataclass
class ValidationResult:
    errors: list[str]
    warnings: list[str]

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_if_failed(self) -> None:
        if self.errors:
            listing = "; ".join(self.errors)
            raise DataError(f"data validation failed ({len(self.errors)} problem(s)): {listing}")


def validate(
    stats_by_split: dict[str, dict[str, Any]],
    *,
    label: str | None,
    task: str,
    features: list[str] | None = None,
    expected_schema: dict[str, Any] | None = None,
    required_splits: tuple[str, ...] = ("train", "test"),
) -> ValidationResult:
    """Checks split statistics for problems that make training meaningless.

    Errors: empty required split, missing label, all-null or constant label, a single class,
    a non-numeric regression label, missing feature columns, all-null features, non-finite
    numbers, and (against `expected_schema`) missing/extra columns, type changes and values far
    outside the stored range. Warnings: new categories, high null rates, numeric features
    constant or near-constant (one value in > 99.9 % of rows) in the train split.
    """
    errors: list[str] = []
    warnings: list[str] = []
    train = stats_by_split["train"]
    cols = train["columns"]
    for split in required_splits:
        if stats_by_split.get(split, {}).get("rows", 0) == 0:
            errors.append(f"the {split} split is empty")
    if label:  # "" or None: no label (clustering, embedding)
        if label not in cols:
            errors.append(f"label column {label!r} is missing (columns: {', '.join(cols)})")
        else:
            ls = cols[label]
            if ls["count"] == 0:
                errors.append(f"label column {label!r} is all null")
            elif task == "classification" and ls.get("cardinality", 0) < 2:
                errors.append(
                    f"label column {label!r} has a single class; classification needs two or more"
                )
            elif task == "regression" and ls["kind"] != "numeric":
                errors.append(
                    f"label column {label!r} is {ls['type']}; regression needs a numeric label"
                )
            elif task == "regression" and (ls.get("std") or 0.0) == 0.0:
                errors.append(
                    f"label column {label!r} is constant ({ls.get('min')}); nothing to learn"
                )
            if ls["nulls"]:
                errors.append(f"label column {label!r} has {ls['nulls']} null value(s) in train")
            if task == "classification" and ls.get("cardinality", 0) >= 2:
                for rare in ls.get("rarest_values", []):
                    if rare["count"] == 1:
                        errors.append(
                            f"label class {rare['value']!r} of {label!r} has a single row in "
                            "train: the model cannot learn it; add rows or leave it out"
                        )
                    elif rare["count"] < FEW_CLASS_ROWS:
                        warnings.append(
                            f"label class {rare['value']!r} of {label!r} has only "
                            f"{rare['count']} rows in train"
                        )
    for name in features or []:
        if name not in cols:
            errors.append(f"feature column {name!r} is missing")
    for name, s in cols.items():
        if features is not None and name not in features and name != label:
            continue
        if train["rows"] and s["count"] == 0:
            errors.append(f"column {name!r} is all null")
        elif s.get("non_finite"):
            errors.append(_non_finite_message(name, s))
        elif (s.get("max_abs") or 0.0) > MAX_ABS_VALUE:
            errors.append(
                f"column {name!r} has values as large as {s['max_abs']:.3g} in magnitude; "
                f"beyond {MAX_ABS_VALUE:.0e} the training statistics overflow (float32): "
                "rescale it in the query"
            )
        elif s["null_rate"] > HIGH_NULL_RATE:
            warnings.append(f"column {name!r} is {s['null_rate']:.0%} null")
        if name != label and s["kind"] == "numeric":
            warnings += _constant_warnings(name, s)
    if expected_schema:
        _compare_schema(stats_by_split, expected_schema, errors, warnings)
    return ValidationResult(errors=errors, warnings=warnings)


def _non_finite_message(name: str, s: dict[str, Any]) -> str:
    nan = s.get("nan_count")
    if nan is None:  # statistics computed before NaN and infinities were counted apart
        return f"column {name!r} has {s['non_finite']} NaN or infinite value(s)"
    parts = [f"{nan} NaN"] if nan else []
    if s["non_finite"] - nan:
        parts.append(f"{s['non_finite'] - nan} infinite")
    return (
        f"column {name!r} has {' and '.join(parts)} value(s); drop or replace them in the query "
        "(they cannot be trained on or served)"
    )


def _constant_warnings(name: str, s: dict[str, Any]) -> list[str]:
    """A warning for a numeric column that is constant or near-constant in the train split."""
    mode = s.get("mode")
    if not s["count"] or not mode:
        return []
    if s.get("cardinality") == 1:
        return [
            f"column {name!r} is constant in the train split (always {_fmt(mode['value'])}): "
            "the model learns nothing from it, and another value at prediction time is "
            "taken at face value (scale 1)"
        ]
    share = mode["count"] / s["count"]
    if share > NEAR_CONSTANT:
        return [
            f"column {name!r} is near-constant in the train split ({_fmt(mode['value'])} in "
            f"{share:.2%} of rows, other values in {s['count'] - mode['count']}): the model "
            "sees too few of the other values to learn from them"
        ]
    return []


def _compare_schema(
    stats_by_split: dict[str, dict[str, Any]],
    schema: dict[str, Any],
    errors: list[str],
    warnings: list[str],
) -> None:
    expected = schema["columns"]
    for split, stats in stats_by_split.items():
        cols = stats["columns"]
        missing = [c for c in expected if c not in cols]
        extra = [c for c in cols if c not in expected]
        if missing:
            errors.append(f"{split}: column(s) missing against the schema: {', '.join(missing)}")
        if extra:
            errors.append(f"{split}: column(s) not in the schema: {', '.join(extra)}")
        for name, exp_col in expected.items():
            s = cols.get(name)
            if s is None:
                continue
            if s["kind"] != exp_col["kind"]:
                errors.append(
                    f"{split}: column {name!r} changed type from {exp_col['type']} to {s['type']}"
                )
                continue
            lo, hi = exp_col.get("min"), exp_col.get("max")
            if (
                s["kind"] == "numeric"
                and lo is not None
                and hi is not None
                and s.get("min") is not None
            ):
                margin = RANGE_MARGIN * max(hi - lo, abs(hi), 1e-9)
                if s["min"] < lo - margin or s["max"] > hi + margin:
                    errors.append(
                        f"{split}: column {name!r} has values in [{s['min']:.4g}, {s['max']:.4g}], "
                        f"far outside the schema's [{lo:.4g}, {hi:.4g}]"
                    )
            if "categories" in exp_col and "categories" in s:
                new = sorted(set(s["categories"]) - set(exp_col["categories"]))
                if new:
                    warnings.append(
                        f"{split}: column {name!r} has new categories: {', '.join(map(str, new[:10]))}"
                    )


def series_lengths(path: str | Path, group_column: str | None) -> dict[str, int]:
    """How many series a split holds and the rows of its longest and shortest (DuckDB).

    Without `group_column` (or when the split lacks it) the whole split is one series.
    """
    src = _source(path)
    con = duckdb.connect()
    try:
        names = [d[0] for d in con.execute(f"SELECT * FROM {src} LIMIT 0").description]
        if group_column and group_column in names:
            series, longest, shortest = _one_row(
                con.execute(
                    f"SELECT count(*), coalesce(max(n), 0), coalesce(min(n), 0) "
                    f"FROM (SELECT count(*) AS n FROM {src} GROUP BY {_q(group_column)})"
                )
            )
        else:
            rows = _one_row(con.execute(f"SELECT count(*) FROM {src}"))[0]
            series, longest, shortest = (1 if rows else 0), rows, rows
        return {"series": int(series), "longest": int(longest), "shortest": int(shortest)}
    finally:
        con.close()


def forecast_context(forecasting: dict[str, Any]) -> int:
    """The history rows one forecast needs, as known before training: the larger of
    ``forecasting.window`` and the configured seasons (``seasons``, or ``season``)."""
    seasons = list(forecasting.get("seasons") or [])
    if forecasting.get("season"):
        seasons.append(int(forecasting["season"]))
    return max([int(forecasting.get("window", 48)), *seasons])


def check_forecast_splits(
    lengths: dict[str, dict[str, int]],
    *,
    forecasting: dict[str, Any],
    columns: list[str] | None = None,
    time_column: str | None = None,
) -> ValidationResult:
    """Checks that every split is long enough for forecasting, before any training.

    Evaluation forecasts every test row, taking each series' history from the tail of the
    valid split, so: the train split's longest series needs ``context + horizon`` rows (one
    training window), the valid split's (when it has rows) ``window + horizon`` and at least
    ``context`` (the test forecasts' history), and the test split's ``horizon``
    (``context + horizon`` with an empty valid split). ``context`` is the larger of the window
    and the configured seasons (``forecast_context``). Series shorter than that are skipped in
    training: a warning.

    Args:
        lengths: ``series_lengths`` of each split by name (train, valid, test).
        forecasting: the config's ``forecasting`` section (window, horizon, season(s),
            group_column).
        columns: the train split's columns, to check `time_column` and the group column.
    """
    errors: list[str] = []
    warnings: list[str] = []
    window = int(forecasting.get("window", 48))
    horizon = int(forecasting.get("horizon", 1))
    context = forecast_context(forecasting)
    group = forecasting.get("group_column")
    if columns is not None:
        if time_column and time_column not in columns:
            errors.append(
                f"time_column {time_column!r} is not in the data (columns: {', '.join(columns)})"
            )
        if group and group not in columns:
            errors.append(
                f"forecasting.group_column {group!r} is not in the data "
                f"(columns: {', '.join(columns)})"
            )
    need = (
        f"forecasting.window + forecasting.horizon = {window} + {horizon}"
        if context == window
        else f"the context + forecasting.horizon = {context} + {horizon} (context: the larger "
        f"of forecasting.window {window} and the seasons)"
    )
    fix = (
        "lower forecasting.window or forecasting.horizon, or give the {split} split more rows "
        "(split.fractions, or a longer query period)"
    )
    of = f"series (by {group})" if group else "series"
    train = lengths.get("train", {})
    if train.get("longest", 0) and train["longest"] < context + horizon:
        errors.append(
            f"the train split's longest {of} has {train['longest']} rows, fewer than {need}; "
            + fix.format(split="train")
        )
    elif train.get("shortest", 0) and train["shortest"] < context + horizon:
        warnings.append(
            f"the train split's shortest {of} has {train['shortest']} rows, fewer than {need}: "
            "series that short give no training window"
        )
    valid = lengths.get("valid", {})
    test = lengths.get("test", {})
    if valid.get("longest", 0):
        valid_need = max(window + horizon, context)
        if valid["longest"] < valid_need:
            why = f"forecasting.window + forecasting.horizon = {window} + {horizon}"
            if context > window + horizon:
                why = f"the {context} past rows (context) each test forecast takes from it"
            errors.append(
                f"the valid split's longest {of} has {valid['longest']} rows, fewer than {why}; "
                + fix.format(split="valid")
            )
        if test.get("longest", 0) and test["longest"] < horizon:
            errors.append(
                f"the test split's longest {of} has {test['longest']} rows, fewer than "
                f"forecasting.horizon = {horizon}; lower forecasting.horizon or give the test "
                "split more rows (split.fractions, or a longer query period)"
            )
    elif test.get("longest", 0) and test["longest"] < context + horizon:
        errors.append(
            f"the test split's longest {of} has {test['longest']} rows and the valid split is "
            f"empty, so its first rows are the forecasts' history: fewer than {need}; "
            + fix.format(split="test")
        )
    return ValidationResult(errors=errors, warnings=warnings)


def validate_forecast_splits(
    paths: dict[str, str | Path],
    stats_by_split: dict[str, dict[str, Any]],
    task_params: dict[str, Any],
) -> ValidationResult:
    """``check_forecast_splits`` on split folders: each split's series lengths by the
    configured group column (DuckDB), with the train split's columns.

    Args:
        paths: the Dataset folder of each split by name.
        stats_by_split: ``compute_statistics`` of each split (for row counts and columns).
        task_params: ``time_column`` and ``forecasting`` (the config's section), as train
            gets them.
    """
    forecasting = dict(task_params.get("forecasting") or {})
    empty = {"series": 0, "longest": 0, "shortest": 0}
    lengths = {
        name: series_lengths(path, forecasting.get("group_column"))
        if stats_by_split[name]["rows"]
        else empty
        for name, path in paths.items()
    }
    return check_forecast_splits(
        lengths,
        forecasting=forecasting,
        columns=list(stats_by_split["train"]["columns"]),
        time_column=task_params.get("time_column"),
    )


_BARS = "▁▂▃▄▅▆▇█"


def sparkline(counts: list[int]) -> str:
    if not counts or max(counts) == 0:
        return ""
    top = max(counts)
    return "".join(
        _BARS[min(len(_BARS) - 1, int(c / top * (len(_BARS) - 1) + 0.5))] if c else " "
        for c in counts
    )


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def render_report(
    stats_by_split: dict[str, dict[str, Any]], result: ValidationResult, label: str | None
) -> str:
    """A Markdown report: verdict, problems, and a per-column table with small histograms."""
    lines = ["# Data validation report", ""]
    lines.append(f"**Verdict:** {'passed' if result.ok else 'FAILED'}  ")
    lines.append("**Rows:** " + ", ".join(f"{k} {v['rows']:,}" for k, v in stats_by_split.items()))
    lines.append("")
    if result.errors:
        lines += ["## Problems", *[f"- ❌ {e}" for e in result.errors], ""]
    if result.warnings:
        lines += ["## Warnings", *[f"- ⚠️ {w}" for w in result.warnings], ""]
    train = stats_by_split["train"]["columns"]
    lines += [
        "## Columns (train split)",
        "",
        "| column | type | nulls | min | mean | max | std | distinct / top | histogram |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in train.items():
        role = " (label)" if name == label else ""
        if s["kind"] == "numeric":
            hist = sparkline(s.get("histogram", {}).get("counts", []))
            row = [
                _fmt(s.get("min")),
                _fmt(s.get("mean")),
                _fmt(s.get("max")),
                _fmt(s.get("std")),
                _fmt(s.get("cardinality")),
                f"`{hist}`" if hist else "",
            ]
        elif "top_values" in s:
            top = ", ".join(f"{t['value']} ({t['count']})" for t in s["top_values"][:4])
            row = ["", "", "", "", f"{s['cardinality']}: {top}", ""]
        else:
            row = [_fmt(s.get("min")), "", _fmt(s.get("max")), "", "", ""]
        lines.append(
            f"| `{name}`{role} | {s['type']} | {s['nulls']} ({s['null_rate']:.1%}) | "
            + " | ".join(row)
            + " |"
        )
    lines.append("")
    return "\n".join(lines)


def _one_row(cursor: duckdb.DuckDBPyConnection) -> tuple[Any, ...]:
    """The first row of a query that always returns one (an aggregate, a ``current_database()``)."""
    row = cursor.fetchone()
    if row is None:
        raise RuntimeError("DuckDB returned no row for a query that always returns one")
    return row
