"""Statistics, schema inference, validation verdicts and the readable report."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from voltpipe.data.validation import (
    compute_statistics,
    infer_schema,
    render_report,
    sparkline,
    validate,
)
from voltpipe.errors import DataError


def _write(folder: Path, table: pa.Table) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / "part-00000.parquet")
    return folder


def _splits(tmp_path: Path, table: pa.Table) -> dict:
    return {s: compute_statistics(_write(tmp_path / s, table)) for s in ("train", "valid", "test")}


GOOD = pa.table(
    {"x": np.arange(100, dtype="float64"), "c": ["a", "b"] * 50, "y": np.linspace(0, 1, 100)}
)


def test_statistics_for_numbers_and_strings(tmp_path: Path) -> None:
    stats = compute_statistics(_write(tmp_path / "d", GOOD))
    x = stats["columns"]["x"]
    assert stats["rows"] == 100
    assert (x["min"], x["max"], x["nulls"], x["kind"]) == (0.0, 99.0, 0, "numeric")
    assert x["mean"] == pytest.approx(49.5)
    assert x["quantiles"]["p50"] == pytest.approx(49.5)
    assert sum(x["histogram"]["counts"]) == 100
    c = stats["columns"]["c"]
    assert (
        c["cardinality"] == 2
        and c["top_values"][0]["count"] == 50
        and c["categories"] == ["a", "b"]
    )


def test_good_data_passes(tmp_path: Path) -> None:
    result = validate(_splits(tmp_path, GOOD), label="y", task="regression")
    assert result.ok and result.errors == []


@pytest.mark.parametrize(
    ("table", "label", "task", "message"),
    [
        (GOOD.slice(0, 0), "y", "regression", "the train split is empty"),
        (GOOD.drop_columns("y"), "y", "regression", "label column 'y' is missing"),
        (
            GOOD.set_column(2, "y", pa.array([None] * 100, pa.float64())),
            "y",
            "regression",
            "label column 'y' is all null",
        ),
        (
            GOOD.set_column(2, "y", pa.array([3.0] * 100)),
            "y",
            "regression",
            "label column 'y' is constant",
        ),
        (GOOD.append_column("k", pa.array(["one"] * 100)), "k", "classification", "single class"),
        (GOOD, "c", "regression", "regression needs a numeric label"),
        (
            GOOD.set_column(0, "x", pa.array([None] * 100, pa.float64())),
            "y",
            "regression",
            "column 'x' is all null",
        ),
        (
            GOOD.set_column(0, "x", pa.array([np.nan] + [1.0] * 99)),
            "y",
            "regression",
            "column 'x' has 1 NaN",
        ),
    ],
)
def test_problems_are_named(
    tmp_path: Path, table: pa.Table, label: str, task: str, message: str
) -> None:
    result = validate(_splits(tmp_path, table), label=label, task=task)
    assert not result.ok
    assert any(message in e for e in result.errors), result.errors
    with pytest.raises(DataError, match="data validation failed"):
        result.raise_if_failed()


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    table = pa.table({"x": pa.array([None] * 10, pa.float64()), "y": [1.0] * 10})
    result = validate(_splits(tmp_path, table), label="y", task="regression")
    assert len(result.errors) == 2


def test_schema_comparison(tmp_path: Path) -> None:
    schema = infer_schema(compute_statistics(_write(tmp_path / "ref", GOOD)))
    changed = pa.table(
        {"x": GOOD.column("x").to_numpy() * 100, "c": ["a", "z"] * 50, "extra": [1] * 100}
    )
    result = validate(
        _splits(tmp_path, changed), label=None, task="regression", expected_schema=schema
    )
    text = " ".join(result.errors)
    assert "missing against the schema: y" in text
    assert "not in the schema: extra" in text
    assert "far outside" in text
    assert any("new categories: z" in w for w in result.warnings)


def test_report_is_readable_markdown(tmp_path: Path) -> None:
    stats = _splits(tmp_path, GOOD)
    report = render_report(stats, validate(stats, label="y", task="regression"), "y")
    assert "**Verdict:** passed" in report
    assert "| `y` (label) |" in report and "| `c` |" in report
    assert sparkline([0, 5, 10]) == " ▅█"


@pytest.mark.parametrize(
    ("column", "bad", "message"),
    [
        ("x", [float("inf")], r"column 'x' has 1 infinite value\(s\)"),
        ("x", [float("-inf"), float("inf")], r"column 'x' has 2 infinite value\(s\)"),
        ("x", [float("nan")], r"column 'x' has 1 NaN value\(s\)"),
        ("y", [float("nan"), float("inf")], r"column 'y' has 1 NaN and 1 infinite value\(s\)"),
        ("x", [1e300], r"column 'x' has values as large as 1e\+300 in magnitude.*rescale"),
        ("y", [-1.7e308], r"column 'y' has values as large as 1.7e\+308"),
    ],
)
def test_non_finite_and_huge_numbers_get_one_message(
    tmp_path: Path, column: str, bad: list[float], message: str
) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=200), rng.normal(size=200)
    values = {"x": x, "y": y}
    values[column][: len(bad)] = bad
    stats = _splits(tmp_path, pa.table(values))  # no DuckDB binder error on inf
    col = stats["train"]["columns"][column]
    assert col["min"] is not None and np.isfinite([col["min"], col["max"], col["mean"]]).all()
    assert sum(col["histogram"]["counts"]) == int(np.isfinite(values[column]).sum())
    errors = validate(stats, label="y", task="regression").errors
    assert len(errors) == 1 and re.search(message, errors[0]), errors


def test_a_one_row_class_is_an_error_and_a_rare_one_a_warning(tmp_path: Path) -> None:
    labels = ["ok"] * 300 + ["iced"] * 5 + ["fire"]
    x = np.arange(len(labels), dtype=float)
    stats = _splits(tmp_path, pa.table({"x": x, "y": labels}))
    result = validate(stats, label="y", task="classification")
    assert result.errors == [
        "label class 'fire' of 'y' has a single row in train: the model cannot learn it; add "
        "rows or leave it out"
    ]
    assert "label class 'iced' of 'y' has only 5 rows in train" in result.warnings
    codes = _splits(tmp_path / "codes", pa.table({"x": x, "y": [0] * 300 + [1] * 5 + [2]}))
    assert (
        validate(codes, label="y", task="classification")
        .errors[0]
        .startswith("label class '2' of 'y' has a single row")
    )


def test_constant_and_near_constant_train_columns_are_warnings(tmp_path: Path) -> None:
    n = 5000
    alarm = np.zeros(n)
    alarm[:2] = 1.0  # 2 of 5000 rows: 99.96 % zeros
    table = pa.table(
        {
            "x": np.arange(n, dtype="float64"),
            "always_zero": np.zeros(n),
            "alarm": alarm,
            "rare": np.r_[np.ones(10), np.zeros(n - 10)],  # 99.8 %: not near-constant
            "y": np.linspace(0, 1, n),
        }
    )
    stats = _splits(tmp_path, table)
    assert stats["train"]["columns"]["alarm"]["mode"] == {"value": 0.0, "count": n - 2}
    result = validate(stats, label="y", task="regression")
    assert result.ok  # warnings, not errors
    (const,) = [w for w in result.warnings if "'always_zero'" in w]
    assert "constant in the train split (always 0" in const
    (near,) = [w for w in result.warnings if "'alarm'" in w]
    assert "near-constant" in near and "99.96%" in near
    assert not [w for w in result.warnings if "'rare'" in w or "'x'" in w or "'y'" in w]
    assert "always_zero" in render_report(stats, result, "y")
