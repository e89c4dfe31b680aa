"""BigQuery SQL helpers: parse, find named parameters, transpile to DuckDB with sqlglot."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

import sqlglot
from sqlglot import exp

from voltpipe.errors import DataError

# sqlglot's "Required keyword: 'expression' missing for <class '...Mul'>" names its own classes;
# a person needs the SQL construct that is incomplete.
_CONSTRUCTS = {
    "Mul": "the * operator",
    "Div": "the / operator",
    "Add": "the + operator",
    "Sub": "the - operator",
    "EQ": "the = comparison",
    "NEQ": "the != comparison",
    "GT": "the > comparison",
    "GTE": "the >= comparison",
    "LT": "the < comparison",
    "LTE": "the <= comparison",
    "And": "AND",
    "Or": "OR",
    "Not": "NOT",
    "Where": "WHERE",
    "Having": "HAVING",
    "Group": "GROUP BY",
    "Order": "ORDER BY",
    "Limit": "LIMIT",
    "Join": "the JOIN",
    "In": "IN",
    "Between": "BETWEEN",
    "Like": "LIKE",
    "Alias": "AS",
    "Cast": "CAST",
}
_STATEMENT_STARTS = {"SELECT", "WITH", "L_PAREN", "FROM", "VALUES"}


def _syntax_error(sql: str, exc: Exception) -> DataError:
    """BigQuery-style: ``Syntax error: <what> at [line:column]``, naming the offending token."""
    if isinstance(exc, sqlglot.errors.TokenError):
        m = re.search(r"Missing (\S+) from (\d+):(\d+)", str(exc.__cause__ or exc))
        if m:
            return DataError(
                f"SQL syntax error: unclosed {m.group(1)} (a string or quoted name) starting "
                f"at [{m.group(2)}:{int(m.group(3)) + 1}]"
            )
        return DataError(f"SQL syntax error: {str(exc).splitlines()[0]}")
    try:
        tokens = sqlglot.Dialect.get_or_raise("bigquery").tokenize(sql)
    except Exception:  # only used to name the first word
        tokens = []
    if tokens and tokens[0].token_type.name not in _STATEMENT_STARTS:
        first = tokens[0]
        return DataError(
            f"SQL syntax error: unexpected {first.text!r} at [{first.line}:"
            f"{first.col - len(first.text) + 1}]; a query starts with SELECT or WITH"
        )
    errors = getattr(exc, "errors", None) or [{}]
    first = errors[0]
    token = first.get("highlight") or ""
    line, col = first.get("line"), first.get("col")
    where = f" at [{line}:{col - len(token) + 1}]" if line and col else ""
    description = re.sub(
        r"<Token token_type: [^,]+, text: ([^,]+),.*?>",
        r"'\1'",
        str(first.get("description") or exc),
    )
    required = re.match(
        r"Required keyword: '(\w+)' missing for <class '[\w.]*\.(\w+)'>", description
    )
    if required:
        construct = _CONSTRUCTS.get(required.group(2), required.group(2).upper())
        at_end = not (first.get("end_context") or "").strip()
        if token.upper() == construct or not token:
            what = f"{construct} is incomplete" + (" at the end of the query" if at_end else "")
        else:
            what = f"{construct} is incomplete before {token!r}"
    elif token:
        what = f"unexpected {token!r}" + (
            "" if description.startswith("Invalid expression") else f" ({description})"
        )
    else:
        what = description
    return DataError(f"SQL syntax error: {what}{where}")


@functools.lru_cache(maxsize=64)
def _parse(sql: str) -> exp.Expression:
    try:
        tree = sqlglot.parse_one(sql, read="bigquery")
    except (sqlglot.errors.ParseError, sqlglot.errors.TokenError) as exc:
        raise _syntax_error(sql, exc) from None
    if not isinstance(tree, exp.Expression):  # None: nothing but comments or whitespace
        raise DataError("the query is empty")
    return tree


def query_parameters_used(sql: str) -> set[str]:
    """Returns the names of the ``@named`` parameters the query references."""
    return {p.name for p in _parse(sql).find_all(exp.Parameter) if p.name}


def check_parameters(sql: str, given: Mapping[str, object]) -> None:
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


def checked(sql: str) -> str:
    """The query exactly as the user wrote it, once it parses: a syntax error is reported when
    the pipeline is built, and BigQuery runs (and its messages point into) the user's own text.

    A multi-line default breaks the header KFP writes into a compiled template;
    `voltpipe.runners.templates.repair_template_text` mends it, so queries no longer travel as
    `one_line` renderings.

    Raises:
        DataError: the query does not parse.
    """
    _parse(sql)
    return sql


def one_line(sql: str) -> str:
    """The query as one line of BigQuery SQL (``--`` comments become ``/* */``).

    KFP writes parameter defaults into the compiled YAML's header comment; a multi-line
    default would break that file, so queries travel as one line.
    """
    return _parse(sql).sql(dialect="bigquery")


def duplicate_names(columns: list[str]) -> list[str]:
    """The result column names that appear more than once, compared case-insensitively as
    BigQuery does (each reported once, in first-seen order)."""
    seen: dict[str, int] = {}
    for name in columns:
        seen[name.lower()] = seen.get(name.lower(), 0) + 1
    reported: dict[str, None] = {}
    for name in columns:
        if seen[name.lower()] > 1:
            reported.setdefault(name.lower(), None)
    return list(reported)


def duplicate_names_message(duplicates: list[str]) -> str:
    """BigQuery's words for a result with duplicate column names (e.g. ``SELECT t.*, a.*``)."""
    return (
        "Duplicate column names in the result are not supported. Found duplicate(s): "
        + ", ".join(duplicates)
    )
