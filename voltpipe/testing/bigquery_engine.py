"""The DuckDB engine behind the BigQuery test servers: BigQuery SQL, types, errors and tables.

Shared by the REST server (``bigquery_server``) and the Storage Read gRPC server
(``bigquery_storage_server``); the mapping of BigQuery onto DuckDB is described in
``bigquery_server``'s docstring.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import re
import threading
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import sqlglot
from sqlglot import exp

from voltpipe.data import sql as sqlmod
from voltpipe.errors import DataError
from voltpipe.testing._http import HttpError

_SOURCE_CATALOG = "bq_source"
MIN_BILLED_BYTES = 10 * 2**20  # BigQuery bills at least 10 MB a query, rounded up to MB
_ANON_DATASET = "_voltpipe_anonymous"
PAGE_ROWS = 10_000

_DUCK_TYPES = {
    "STRING": "VARCHAR",
    "INT64": "BIGINT",
    "INTEGER": "BIGINT",
    "FLOAT64": "DOUBLE",
    "FLOAT": "DOUBLE",
    "BOOL": "BOOLEAN",
    "BOOLEAN": "BOOLEAN",
    "DATE": "DATE",
    "DATETIME": "TIMESTAMP_NS",  # DATETIME's stand-in here (see the module docstring)
    "TIMESTAMP": "TIMESTAMP",
    "NUMERIC": "DECIMAL(38, 9)",
    "BIGNUMERIC": "DECIMAL(38, 9)",
    "BYTES": "BLOB",
    "TIME": "TIME",
}
_BQ_NAMES = {
    "VARCHAR": "STRING",
    "BIGINT": "INT64",
    "INTEGER": "INT64",
    "DOUBLE": "FLOAT64",
    "BOOLEAN": "BOOL",
    "TIMESTAMP": "TIMESTAMP",
    "DATE": "DATE",
    "BLOB": "BYTES",
}


class BigQueryError(HttpError):
    """An error answered with BigQuery's JSON error body."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(code, message)
        self.code, self.reason = code, reason

    def payload(self) -> dict[str, Any]:
        return self.body()

    def body(self) -> dict[str, Any]:
        status = {
            400: "INVALID_ARGUMENT",
            403: "PERMISSION_DENIED",
            404: "NOT_FOUND",
            409: "ALREADY_EXISTS",
        }.get(self.code, "UNKNOWN")
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "status": status,
                "errors": [{"message": self.message, "domain": "global", "reason": self.reason}],
            }
        }


# -- types -------------------------------------------------------------------------------------------


def bigquery_arrow_type(t: pa.DataType) -> pa.DataType:
    """The Arrow type BigQuery's Storage API uses for a DuckDB result column."""
    if pa.types.is_integer(t):
        return pa.int64()
    if pa.types.is_floating(t):
        return pa.float64()
    if pa.types.is_timestamp(t):
        # DuckDB's TIMESTAMP_NS stands for DATETIME (no time zone); any other is a TIMESTAMP.
        return pa.timestamp("us") if t.tz is None and t.unit == "ns" else pa.timestamp("us", "UTC")
    if pa.types.is_decimal(t):
        return pa.decimal128(38, 9)
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(bigquery_arrow_type(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, bigquery_arrow_type(f.type)) for f in t])
    return t


def to_bigquery_arrow(table: pa.Table) -> pa.Table:
    schema = pa.schema([pa.field(f.name, bigquery_arrow_type(f.type)) for f in table.schema])
    return table.cast(schema) if schema != table.schema else table


def _field(name: str, t: pa.DataType, mode: str = "NULLABLE") -> dict[str, Any]:
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _field(name, t.value_type, "REPEATED")
    if pa.types.is_struct(t):
        return {
            "name": name,
            "type": "RECORD",
            "mode": mode,
            "fields": [_field(f.name, f.type) for f in t],
        }
    kind = (
        "INTEGER"
        if pa.types.is_integer(t)
        else "FLOAT"
        if pa.types.is_floating(t)
        else "BOOLEAN"
        if pa.types.is_boolean(t)
        else "DATETIME"
        if pa.types.is_timestamp(t) and t.tz is None
        else "TIMESTAMP"
        if pa.types.is_timestamp(t)
        else "DATE"
        if pa.types.is_date(t)
        else "TIME"
        if pa.types.is_time(t)
        else "NUMERIC"
        if pa.types.is_decimal(t)
        else "BYTES"
        if pa.types.is_binary(t) or pa.types.is_large_binary(t)
        else "STRING"
    )
    return {"name": name, "type": kind, "mode": mode}


