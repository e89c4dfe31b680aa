"""BigQuery SQL parsing and DuckDB transpilation."""

from __future__ import annotations

import pytest

from voltpipe.data.sql import check_parameters, query_parameters_used, tables_referenced, to_duckdb
from voltpipe.errors import DataError


def test_named_parameters_become_duckdb_parameters() -> None:
    sql = "SELECT EXTRACT(HOUR FROM ts) AS h FROM `proj.ds.t` WHERE ts < @cutoff"
    assert query_parameters_used(sql) == {"cutoff"}
    out = to_duckdb(sql)
    assert "$cutoff" in out and "@cutoff" not in out


def test_missing_parameter_is_named() -> None:
    with pytest.raises(DataError, match="@cutoff has no value"):
        check_parameters("SELECT 1 FROM t WHERE a < @cutoff", {})


def test_syntax_error_gives_position_not_token_dump() -> None:
    with pytest.raises(DataError) as err:
        to_duckdb("SELECT * FROM WHERE x")
    assert str(err.value).startswith("SQL syntax error: ") and "at [1:" in str(err.value)
    assert "<Token" not in str(err.value)


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELEC a FROM t", "unexpected 'SELEC' at [1:1]; a query starts with SELECT or WITH"),
        ("SELECT a * FROM t", "the * operator is incomplete before 'FROM' at [1:12]"),
        ("SELECT a FROM t WHERE", "WHERE is incomplete at the end of the query at [1:17]"),
        ("SELECT a\nFROM t WHERE x = = 1", "the = comparison is incomplete before '=' at [2:18]"),
        (
            "SELECT a FROM t WHERE x = 'abc",
            "unclosed ' (a string or quoted name) starting at [1:27]",
        ),
    ],
)
def test_syntax_errors_name_the_token_and_position_as_bigquery_does(sql: str, message: str) -> None:
    with pytest.raises(DataError) as err:
        to_duckdb(sql)
    assert str(err.value) == f"SQL syntax error: {message}"
    assert "sqlglot" not in str(err.value) and "<class" not in str(err.value)


def test_only_select_statements_are_accepted() -> None:
    with pytest.raises(DataError, match="must be a SELECT"):
        to_duckdb("DELETE FROM t WHERE true")


def test_tables_referenced_skips_ctes() -> None:
    sql = "WITH c AS (SELECT 1 AS a) SELECT * FROM `p.d.t` JOIN c ON true JOIN s.u ON true"
    assert tables_referenced(sql) == ["p.d.t", "s.u"]
