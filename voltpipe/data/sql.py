"""BigQuery SQL helpers: parse, find named parameters, transpile to DuckDB with sqlglot."""

from __future__ import annotations

import functools
import re

import sqlglot
from sqlglot import exp

from voltpipe.errors import DataError


@functools.lru_cache(maxsize=64)
def _parse(sql: str) -> exp.Expression:
    try:
        tree = sqlglot.parse_one(sql, read="bigquery")
    except sqlglot.errors.ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        where = f" at line {first.get('line')}, column {first.get('col')}" if first else ""
        detail = first.get("description", str(exc)) if first else str(exc)
        detail = re.sub(r"<Token token_type: [^,]+, text: ([^,]+),.*?>", r"'\1'", detail)
        raise DataError(f"SQL syntax error{where}: {detail}") from None
    if tree is None:
        raise DataError("the query is empty")
    return tree


def query_parameters_used(sql: str) -> set[str]:
    """Returns the names of the ``@named`` parameters the query references."""
    return {p.name for p in _parse(sql).find_all(exp.Parameter) if p.name}


def check_parameters(sql: str, given: dict[str, object]) -> None:
    """Raises DataError naming each referenced parameter that has no value."""
    missing = sorted(query_parameters_used(sql) - set(given))
    if missing:
        names = ", ".join(f"@{m}" for m in missing)
        raise DataError(f"query parameter {names} has no value: add it under query_parameters")


def to_duckdb(sql: str) -> str:
    """Transpiles BigQuery Standard SQL to DuckDB SQL; ``@name`` becomes ``$name``."""
    tree = _parse(sql)
    if not isinstance(tree, exp.Query):
        raise DataError(f"the query must be a SELECT statement, got {tree.key.upper()}")
    return tree.sql(dialect="duckdb")


def tables_referenced(sql: str) -> list[str]:
    """Returns the dotted names of the tables the query reads (CTE names excluded)."""
    tree = _parse(sql)
    ctes = {c.alias_or_name for c in tree.find_all(exp.CTE)}
    names = []
    for t in tree.find_all(exp.Table):
        name = ".".join(p for p in (t.catalog, t.db, t.name) if p)
        if name and t.name not in ctes and name not in names:
            names.append(name)
    return names


def one_line(sql: str) -> str:
    """The query as one line of BigQuery SQL (``--`` comments become ``/* */``).

    KFP writes parameter defaults into the compiled YAML's header comment; a multi-line
    default would break that file, so queries travel as one line.
    """
    return _parse(sql).sql(dialect="bigquery")