def schema_json(schema: pa.Schema) -> dict[str, Any]:
    return {"fields": [_field(f.name, f.type) for f in schema]}


def _cell(value: Any, t: pa.DataType, int64_timestamps: bool) -> Any:
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return [{"v": _cell(v, t.value_type, int64_timestamps)} for v in (value or [])]
    if value is None:
        return None
    if pa.types.is_struct(t):
        return {"f": [{"v": _cell(value.get(f.name), f.type, int64_timestamps)} for f in t]}
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime) and pa.types.is_timestamp(t) and t.tz is None:
        return value.isoformat()  # a DATETIME: civil time, no zone, as BigQuery writes it
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        micros = (value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)
        return str(micros) if int64_timestamps else repr(micros / 1e6)
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, (decimal.Decimal, int, float)):
        return str(value)
    return str(value)


def rows_json(table: pa.Table, int64_timestamps: bool) -> list[dict[str, Any]]:
    types = [f.type for f in table.schema]
    return [
        {
            "f": [
                {"v": _cell(row[name], t, int64_timestamps)}
                for name, t in zip(table.column_names, types, strict=True)
            ]
        }
        for row in table.to_pylist()
    ]


def _duck_type(param_type: dict[str, Any]) -> str:
    kind = param_type.get("type", "STRING").upper()
    if kind == "ARRAY":
        return _duck_type(param_type.get("arrayType", {})) + "[]"
    if kind == "STRUCT":
        inner = ", ".join(
            f'"{f.get("name")}" {_duck_type(f["type"])}' for f in param_type.get("structTypes", [])
        )
        return f"STRUCT({inner})"
    if kind not in _DUCK_TYPES:
        raise BigQueryError(400, "invalidQuery", f"Unsupported query parameter type: {kind}")
    return _DUCK_TYPES[kind]


def _param_value(name: str, param_type: dict[str, Any], value: dict[str, Any] | None) -> Any:
    kind = param_type.get("type", "STRING").upper()
    if value is None:
        return None
    if kind == "ARRAY":
        return [
            _param_value(name, param_type.get("arrayType", {}), v)
            for v in value.get("arrayValues", [])
        ]
    if kind == "STRUCT":
        values = value.get("structValues", {})
        return {
            f.get("name"): _param_value(name, f["type"], values.get(f.get("name")))
            for f in param_type.get("structTypes", [])
        }
    raw = value.get("value")
    if raw is None:
        return None
    try:
        if kind in ("INT64", "INTEGER"):
            return int(raw)
        if kind in ("FLOAT64", "FLOAT"):
            return float(raw)
        if kind in ("BOOL", "BOOLEAN"):
            if str(raw).lower() not in ("true", "false"):
                raise ValueError(raw)
            return str(raw).lower() == "true"
        if kind in ("NUMERIC", "BIGNUMERIC"):
            return decimal.Decimal(str(raw))
        if kind == "DATE":
            return dt.date.fromisoformat(raw)
        if kind in ("DATETIME", "TIMESTAMP"):
            text = str(raw).strip().replace("T", " ").replace("Z", "+00:00")
            if re.search(r"[+-]\d\d$", text):
                text += ":00"
            t = dt.datetime.fromisoformat(text)
            if t.tzinfo is not None:
                t = t.astimezone(dt.UTC).replace(tzinfo=None)
            return t
        if kind == "BYTES":
            return base64.b64decode(raw)
        return str(raw)
    except (ValueError, decimal.InvalidOperation, TypeError):
        raise BigQueryError(
            400,
            "invalidQuery",
            f"Invalid {kind} value {raw!r} for query parameter {name}",
        ) from None


_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")


