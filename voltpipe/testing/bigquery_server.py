"""A local BigQuery v2 REST (and Storage Read gRPC) test server backed by DuckDB, for the real clients.

Usage::

    with BigQueryTestServer("warehouse.duckdb", project="p") as srv:
        client = bigquery.Client(project="p", credentials=AnonymousCredentials(),
                                 client_options={"api_endpoint": srv.endpoint})
        ...
        assert srv.requests[0]["body"]["configuration"]["dryRun"]

What it speaks: jobs.insert (query jobs: dryRun, maximumBytesBilled, labels, location, typed
queryParameters, destinationTable, writeDisposition), jobs.get, jobs.getQueryResults,
tabledata.list (pageToken paging), tables.get, datasets.get; load jobs from PARQUET through the
upload endpoint ``/upload/bigquery/v2/projects/P/jobs`` (``uploadType=multipart`` and
``resumable``: writeDisposition, createDisposition, labels; ``srv.load_jobs()``); and, with ``storage_api=True``
(the default), the Storage Read API's ``BigQueryRead`` service over gRPC at
``srv.read_api_endpoint`` (see ``bigquery_storage_server``).

How BigQuery maps onto DuckDB:

- ``project.dataset.table`` (or ``dataset.table``) is DuckDB schema ``dataset``, table ``table``;
  the project is ignored. A database *path* is attached read-only (so other readers such as
  ``DuckDBWarehouse`` can open it at the same time) and results are written to an in-memory
  catalog; a *connection* is used as it is.
- SQL is transpiled with ``voltpipe.data.sql.to_duckdb``; ``@name`` parameters are bound natively,
  each cast to its declared type (so a STRING compared with a TIMESTAMP fails as on BigQuery).
- Types: BIGINT/INTEGER -> INT64, DOUBLE -> FLOAT64, VARCHAR -> STRING, TIMESTAMP (naive, taken
  as UTC) and TIMESTAMPTZ -> TIMESTAMP, DATE, DECIMAL -> NUMERIC, BLOB -> BYTES, LIST -> REPEATED,
  STRUCT -> RECORD. DATETIME (``CAST(x AS DATETIME)``, DATETIME parameters) is DuckDB's
  TIMESTAMP_NS here and is served as BigQuery serves it: schema type DATETIME, an Arrow timestamp
  without a time zone, ``2024-01-01T00:30:00`` in JSON rows (a TIMESTAMP_NS source column reads
  as DATETIME too).
- ``FARM_FINGERPRINT`` is emulated with DuckDB's ``hash`` (same range and spread, different
  values from Google's FarmHash); ``MD5``, ``TO_HEX`` and the rest are exact.
- ``totalBytesProcessed`` is an estimate: 8 bytes per value of every column of each table read.
- Errors carry BigQuery's real bodies: 404 ``notFound`` "Not found: Table p:d.t was not found in
  location US", 400 ``invalidQuery`` "Syntax error: ... at [1:8]", "Unrecognized name: x at
  [l:c]", "No matching signature for operator ... at [l:c]" for a parameter of the wrong type,
  and a job failing with ``bytesBilledLimitExceeded`` when what it bills (at least 10 MB,
  rounded up to MB) is over ``maximumBytesBilled``; "Resources exceeded" (``resourcesExceeded``)
  for an analytic function ordered over a whole result larger than ``max_global_sort_rows``.
- ``APPROX_QUANTILES(x, n)`` is exact here (DuckDB's ``quantile_disc``); invalid job labels are
  refused as BigQuery refuses them; load jobs append Parquet columns by name.

Every request is recorded in ``srv.requests`` as ``{"method", "path", "query", "body"}`` (query as
``{key: [values]}``; gRPC calls have method ``"GRPC"`` and the RPC's full name as path).
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import email.parser
import email.policy
import http.server
import io
import json
import re
import threading
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import sqlglot
from sqlglot import exp

from voltpipe.data import sql as sqlmod
from voltpipe.errors import DataError

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


class BigQueryError(Exception):
    """An error answered with BigQuery's JSON error body."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

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
        return self.con.execute("SELECT current_database()").fetchone()[0]

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
            offset = max(
                re.search(rf"\b{re.escape(m.group(1))}\b", sql).start()
                if re.search(rf"\b{re.escape(m.group(1))}\b", sql)
                else 0,
                0,
            )
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

    def estimate_bytes(self, tables: list[str]) -> int:
        total = 0
        with self.cursor() as cur:
            for name in dict.fromkeys(tables):
                rows = cur.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
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
            exists = cur.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_catalog = ? "
                "AND table_schema = ? AND table_name = ?",
                [catalog, dataset, table],
            ).fetchone()[0]
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