def check_labels(labels: Any) -> None:
    """Refuses job labels BigQuery refuses (lowercase letters, digits, ``_``, ``-``; keys start
    with a letter; at most 63 characters; at most 64 labels)."""
    if not labels:
        return
    if len(labels) > 64:
        raise BigQueryError(400, "invalid", f"Too many labels: {len(labels)}; the limit is 64")
    for key, value in labels.items():
        if not _LABEL_KEY.fullmatch(str(key)):
            raise BigQueryError(
                400,
                "invalid",
                f'Label key "{key}" has invalid characters or length: keys must be 1-63 '
                "lowercase letters, digits, underscores or dashes, starting with a letter",
            )
        if not _LABEL_VALUE.fullmatch(str(value)):
            raise BigQueryError(
                400,
                "invalid",
                f'Label value "{value}" of key "{key}" has invalid characters or length: '
                "values must be at most 63 lowercase letters, digits, underscores or dashes",
            )


def _position(sql: str, offset: int) -> str:
    line = sql.count("\n", 0, offset) + 1
    col = offset - (sql.rfind("\n", 0, offset) + 1) + 1
    return f"[{line}:{col}]"


class Engine:
    """The DuckDB side: table resolution, BigQuery-SQL execution, destination tables."""

    def __init__(
        self,
        database: str | Path | duckdb.DuckDBPyConnection,
        project: str,
        location: str,
        max_global_sort_rows: int | None = None,
    ) -> None:
        self.project, self.location = project, location
        self.max_global_sort_rows = max_global_sort_rows
        self._global_sort = False
        if isinstance(database, duckdb.DuckDBPyConnection):
            self.con = database
            self.catalogs = [self._current_catalog()]
        else:
            self.con = duckdb.connect()
            path = str(database).replace("'", "''")
            self.con.execute(f"ATTACH '{path}' AS {_SOURCE_CATALOG} (READ_ONLY)")
            self.catalogs = [self._current_catalog(), _SOURCE_CATALOG]
        self.lock = threading.Lock()
        self._owns_connection = not isinstance(database, duckdb.DuckDBPyConnection)

    def close(self) -> None:
        if self._owns_connection:
            self.con.close()

    def _current_catalog(self) -> str:
        return _one_row(self.con.execute("SELECT current_database()"))[0]

    def cursor(self) -> duckdb.DuckDBPyConnection:
        with self.lock:
            return self.con.cursor()

    # -- names --

    def dataset_catalog(self, dataset: str) -> str | None:
        with self.cursor() as cur:
            rows = cur.execute(
                "SELECT catalog_name FROM information_schema.schemata WHERE schema_name = ?",
                [dataset],
            ).fetchall()
        found = {r[0] for r in rows}
        return next((c for c in self.catalogs if c in found), None)

    def resolve(self, project: str, dataset: str, table: str) -> str:
        """Returns the DuckDB name of a BigQuery table, or raises BigQuery's 404."""
        with self.cursor() as cur:
            rows = cur.execute(
                "SELECT table_catalog FROM information_schema.tables "
                "WHERE table_schema = ? AND table_name = ?",
                [dataset, table],
            ).fetchall()
        found = {r[0] for r in rows}
        for catalog in self.catalogs:
            if catalog in found:
                return f'"{catalog}"."{dataset}"."{table}"'
        if self.dataset_catalog(dataset) is None:
            raise BigQueryError(
                404,
                "notFound",
                f"Not found: Dataset {project}:{dataset} was not found in location {self.location}",
            )
        raise BigQueryError(
            404,
            "notFound",
            f"Not found: Table {project}:{dataset}.{table} was not found in location {self.location}",
        )

    # -- queries --

    def translate(
        self, sql: str, default_dataset: dict[str, str] | None = None
    ) -> tuple[str, list[str]]:
        """BigQuery SQL -> (DuckDB SQL with tables resolved, DuckDB names of the tables read)."""
        try:
            tree = sqlglot.parse_one(sql, read="bigquery")
        except sqlglot.errors.ParseError as exc:
            first = exc.errors[0] if exc.errors else {}
            detail = re.sub(
                r"<Token token_type: [^,]+, text: ([^,]+),.*?>",
                r'"\1"',
                first.get("description", str(exc)),
            )
            where = f" at [{first.get('line', 1)}:{first.get('col', 1)}]" if first else ""
            raise BigQueryError(400, "invalidQuery", f"Syntax error: {detail}{where}") from None
        if tree is None or not isinstance(tree, exp.Query):
            raise BigQueryError(
                400, "invalidQuery", "Syntax error: Expected a query statement at [1:1]"
            )
        ctes = {c.alias_or_name for c in tree.find_all(exp.CTE)}
        read = []
        for table in list(tree.find_all(exp.Table)):
            if not table.name or (not table.db and table.name in ctes):
                continue
            project = table.catalog or self.project
            dataset = table.db or (default_dataset or {}).get("datasetId")
            if not dataset:
                raise BigQueryError(
                    400,
                    "invalid",
                    f'Table "{table.name}" must be qualified with a dataset (e.g. dataset.table).',
                )
            resolved = self.resolve(project, dataset, table.name)
            catalog, schema, name = (p.strip('"') for p in resolved.split('"."'))
            table.set("catalog", exp.to_identifier(catalog, quoted=True))
            table.set("db", exp.to_identifier(schema, quoted=True))
            table.set("this", exp.to_identifier(name, quoted=True))
            read.append(resolved)
        fingerprint = exp.FarmFingerprint if hasattr(exp, "FarmFingerprint") else ()

        def rewrite(node: exp.Expression) -> exp.Expression:
            # GoogleSQL's DATETIME is sqlglot's TIMESTAMP (its TIMESTAMP is TIMESTAMPTZ).
            if isinstance(node, exp.DataType) and node.this in (
                exp.DataType.Type.TIMESTAMP,
                exp.DataType.Type.DATETIME,
            ):
                return exp.DataType.build("TIMESTAMP_NS", dialect="duckdb")
            if type(node).__name__ == "Datetime" and not isinstance(node.parent, exp.Cast):
                return exp.cast(node, exp.DataType.build("TIMESTAMP_NS", dialect="duckdb"))
            if isinstance(node, exp.ApproxQuantiles) and isinstance(node.expression, exp.Literal):
                # Exact here (quantile_disc), so both warehouses cut at the same values.
                steps = int(node.expression.this)
                points = ", ".join(repr(i / steps) for i in range(steps + 1))
                return sqlglot.parse_one(f"quantile_disc(x, [{points}])", read="duckdb").transform(
                    lambda n: node.this.copy() if isinstance(n, exp.Column) and n.name == "x" else n
                )
            if fingerprint and isinstance(node, fingerprint):
                arg = node.expressions[0] if node.expressions else node.this
                return sqlglot.parse_one(
                    "CAST(CAST(hash(x) AS HUGEINT) - 9223372036854775808 AS BIGINT)", read="duckdb"
                ).transform(
                    lambda n: arg.copy() if isinstance(n, exp.Column) and n.name == "x" else n
                )
            return node

        tree = tree.transform(rewrite)
        self._global_sort = any(
            w.args.get("order") is not None and not w.args.get("partition_by")
            for w in tree.find_all(exp.Window)
        )
        return tree.sql(dialect="duckdb"), read

    def bind(
        self, sql: str, duck_sql: str, parameters: list[dict[str, Any]]
    ) -> tuple[str, dict[str, Any]]:
        """Binds typed BigQuery parameters: each ``$name`` cast to its declared type."""
        given = {p.get("name"): p for p in parameters}
        used = set(re.findall(r"\$(\w+)", duck_sql))
        values = {}
        for name in sorted(used):
            param = given.get(name)
            if param is None:
                offset = sql.find(f"@{name}")
                raise BigQueryError(
                    400,
                    "invalidQuery",
                    f"Query parameter '{name}' not found at {_position(sql, max(offset, 0))}",
                )
            values[name] = _param_value(
                name, param.get("parameterType", {}), param.get("parameterValue")
            )
            cast = _duck_type(param.get("parameterType", {}))
            duck_sql = re.sub(rf"\${name}\b", f"CAST(${name} AS {cast})", duck_sql)
        return duck_sql, values

    def error(self, exc: duckdb.Error, sql: str, parameters: list[dict[str, Any]]) -> BigQueryError:
        """A DuckDB error as the BigQuery error the same query would get."""
        text = str(exc).split("\n")[0]
        text = re.sub(r"^\w+ Error: ", "", text)
        m = re.search(r'Referenced column "?([^"\s]+)"? not found', text)
        if m:
            used = re.search(rf"\b{re.escape(m.group(1))}\b", sql)
            offset = used.start() if used else 0
            return BigQueryError(
                400, "invalidQuery", f"Unrecognized name: {m.group(1)} at {_position(sql, offset)}"
            )
        m = re.search(
            r"Cannot compare values of type (\w+) and type (\w+)|"
            r"No function matches the given name and argument types '([^(]+)\((\w+), (\w+)\)'",
            text,
        )
        if m:
            left, right = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(5))
            op = m.group(3)
            wanted = {_BQ_NAMES.get(left, left), _BQ_NAMES.get(right, right)}
            offset = 0
            for p in parameters:
                kind = p.get("parameterType", {}).get("type", "")
                ref = re.search(
                    rf"([<>=!]+|\bLIKE|\bIN)?\s*@{re.escape(p.get('name', ''))}\b",
                    sql,
                    re.IGNORECASE,
                )
                if ref and kind in wanted:
                    offset = ref.start() if not ref.group(1) else sql.index("@", ref.start())
                    op = op or (ref.group(1) or "").upper() or None
                    break
            op = op or "="
            return BigQueryError(
                400,
                "invalidQuery",
                f"No matching signature for operator {op} for argument types: "
                f"{_BQ_NAMES.get(left, left)}, {_BQ_NAMES.get(right, right)} at {_position(sql, offset)}",
            )
        if isinstance(exc, duckdb.ParserException):
            return BigQueryError(400, "invalidQuery", f"Syntax error: {text} at [1:1]")
        if isinstance(exc, duckdb.CatalogException):
            return BigQueryError(404, "notFound", f"Not found: {text}")
        return BigQueryError(400, "invalidQuery", f"Query error: {text} at [1:1]")

    @staticmethod
    def _refuse_duplicate_names(cur: Any, duck_sql: str, values: dict[str, Any]) -> None:
        """BigQuery refuses a result with two columns of one name (``SELECT t.*, a.*`` of two
        tables with an ``id``), also when a star expands a derived table that has them
        (``SELECT r.* FROM (SELECT t.*, a.* ...) AS r``). DuckDB keeps the top level's
        duplicates and renames a derived table's (``id_1``), so each derived table (subquery
        or CTE) a star expands is bound on its own to see its names."""
        tree = sqlglot.parse_one(duck_sql, read="duckdb")
        ctes = {c.alias_or_name: c.this for c in tree.find_all(exp.CTE)}
        with_ = tree.args.get("with_") or tree.args.get("with")  # sqlglot 30 renamed it
        prefix = f"{with_.sql('duckdb')} " if with_ is not None else ""
        pending: list[Any] = [tree]  # sqlglot expressions (`Expr` in sqlglot 30)
        while pending:
            query = pending.pop()
            sql = query.sql("duckdb") if query is tree else prefix + query.sql("duckdb")
            used = {name: v for name, v in values.items() if f"${name}" in sql}
            try:
                names = cur.sql(sql, params=used).columns
            except duckdb.Error:  # a correlated subquery binds only inside its query
                names = []
            duplicates = sqlmod.duplicate_names(names)
            if duplicates:
                raise BigQueryError(400, "invalidQuery", sqlmod.duplicate_names_message(duplicates))
            if not isinstance(query, exp.Select) or not any(
                isinstance(p, exp.Star) or isinstance(p.this, exp.Star) for p in query.expressions
            ):
                continue
            from_ = query.args.get("from_") or query.args.get("from")  # sqlglot 30 renamed it
            sources = [from_.this] if from_ is not None else []
            sources += [j.this for j in query.args.get("joins") or []]
            for source in sources:
                if isinstance(source, exp.Subquery):
                    pending.append(source.this)
                elif isinstance(source, exp.Table) and not source.db and source.name in ctes:
                    pending.append(ctes[source.name])

    def estimate_bytes(self, tables: list[str]) -> int:
        total = 0
        with self.cursor() as cur:
            for name in dict.fromkeys(tables):
                rows = _one_row(cur.execute(f"SELECT count(*) FROM {name}"))[0]
                cols = len(cur.execute(f"SELECT * FROM {name} LIMIT 0").description)
                total += rows * cols * 8
        return total

    def run(
        self,
        sql: str,
        parameters: list[dict[str, Any]],
        default_dataset: dict[str, str] | None,
        *,
        limit0: bool,
    ) -> tuple[pa.Table, int]:
        duck_sql, tables = self.translate(sql, default_dataset)
        duck_sql, values = self.bind(sql, duck_sql, parameters)
        global_sort = self._global_sort
        query = f"SELECT * FROM ({duck_sql}) LIMIT 0" if limit0 else duck_sql
        try:
            with self.cursor() as cur:
                self._refuse_duplicate_names(cur, duck_sql, values)
                table = cur.sql(query, params=values).to_arrow_table()
        except duckdb.Error as exc:
            raise self.error(exc, sql, parameters) from None
        limit = self.max_global_sort_rows
        if global_sort and limit is not None and table.num_rows > limit:
            # An analytic function ordered over the whole result runs in one worker.
            raise BigQueryError(
                400,
                "resourcesExceeded",
                "Resources exceeded during query execution: The query could not be executed "
                "in the allotted memory. Peak usage: 143% of limit. Top memory consumer(s): "
                "analytic OVER() clauses: 98% other/unattributed: 2%",
            )
        return to_bigquery_arrow(table), self.estimate_bytes(tables)

    def write_table(
        self,
        dataset: str,
        table: str,
        data: pa.Table,
        disposition: str,
        project: str,
        *,
        keep_datetime: bool = False,
    ) -> None:
        catalog = self.catalogs[0]
        name = f'"{catalog}"."{dataset}"."{table}"'
        with self.cursor() as cur:
            exists = _one_row(
                cur.execute(
                    "SELECT count(*) FROM information_schema.tables WHERE table_catalog = ? "
                    "AND table_schema = ? AND table_name = ?",
                    [catalog, dataset, table],
                )
            )[0]
            if exists and disposition == "WRITE_EMPTY":
                raise BigQueryError(
                    409, "duplicate", f"Already Exists: Table {project}:{dataset}.{table}"
                )
            cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{catalog}"."{dataset}"')
            if keep_datetime:  # a result's DATETIME columns stay DATETIME (TIMESTAMP_NS) here
                data = data.cast(
                    pa.schema(
                        pa.field(f.name, pa.timestamp("ns"))
                        if pa.types.is_timestamp(f.type) and f.type.tz is None
                        else f
                        for f in data.schema
                    )
                )
            cur.register("__bq_result", data)
            if exists and disposition == "WRITE_APPEND":
                # Load jobs match columns by name (a Parquet file's column order is free).
                cur.execute(f"INSERT INTO {name} BY NAME SELECT * FROM __bq_result")
            else:
                cur.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM __bq_result")
            cur.unregister("__bq_result")

    def read_table(
        self,
        project: str,
        dataset: str,
        table: str,
        columns: list[str] | None = None,
        where: str | None = None,
    ) -> pa.Table:
        name = self.resolve(project, dataset, table)
        select = ", ".join(f'"{c}"' for c in columns) if columns else "*"
        query = f"SELECT {select} FROM {name}"
        if where:
            query += f" WHERE {sqlmod.to_duckdb(f'SELECT 1 FROM t WHERE {where}').split(' WHERE ', 1)[1]}"
        try:
            with self.cursor() as cur:
                return to_bigquery_arrow(cur.sql(query).to_arrow_table())
        except duckdb.Error as exc:
            raise self.error(exc, where or query, []) from None
        except DataError as exc:
            raise BigQueryError(400, "invalid", str(exc)) from None


def _one_row(cursor: duckdb.DuckDBPyConnection) -> tuple[Any, ...]:
    """The first row of a query that always returns one (an aggregate, a ``current_database()``)."""
    row = cursor.fetchone()
    if row is None:
        raise RuntimeError("DuckDB returned no row for a query that always returns one")
    return row