class BigQueryTestServer:
    """The test server; a context manager (``with BigQueryTestServer(db) as srv``).

    Args:
        database: a DuckDB file (attached read-only) or an open connection.
        project: the project the server answers for.
        location: the location in its messages and jobs (``US``).
        storage_api: also serve the Storage Read API over gRPC (``srv.read_api_endpoint``).
        max_global_sort_rows: a query whose analytic function is ordered over the whole result
            (``OVER (ORDER BY ...)`` without ``PARTITION BY``) fails with BigQuery's "Resources
            exceeded" when it returns more rows than this (BigQuery runs it in one worker).
    """

    def __init__(
        self,
        database: str | Path | duckdb.DuckDBPyConnection,
        project: str = "p",
        location: str = "US",
        storage_api: bool = True,
        max_global_sort_rows: int | None = 10_000_000,
    ) -> None:
        self.engine = Engine(database, project, location, max_global_sort_rows)
        self.project, self.location = project, location
        self.requests: list[dict[str, Any]] = []
        self.jobs: dict[str, dict[str, Any]] = {}
        self.uploads: dict[str, dict[str, Any]] = {}
        self._storage_api = storage_api
        self._lock = threading.Lock()
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.storage: Any = None

    # -- lifecycle --

    @property
    def endpoint(self) -> str:
        assert self._httpd is not None, "the server is not running"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def read_api_endpoint(self) -> str | None:
        return self.storage.endpoint if self.storage else None

    def start(self) -> BigQueryTestServer:
        handler = type("Handler", (_Handler,), {"server_state": self})
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="bigquery-test-server", daemon=True
        )
        self._thread.start()
        if self._storage_api:
            from voltpipe.testing.bigquery_storage_server import BigQueryReadTestServer

            self.storage = BigQueryReadTestServer(self.engine, self.record).start()
        return self

    def stop(self) -> None:
        if self.storage is not None:
            self.storage.stop()
            self.storage = None
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.engine.close()

    def __enter__(self) -> BigQueryTestServer:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()

    # -- helpers for tests --

    def record(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> None:
        with self._lock:
            self.requests.append({"method": method, "path": path, "query": query, "body": body})

    def job_requests(self) -> list[dict[str, Any]]:
        """The recorded jobs.insert bodies, in order."""
        return [
            r["body"]
            for r in self.requests
            if r["method"] == "POST" and r["path"].endswith("/jobs")
        ]

    def load_jobs(self) -> list[dict[str, Any]]:
        """The job resources of the load jobs uploaded (multipart or resumable), in order."""
        return [
            r["body"]["job"]
            for r in self.requests
            if r["path"].startswith("/upload/")
            and isinstance(r["body"], dict)
            and "job" in r["body"]
        ]

    def grpc_requests(self, rpc: str | None = None) -> list[dict[str, Any]]:
        return [
            r
            for r in self.requests
            if r["method"] == "GRPC" and (rpc is None or r["path"].endswith("/" + rpc))
        ]

    # -- REST methods --

    def insert_job(self, project: str, body: dict[str, Any]) -> dict[str, Any]:
        config = body.get("configuration", {})
        query = config.get("query")
        if query is None:
            raise BigQueryError(400, "invalid", "Only query jobs are supported by this test server")
        if query.get("useLegacySql"):
            raise BigQueryError(400, "invalid", "Legacy SQL is not supported by this test server")
        check_labels(config.get("labels"))
        ref = dict(body.get("jobReference") or {})
        job_id = ref.get("jobId") or f"job_{uuid.uuid4().hex}"
        location = ref.get("location") or self.location
        ref.update(projectId=project, jobId=job_id, location=location)
        dry = bool(config.get("dryRun"))
        if not dry and job_id in self.jobs:
            raise BigQueryError(
                409, "duplicate", f"Already Exists: Job {project}:{location}.{job_id}"
            )
        params = query.get("queryParameters", [])
        now = str(int(time.time() * 1000))
        job: dict[str, Any] = {
            "kind": "bigquery#job",
            "id": f"{project}:{location}.{job_id}",
            "jobReference": ref,
            "configuration": config,
            "status": {"state": "DONE"},
            "statistics": {"creationTime": now, "startTime": now, "endTime": now},
            "user_email": "anonymous@voltpipe.test",
        }
        if dry:
            # A dry run validates synchronously and answers errors as HTTP errors, like BigQuery.
            table, processed = self.engine.run(
                query["query"], params, query.get("defaultDataset"), limit0=True
            )
            stats = {
                "totalBytesProcessed": str(processed),
                "totalBytesBilled": "0",
                "statementType": "SELECT",
                "schema": schema_json(table.schema),
                "cacheHit": False,
            }
            job["statistics"].update(totalBytesProcessed=str(processed), query=stats)
            return job
        # A real job is created even when the query fails; the failure is in its status.
        table, processed = pa.table({}), 0
        stats = {"totalBytesProcessed": "0", "statementType": "SELECT", "cacheHit": False}
        job["statistics"]["query"] = stats
        job["_rows"], job["_schema"] = 0, {"fields": []}
        self.jobs[job_id] = job
        cap = query.get("maximumBytesBilled")
        try:
            table, processed = self.engine.run(
                query["query"], params, query.get("defaultDataset"), limit0=False
            )
            stats.update(totalBytesProcessed=str(processed), schema=schema_json(table.schema))
            job["statistics"]["totalBytesProcessed"] = str(processed)
            billed = max(MIN_BILLED_BYTES, -(-processed // 2**20) * 2**20)
            if cap is not None and billed > int(cap):
                raise BigQueryError(
                    400,
                    "bytesBilledLimitExceeded",
                    f"Query exceeded limit for bytes billed: {int(cap)}. {billed} or higher required.",
                )
            dest = query.get("destinationTable")
            if dest is None:
                dest = {
                    "projectId": project,
                    "datasetId": _ANON_DATASET,
                    "tableId": f"anon{uuid.uuid4().hex}",
                }
                config["query"]["destinationTable"] = dest
            disposition = query.get("writeDisposition") or "WRITE_EMPTY"
            self.engine.write_table(
                dest["datasetId"], dest["tableId"], table, disposition, project, keep_datetime=True
            )
        except BigQueryError as exc:
            job["status"] = {
                "state": "DONE",
                "errorResult": exc.body()["error"]["errors"][0],
                "errors": exc.body()["error"]["errors"],
            }
            return job
        stats["totalBytesBilled"] = str(billed)
        job["_rows"] = table.num_rows
        job["_schema"] = schema_json(table.schema)
        return job

    def insert_load_job(self, project: str, body: dict[str, Any], data: bytes) -> dict[str, Any]:
        """Runs a load job on uploaded bytes (PARQUET only) into its destination table."""
        import pyarrow.parquet as pq

        config = body.get("configuration", {})
        load = config.get("load")
        if load is None:
            raise BigQueryError(400, "invalid", "An upload must carry a load job configuration")
        check_labels(config.get("labels"))
        ref = dict(body.get("jobReference") or {})
        job_id = ref.get("jobId") or f"job_{uuid.uuid4().hex}"
        location = ref.get("location") or self.location
        ref.update(projectId=project, jobId=job_id, location=location)
        if job_id in self.jobs:
            raise BigQueryError(
                409, "duplicate", f"Already Exists: Job {project}:{location}.{job_id}"
            )
        now = str(int(time.time() * 1000))
        job: dict[str, Any] = {
            "kind": "bigquery#job",
            "id": f"{project}:{location}.{job_id}",
            "jobReference": ref,
            "configuration": {**config, "jobType": "LOAD"},
            "status": {"state": "DONE"},
            "statistics": {"creationTime": now, "startTime": now, "endTime": now},
            "user_email": "anonymous@voltpipe.test",
        }
        self.jobs[job_id] = job
        try:
            if (load.get("sourceFormat") or "CSV") != "PARQUET":
                raise BigQueryError(
                    400, "invalid", "This test server loads only sourceFormat PARQUET"
                )
            dest = load.get("destinationTable") or {}
            dataset, table_id = dest.get("datasetId"), dest.get("tableId")
            if not dataset or not table_id:
                raise BigQueryError(400, "invalid", "Load configuration must specify destination")
            try:
                table = pq.read_table(io.BytesIO(data))
            except Exception as exc:
                raise BigQueryError(
                    400, "invalid", f"Error while reading data, error message: {exc}"
                ) from None
            exists = True
            try:
                self.engine.resolve(dest.get("projectId", project), dataset, table_id)
            except BigQueryError:
                exists = False
            if not exists and load.get("createDisposition") == "CREATE_NEVER":
                raise BigQueryError(
                    404, "notFound", f"Not found: Table {project}:{dataset}.{table_id}"
                )
            disposition = load.get("writeDisposition") or "WRITE_APPEND"
            try:
                self.engine.write_table(dataset, table_id, table, disposition, project)
            except duckdb.Error as exc:
                raise BigQueryError(
                    400,
                    "invalid",
                    f"Provided Schema does not match Table {project}:{dataset}.{table_id}. "
                    + str(exc).splitlines()[0],
                ) from None
        except BigQueryError as exc:
            job["status"] = {
                "state": "DONE",
                "errorResult": exc.body()["error"]["errors"][0],
                "errors": exc.body()["error"]["errors"],
            }
            return job
        job["statistics"]["load"] = {
            "inputFiles": "1",
            "inputFileBytes": str(len(data)),
            "outputRows": str(table.num_rows),
            "outputBytes": str(table.nbytes),
        }
        return job

    def job(self, job_id: str) -> dict[str, Any]:
        if job_id not in self.jobs:
            raise BigQueryError(
                404, "notFound", f"Not found: Job {self.project}:{self.location}.{job_id}"
            )
        return self.jobs[job_id]

    def query_results(
        self, project: str, job_id: str, query: dict[str, list[str]]
    ) -> dict[str, Any]:
        job = self.job(job_id)
        error = job["status"].get("errorResult")
        if error:
            code = 404 if error["reason"] == "notFound" else 400
            raise BigQueryError(code, error["reason"], error["message"])
        out = {
            "kind": "bigquery#getQueryResultsResponse",
            "jobReference": job["jobReference"],
            "schema": job["_schema"],
            "totalRows": str(job["_rows"]),
            "jobComplete": True,
            "totalBytesProcessed": job["statistics"]["totalBytesProcessed"],
            "cacheHit": False,
        }
        max_results = int(query.get("maxResults", [str(PAGE_ROWS)])[0])
        if max_results:
            dest = job["configuration"]["query"]["destinationTable"]
            page = self.table_data(dest["projectId"], dest["datasetId"], dest["tableId"], query)
            out["rows"] = page.get("rows", [])
            if "pageToken" in page:
                out["pageToken"] = page["pageToken"]
        return out

    def dataset(self, project: str, dataset: str) -> dict[str, Any]:
        if self.engine.dataset_catalog(dataset) is None:
            raise BigQueryError(404, "notFound", f"Not found: Dataset {project}:{dataset}")
        return {
            "kind": "bigquery#dataset",
            "id": f"{project}:{dataset}",
            "datasetReference": {"projectId": project, "datasetId": dataset},
            "location": self.location,
        }

    def table(self, project: str, dataset: str, table: str) -> dict[str, Any]:
        data = self.engine.read_table(project, dataset, table)
        return {
            "kind": "bigquery#table",
            "id": f"{project}:{dataset}.{table}",
            "type": "TABLE",
            "tableReference": {"projectId": project, "datasetId": dataset, "tableId": table},
            "schema": schema_json(data.schema),
            "numRows": str(data.num_rows),
            "numBytes": str(data.nbytes),
            "location": self.location,
            "creationTime": str(int(time.time() * 1000)),
        }

    def table_data(
        self, project: str, dataset: str, table: str, query: dict[str, list[str]]
    ) -> dict[str, Any]:
        fields = query.get("selectedFields", [""])[0]
        columns = [c for c in fields.split(",") if c] or None
        data = self.engine.read_table(project, dataset, table, columns)
        start = int(query.get("pageToken", query.get("startIndex", ["0"]))[0])
        size = int(query.get("maxResults", [str(PAGE_ROWS)])[0]) or PAGE_ROWS
        page = data.slice(start, size)
        int64_ts = query.get("formatOptions.useInt64Timestamp", ["false"])[0].lower() == "true"
        out = {
            "kind": "bigquery#tableDataList",
            "totalRows": str(data.num_rows),
            "rows": rows_json(page, int64_ts),
        }
        if start + size < data.num_rows:
            out["pageToken"] = str(start + size)
        return out


_ROUTES = [
    ("POST", re.compile(r"/projects/([^/]+)/jobs"), "insert_job"),
    ("GET", re.compile(r"/projects/([^/]+)/jobs/([^/]+)"), "get_job"),
    ("GET", re.compile(r"/projects/([^/]+)/queries/([^/]+)"), "query_results"),
    ("GET", re.compile(r"/projects/([^/]+)/datasets/([^/]+)"), "dataset"),
    ("GET", re.compile(r"/projects/([^/]+)/datasets/([^/]+)/tables/([^/]+)"), "table"),
    ("GET", re.compile(r"/projects/([^/]+)/datasets/([^/]+)/tables/([^/]+)/data"), "table_data"),
]


class _Handler(http.server.BaseHTTPRequestHandler):
    server_state: BigQueryTestServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests read srv.requests, not stderr

    def _handle_upload(self, method: str, url: urllib.parse.SplitResult) -> None:
        """The media upload endpoint of jobs.insert: multipart, or resumable (start + PUTs)."""
        srv = self.server_state
        query = urllib.parse.parse_qs(url.query)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = url.path
        m = re.fullmatch(r"/upload/bigquery/v2/projects/([^/]+)/jobs", path)
        if not m:
            self._send(404, BigQueryError(404, "notFound", f"Not found: {method} {path}").body())
            return
        project = urllib.parse.unquote(m.group(1))
        kind = query.get("uploadType", [""])[0]
        try:
            if method == "POST" and kind == "multipart":
                message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                    b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + raw
                )
                parts = list(message.iter_parts())
                resource = json.loads(parts[0].get_payload(decode=True))
                data = parts[1].get_payload(decode=True) or b""
                srv.record(method, path, query, {"job": resource, "bytes": len(data)})
                self._send(200, _public(srv.insert_load_job(project, resource, data)))
            elif method == "POST" and kind == "resumable":
                resource = json.loads(raw) if raw else {}
                upload_id = uuid.uuid4().hex
                srv.uploads[upload_id] = {"job": resource, "data": bytearray()}
                srv.record(method, path, query, {"job": resource})
                location = f"{srv.endpoint}{path}?uploadType=resumable&upload_id={upload_id}"
                self._send(200, {}, {"Location": location})
            elif method == "PUT" and kind == "resumable":
                upload_id = query.get("upload_id", [""])[0]
                upload = srv.uploads.get(upload_id)
                if upload is None:
                    raise BigQueryError(404, "notFound", f"Not found: upload {upload_id}")
                upload["data"] += raw
                srv.record(method, path, query, {"upload_id": upload_id, "bytes": len(raw)})
                total = (self.headers.get("Content-Range") or "").rpartition("/")[2]
                received = len(upload["data"])
                if total.isdigit() and int(total) == received:
                    del srv.uploads[upload_id]
                    self._send(
                        200,
                        _public(srv.insert_load_job(project, upload["job"], bytes(upload["data"]))),
                    )
                else:
                    self._send(308, {}, {"Range": f"bytes=0-{received - 1}"} if received else {})
            else:
                raise BigQueryError(
                    400, "invalid", f"Unsupported upload: {method} uploadType={kind}"
                )
        except BigQueryError as exc:
            self._send(exc.code, exc.body())

    def _handle(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path.startswith("/upload/"):
            self._handle_upload(method, url)
            return
        query = urllib.parse.parse_qs(url.query)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        path = url.path.removeprefix("/bigquery/v2")
        srv = self.server_state
        srv.record(method, path, query, body)
        try:
            for verb, pattern, name in _ROUTES:
                m = pattern.fullmatch(path)
                if verb == method and m:
                    args = [urllib.parse.unquote(a) for a in m.groups()]
                    if name == "insert_job":
                        result = srv.insert_job(args[0], body or {})
                    elif name == "get_job":
                        result = srv.job(args[1])
                    elif name == "query_results":
                        result = srv.query_results(args[0], args[1], query)
                    elif name == "table_data":
                        result = srv.table_data(*args, query)
                    else:
                        result = getattr(srv, name)(*args)
                    self._send(200, _public(result))
                    return
            self._send(404, BigQueryError(404, "notFound", f"Not found: {method} {path}").body())
        except BigQueryError as exc:
            self._send(exc.code, exc.body())
        except Exception as exc:  # a server bug: answer 500 so the client fails fast, not hangs
            self._send(
                500, BigQueryError(500, "internalError", f"{type(exc).__name__}: {exc}").body()
            )

    def _send(
        self, code: int, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")


def _public(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource without the server's private ``_`` keys."""
    return {k: v for k, v in resource.items() if not k.startswith("_")}
