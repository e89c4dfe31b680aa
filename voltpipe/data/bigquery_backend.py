"""The BigQuery warehouse: typed query jobs, split assigned in SQL, Arrow read through the Storage API."""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlglot import exp

from voltpipe.data import sql as sqlmod
from voltpipe.data.params import _coerce_scalar
from voltpipe.data.warehouse_types import (
    SPLITS,
    ChunkedWrite,
    ExtractResult,
    QueryEstimate,
    SplitSpec,
    row_width,
)
from voltpipe.errors import DataError

SPLIT_COLUMN = "__voltpipe_split"
_BODY_LINE = 3  # the line of split_query's text where the user's query begins
_ROW = "__voltpipe_row"
_CUTS = "__voltpipe_cuts"
# A time split cuts at quantiles of the column, in steps of 1/QUANTILE_STEPS (0.1 %).
QUANTILE_STEPS = 1000
# BigQuery bills at least 10 MB a query (on-demand pricing; MB = 2**20 bytes), rounded up to MB.
MIN_BILLED_BYTES = 10 * 2**20
_DISPOSITION = {"append": "WRITE_APPEND", "replace": "WRITE_TRUNCATE"}


def billed_bytes(processed: int) -> int:
    """What BigQuery bills for a query processing `processed` bytes."""
    return max(MIN_BILLED_BYTES, -(-int(processed) // 2**20) * 2**20)


def quantile_offsets(split: SplitSpec) -> tuple[int, int]:
    """The offsets in ``APPROX_QUANTILES(column, QUANTILE_STEPS)`` of the train and valid cuts."""
    train, valid, _ = split.fractions
    return round(train * QUANTILE_STEPS), round((train + valid) * QUANTILE_STEPS)


# Streams per split read session; BigQuery may return fewer (small tables get one).
MIN_STREAM_COUNT = 4  # read streams asked for a split, at least (BigQuery gives fewer if small)
MAX_STREAM_COUNT = 64  # read streams (and so output shards) per split, at most
STREAM_BYTES = 64 * 2**20  # a read stream (one parquet shard) per this much of a split


def read_stream_count(table_bytes: int, fraction: float) -> int:
    """Read streams to ask for one split: one per ``STREAM_BYTES`` of the split's share of the
    result table, between ``MIN_STREAM_COUNT`` and ``MAX_STREAM_COUNT``. Each stream is written as one parquet
    shard, so shards, too, stay near ``STREAM_BYTES`` whatever the table's size."""
    share = max(0, int(table_bytes * fraction))
    return max(MIN_STREAM_COUNT, min(MAX_STREAM_COUNT, -(-share // STREAM_BYTES)))


_PARQUET_OPTIONS = {"compression": "zstd"}


def split_expression(split: SplitSpec) -> str:
    """BigQuery SQL giving each row of ``__voltpipe_row`` a split code 0/1/2 (train/valid/test).

    Same fraction semantics as the DuckDB backend: a position in [0, 1) per row, train below
    ``fractions[0]``, valid below ``fractions[0] + fractions[1]``, test above.

    - time: see `split_query`: a plain comparison with cut points computed first (no window).
    - hash: the first 60 bits of ``MD5(key || ':' || seed)``. MD5 is computed identically by
      DuckDB, so a key lands in the same split on both warehouses and on every run.
    - random: ``FARM_FINGERPRINT`` of the whole row as JSON and the seed: stable for the same data
      and seed, but not equal to DuckDB's choice (the engines serialise rows differently).
    """
    train, valid, _ = split.fractions
    seed = int(split.seed)  # an int from the config, never user text
    column = f"`{(split.column or '').replace('`', '')}`"
    if split.method == "time":
        low, high = quantile_offsets(split)
        value = f"{_ROW}.{column}"
        return (
            f"CASE WHEN {value} < {_CUTS}.q[OFFSET({low})] THEN 0 "
            f"WHEN {value} < {_CUTS}.q[OFFSET({high})] THEN 1 ELSE 2 END"
        )
    if split.method == "hash":
        position = (
            "MOD(CAST(CONCAT('0x', SUBSTR(TO_HEX(MD5(CONCAT("
            f"COALESCE(CAST({column} AS STRING), ''), ':{seed}'))), 1, 15)) AS INT64), 1000000) / 1000000"
        )
    else:
        position = f"ABS(MOD(FARM_FINGERPRINT(CONCAT(TO_JSON_STRING({_ROW}), ':{seed}')), 1000000)) / 1000000"
    return (
        f"CASE WHEN {position} < {train!r} THEN 0 "
        f"WHEN {position} < {train + valid!r} THEN 1 ELSE 2 END"
    )


def split_query(sql: str, split: SplitSpec) -> str:
    """Wraps the user's query so each row carries its split code in ``__voltpipe_split``.

    A time split computes its cut points first, ``APPROX_QUANTILES(column, 1000)`` of the
    result (an aggregate BigQuery computes in parallel), and splits with a plain comparison:
    a ``PERCENT_RANK() OVER (ORDER BY column)`` over the whole result is a global sort in one
    worker, which BigQuery refuses ("Resources exceeded") on large extracts. Rows equal to a
    cut go to the later split (ties stay together); NULLs go to test, as NULLS LAST did.
    """
    body = sql.rstrip().rstrip(";").rstrip()
    # The user's query starts on line 3 (positions in BigQuery's messages are shifted back by
    # _BODY_LINE - 1); the newline before ")" keeps a trailing "-- comment" from eating it.
    if split.method == "time":
        column = f"`{(split.column or '').replace('`', '')}`"
        return (
            "-- voltpipe: a time split at cut points computed first\n"
            f"WITH {_ROW} AS (\n{body}\n),\n"
            f"{_CUTS} AS (SELECT APPROX_QUANTILES({column}, {QUANTILE_STEPS}) AS q FROM {_ROW})\n"
            f"SELECT {_ROW}.*, {split_expression(split)} AS {SPLIT_COLUMN}\n"
            f"FROM {_ROW} CROSS JOIN {_CUTS}"
        )
    return (
        f"SELECT {_ROW}.*, {split_expression(split)} AS {SPLIT_COLUMN}\nFROM (\n{body}\n) AS {_ROW}"
    )


def _split_struct_type(type_: str) -> list[tuple[str, str]]:
    """``STRUCT<a INT64, b ARRAY<STRING>>`` -> ``[("a", "INT64"), ("b", "ARRAY<STRING>")]``."""
    struct = exp.DataType.build(type_, dialect="bigquery")
    return [(field.name, field.args["kind"].sql("bigquery")) for field in struct.expressions]


def _element_type(type_: str) -> str:
    """``ARRAY<INT64>`` -> ``INT64`` (``ARRAY<STRUCT<...>>`` -> ``STRUCT<...>``)."""
    return str(exp.DataType.build(type_, dialect="bigquery").expressions[0].sql("bigquery"))


def _python_scalar(value: Any, type_: str, name: str) -> Any:
    try:
        out = _coerce_scalar(value, type_, name, to_json=False)
    except (TypeError, ValueError):
        raise DataError(
            f"query parameter @{name}: value {value!r} is not a valid {type_}"
        ) from None
    if type_ == "TIMESTAMP" and isinstance(out, dt.datetime):
        out = out.replace(tzinfo=dt.UTC)  # voltpipe keeps TIMESTAMPs as naive UTC
    return out


def query_parameter(name: str | None, type_: str, value: Any) -> Any:
    """Returns the google-cloud-bigquery parameter object for one typed voltpipe parameter.

    Raises:
        DataError: the value does not fit its type (names the parameter).
    """
    from google.cloud import bigquery

    label = name or "(struct field)"
    if type_.startswith("ARRAY<"):
        inner = _element_type(type_)
        if not isinstance(value, list):
            raise DataError(f"query parameter @{label}: type {type_} needs a list, got {value!r}")
        if inner.startswith("STRUCT<"):
            items = [query_parameter(None, inner, v) for v in value]
            if not items:
                raise DataError(f"query parameter @{label}: an empty ARRAY<STRUCT> cannot be typed")
            return bigquery.ArrayQueryParameter(name, "STRUCT", items)
        return bigquery.ArrayQueryParameter(
            name, inner, [_python_scalar(v, inner, label) for v in value]
        )
    if type_.upper().startswith("STRUCT<"):
        if not isinstance(value, dict):
            raise DataError(
                f"query parameter @{label}: type {type_} needs a mapping, got {value!r}"
            )
        by_lower = {k.lower(): v for k, v in value.items()}
        fields = _split_struct_type(type_)
        unknown = set(by_lower) - {f.lower() for f, _ in fields}
        if unknown:
            raise DataError(
                f"query parameter @{label}: fields {sorted(unknown)} are not in its type {type_}"
            )
        names = {k.lower(): k for k in value}
        subs = [
            query_parameter(names.get(f.lower(), f), ftype, by_lower.get(f.lower()))
            for f, ftype in fields
        ]
        return bigquery.StructQueryParameter(name, *subs)
    return bigquery.ScalarQueryParameter(name, type_, _python_scalar(value, type_, label))


def _bigquery_type(field: Any) -> str:
    """A schema field's type in GoogleSQL spelling (``ARRAY<INT64>``, ``STRUCT<...>``)."""
    legacy = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL", "RECORD": "STRUCT"}
    kind = legacy.get(field.field_type, field.field_type)
    if kind == "STRUCT":
        kind = "STRUCT<" + ", ".join(f"{f.name} {_bigquery_type(f)}" for f in field.fields) + ">"
    return f"ARRAY<{kind}>" if field.mode == "REPEATED" else kind


class BigQueryWarehouse:
    """Google BigQuery, reached with Application Default Credentials (or anonymously for tests).

    Args:
        project: the billing project (the URI's ``bigquery://PROJECT``).
        location: job location (``EU``, ``US``, ``europe-west4``...).
        api_endpoint: REST endpoint override; ``http://...`` means a local test server, reached
            anonymously.
        maximum_bytes_billed: the query fails before running if the dry run estimates more.
        labels: job labels (cost attribution).
        destination_table: ``project.dataset.table`` (or ``dataset.table``) that keeps the result;
            otherwise the job's anonymous table.
        read_api_endpoint: Storage Read API (gRPC) endpoint override, ``host:port``; with an
            ``http://`` api_endpoint and no read endpoint, the REST API is used to read.
    """

    def __init__(
        self,
        project: str,
        location: str | None = None,
        api_endpoint: str | None = None,
        maximum_bytes_billed: int | None = None,
        labels: dict[str, str] | None = None,
        destination_table: str | None = None,
        read_api_endpoint: str | None = None,
    ) -> None:
        if not project:
            raise DataError("bigquery warehouse: no project given (bigquery://PROJECT)")
        self.project = project
        self.location = location
        self.api_endpoint = api_endpoint
        self.maximum_bytes_billed = maximum_bytes_billed
        self.labels = dict(labels or {})
        self.destination_table = destination_table
        self.read_api_endpoint = read_api_endpoint
        self._client_cache: Any = None

    # -- clients ---------------------------------------------------------------------------------

    @property
    def _insecure(self) -> bool:
        return bool(self.api_endpoint and self.api_endpoint.startswith("http://"))

    def _credentials(self) -> Any:
        if self._insecure:
            from google.auth.credentials import AnonymousCredentials

            return AnonymousCredentials()
        return None  # Application Default Credentials

    def _client(self) -> Any:
        if self._client_cache is None:
            from google.cloud import bigquery

            options = {"api_endpoint": self.api_endpoint} if self.api_endpoint else None
            self._client_cache = bigquery.Client(
                project=self.project,
                credentials=self._credentials(),
                location=self.location,
                client_options=options,
            )
        return self._client_cache

    def _read_client(self) -> Any:
        """Returns a Storage Read API client, or raises why it cannot be used.

        This is the one place the read client is made: a test server's gRPC endpoint is reached
        through an insecure channel, Google's through the default secure transport.
        """
        from google.cloud import bigquery_storage_v1

        endpoint = self.read_api_endpoint
        if self._insecure or (endpoint or "").startswith("http://"):
            if not endpoint:
                raise RuntimeError(
                    f"no Storage Read API server for the test endpoint {self.api_endpoint}"
                )
            import grpc
            from google.cloud.bigquery_storage_v1.services.big_query_read.transports import (
                BigQueryReadGrpcTransport,
            )

            target = endpoint.removeprefix("http://")
            channel = grpc.insecure_channel(
                target, options=[("grpc.max_receive_message_length", -1)]
            )
            transport = BigQueryReadGrpcTransport(
                host=target, channel=channel, credentials=self._credentials()
            )
            return bigquery_storage_v1.BigQueryReadClient(transport=transport)
        options = {"api_endpoint": endpoint} if endpoint else None
        return bigquery_storage_v1.BigQueryReadClient(client_options=options)

    # -- queries ---------------------------------------------------------------------------------

    def _parameters(self, sql: str, parameters: dict[str, dict[str, Any]]) -> list[Any]:
        try:
            used = sqlmod.query_parameters_used(sql)
        except DataError:
            # sqlglot cannot parse it: BigQuery is the judge of its syntax (the dry run reports the
            # error with its position), so find the parameters lexically.
            used = _parameters_lexically(sql)
        missing = sorted(used - set(parameters))
        if missing:
            names = ", ".join(f"@{m}" for m in missing)
            raise DataError(f"query parameter {names} has no value: add it under query_parameters")
        return [
            query_parameter(name, p["type"], p["value"])
            for name, p in sorted(parameters.items())
            if name in used
        ]

    def _job_config(self, query_parameters: list[Any], *, dry_run: bool) -> Any:
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(
            query_parameters=query_parameters,
            use_legacy_sql=False,
            dry_run=dry_run,
        )
        if self.labels:
            config.labels = self.labels
        if self.maximum_bytes_billed is not None:
            config.maximum_bytes_billed = int(self.maximum_bytes_billed)
        if not dry_run and self.destination_table:
            config.destination = self._table_id(self.destination_table)
            config.write_disposition = bigquery.WriteDisposition.WRITE_TRUNCATE
        return config

    def _table_id(self, name: str) -> str:
        parts = name.replace(":", ".").split(".")
        if len(parts) == 2:
            parts = [self.project, *parts]
        if len(parts) != 3 or not all(parts):
            raise DataError(
                f"bigquery.destination_table {name!r}: use project.dataset.table or dataset.table"
            )
        return ".".join(parts)

    def _dry_run(
        self,
        sql: str,
        query_parameters: list[Any],
        parameters: dict[str, Any],
        line_offset: int = 0,
    ) -> Any:
        from google.api_core import exceptions

        client = self._client()
        try:
            job = client.query(
                sql,
                job_config=self._job_config(query_parameters, dry_run=True),
                location=self.location,
            )
        except exceptions.GoogleAPICallError as exc:
            raise _translate_error(exc, sql, parameters, line_offset) from None
        processed = int(job.total_bytes_processed or 0)
        billed = billed_bytes(processed)
        print(f"voltpipe: query will process {processed} bytes (billed {billed})", flush=True)
        if self.maximum_bytes_billed is not None and billed > self.maximum_bytes_billed:
            raise DataError(
                f"the query would process {processed} bytes and be billed {billed} (BigQuery "
                f"bills at least {MIN_BILLED_BYTES} bytes, 10 MB, a query), more than "
                f"bigquery.maximum_bytes_billed = {self.maximum_bytes_billed}; "
                + (
                    "narrow the query or raise the cap"
                    if processed > self.maximum_bytes_billed
                    else f"raise the cap to at least {MIN_BILLED_BYTES}"
                )
            )
        return job

    def query_table(self, sql: str, parameters: dict[str, dict[str, Any]]) -> pa.Table:
        """Runs a query with a small result (a summary) and returns it as an Arrow table,
        through the REST API (a summary is too small for the Storage Read API to pay)."""
        from google.api_core import exceptions

        query_parameters = self._parameters(sql, parameters)
        self._dry_run(sql, query_parameters, parameters)  # the bytes cap applies here too
        config = self._job_config(query_parameters, dry_run=False)
        config.destination = None  # a summary never overwrites bigquery.destination_table
        try:
            job = self._client().query(
                sql,
                job_config=config,
                location=self.location,
                job_id_prefix="voltpipe_summary_",
            )
            return job.result().to_arrow(create_bqstorage_client=False)
        except exceptions.GoogleAPICallError as exc:
            raise _translate_error(exc, sql, parameters) from None

    def result_schema(
        self, sql: str, parameters: dict[str, dict[str, Any]]
    ) -> list[dict[str, str]]:
        """Returns the query's columns from a dry run (nothing is scanned or billed)."""
        job = self._dry_run(sql, self._parameters(sql, parameters), parameters)
        return [{"name": f.name, "type": _bigquery_type(f)} for f in job.schema or []]

    def estimate(self, sql: str, parameters: dict[str, dict[str, Any]]) -> QueryEstimate:
        """The dry run's bytes processed (nothing is scanned or billed); rows estimated as those
        bytes over the width of a result row."""
        job = self._dry_run(sql, self._parameters(sql, parameters), parameters)
        schema = [{"name": f.name, "type": _bigquery_type(f)} for f in job.schema or []]
        processed = int(job.total_bytes_processed or 0)
        width = row_width(schema)
        return QueryEstimate(processed // width, processed, width, "bigquery: dry run")

    def extract(
        self,
        sql: str,
        parameters: dict[str, dict[str, Any]],
        split: SplitSpec,
        out_dirs: dict[str, Path],
    ) -> ExtractResult:
        from google.api_core import exceptions

        query_parameters = self._parameters(sql, parameters)
        executed = split_query(sql, split)
        dry = self._dry_run(executed, query_parameters, parameters, _BODY_LINE - 1)
        schema = [
            {"name": f.name, "type": _bigquery_type(f)}
            for f in (dry.schema or [])
            if f.name != SPLIT_COLUMN
        ]
        if split.column and split.column not in {c["name"] for c in schema}:
            raise DataError(
                f"split.column {split.column!r} is not a column of the query result "
                f"(columns: {', '.join(c['name'] for c in schema)})"
            )
        client = self._client()
        try:
            job = client.query(
                executed,
                job_config=self._job_config(query_parameters, dry_run=False),
                location=self.location,
                job_id_prefix="voltpipe_extract_",
            )
            rows = job.result()
        except exceptions.GoogleAPICallError as exc:
            raise _translate_error(exc, executed, parameters, _BODY_LINE - 1) from None
        if not rows.total_rows:
            shown = ", ".join(f"@{k}={v['value']!r}" for k, v in parameters.items()) or "none"
            raise DataError(f"the query returned no rows (parameters: {shown})")
        table = job.destination
        columns = [c["name"] for c in schema]
        with _ShardWriter(out_dirs) as writer:
            try:
                counts = self._read_storage_api(table, columns, writer, split.fractions)
            except _StorageUnavailable as exc:
                print(
                    f"voltpipe: BigQuery Storage Read API unavailable ({exc}); "
                    "falling back to the REST API",
                    flush=True,
                )
                writer.reset()
                try:
                    counts = self._read_rest(table, columns, writer)
                except exceptions.GoogleAPICallError as err:
                    raise _translate_error(err, executed, parameters) from None
            sizes = writer.commit()
        return ExtractResult(
            schema=schema,
            row_counts=counts,
            bytes_written=sizes,
            sql=sql,
            executed_sql=executed,
            parameters=parameters,
            source=f"bigquery://{self.project}",
            job_id=job.job_id,
        )

    # -- writing -----------------------------------------------------------------------------------

    def write_table(self, table: pa.Table, destination: str, *, mode: str = "append") -> int:
        """Loads `table` into ``[PROJECT.]DATASET.TABLE`` with one load job from parquet.

        ``append`` is WRITE_APPEND, ``replace`` WRITE_TRUNCATE; the table is created when missing
        (CREATE_IF_NEEDED). A load job is atomic: the rows all land or none do. The job carries
        the configured labels and location.

        Raises:
            ConfigError: a bad destination name or mode.
            DataError: BigQuery refused the load (missing dataset, permissions, schema mismatch).
        """
        ref = self._write_ref(destination, mode)
        job = self._load(table, ref, _DISPOSITION[mode], destination)
        return int(job.output_rows if job.output_rows is not None else table.num_rows)

    @contextlib.contextmanager
    def open_writer(self, destination: str, *, mode: str = "append") -> Iterator[ChunkedWrite]:
        """Writes chunks to ``[PROJECT.]DATASET.TABLE`` all or nothing (``Warehouse.open_writer``).

        One chunk is one load job (the write of a single chunk goes straight to the table, as
        ``write_table``); more are loaded into a staging table beside the destination
        (``_voltpipe_staging_<id>`` in its dataset), then one copy job moves them in
        (WRITE_APPEND or WRITE_TRUNCATE), so the destination sees all the rows or none. The
        staging table is deleted whatever happens.

        Raises:
            ConfigError: a bad destination name or mode.
            DataError: BigQuery refused a load or the copy.
        """
        ref = self._write_ref(destination, mode)
        writer = _BigQueryChunkWriter(self, destination, mode, ref)
        try:
            yield writer
            writer.commit()
        finally:
            writer.drop_staging()

    def query_into(self, sql: str, parameters: dict[str, dict[str, Any]], table: str) -> int:
        """Runs `sql` into ``PROJECT.DATASET.TABLE`` (WRITE_TRUNCATE), after the dry run and
        its bytes cap; returns the rows written (e.g. a batch prediction job's source table).

        Raises:
            DataError: the query cannot run or is over ``maximum_bytes_billed``.
        """
        from google.api_core import exceptions
        from google.cloud import bigquery

        query_parameters = self._parameters(sql, parameters)
        self._dry_run(sql, query_parameters, parameters)
        config = self._job_config(query_parameters, dry_run=False)
        config.destination = table
        config.write_disposition = bigquery.WriteDisposition.WRITE_TRUNCATE
        try:
            job = self._client().query(
                sql, job_config=config, location=self.location, job_id_prefix="voltpipe_source_"
            )
            rows = job.result()
        except exceptions.GoogleAPICallError as exc:
            raise _translate_error(exc, sql, parameters) from None
        return int(rows.total_rows or 0)

    def copy_table(self, source: str, destination: str, *, mode: str = "append") -> None:
        """Copies ``PROJECT.DATASET.TABLE`` `source` into `destination` (``DATASET.TABLE`` or
        ``PROJECT.DATASET.TABLE``) with one copy job: ``append`` or ``replace``, atomically.

        Raises:
            ConfigError: a bad destination name or mode.
            DataError: BigQuery refused the copy (schema mismatch, permissions).
        """
        self._copy(source, self._write_ref(destination, mode), _DISPOSITION[mode], destination)

    def drop_table(self, table: str) -> None:
        """Deletes ``PROJECT.DATASET.TABLE`` if it exists (best effort: never raises)."""
        with contextlib.suppress(Exception):
            self._client().delete_table(table, not_found_ok=True)

    def _write_ref(self, destination: str, mode: str) -> str:
        from voltpipe.data.warehouse_types import WRITE_MODES, table_parts
        from voltpipe.errors import ConfigError

        if mode not in WRITE_MODES:
            raise ConfigError(f"write mode {mode!r}: expected one of {', '.join(WRITE_MODES)}")
        parts = table_parts(destination)
        return ".".join(parts if len(parts) == 3 else [self.project, *parts])

    def _load(self, table: pa.Table, ref: str, disposition: str, destination: str) -> Any:
        """One parquet load job of `table` into `ref` (CREATE_IF_NEEDED), waited for."""
        import io

        from google.api_core import exceptions
        from google.cloud import bigquery

        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        buffer.seek(0)
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET,
            write_disposition=disposition,
            create_disposition=bigquery.CreateDisposition.CREATE_IF_NEEDED,
        )
        if self.labels:  # the client refuses labels=None
            config.labels = self.labels
        try:
            job = self._client().load_table_from_file(
                buffer,
                ref,
                job_config=config,
                location=self.location,
                job_id_prefix="voltpipe_write_",
                size=buffer.getbuffer().nbytes,  # multipart up to 5 MB, resumable above
                rewind=True,
            )
            job.result()
        except exceptions.GoogleAPICallError as exc:
            raise DataError(f"cannot write to {destination}: {_job_message(exc)}") from None
        return job

    def _copy(self, source: str, ref: str, disposition: str, destination: str) -> Any:
        from google.api_core import exceptions
        from google.cloud import bigquery

        config = bigquery.CopyJobConfig(
            write_disposition=disposition,
            create_disposition=bigquery.CreateDisposition.CREATE_IF_NEEDED,
        )
        if self.labels:
            config.labels = self.labels
        try:
            job = self._client().copy_table(
                source,
                ref,
                job_config=config,
                location=self.location,
                job_id_prefix="voltpipe_write_",
            )
            job.result()
        except exceptions.GoogleAPICallError as exc:
            raise DataError(f"cannot write to {destination}: {_job_message(exc)}") from None
        return job

    # -- reading -----------------------------------------------------------------------------------

    def _read_storage_api(
        self,
        table: Any,
        columns: list[str],
        writer: _ShardWriter,
        fractions: tuple[float, float, float] = (1.0, 1.0, 1.0),
    ) -> dict[str, int]:
        """One read session per split (row_restriction on the split column), streams in threads.

        Each split asks for streams by its size (``read_stream_count``: the result table's bytes
        times the split's fraction), so a big table is read, and written, in many shards.
        """
        try:
            from google.api_core import exceptions
            from google.cloud.bigquery_storage_v1 import types

            client = self._read_client()
        except Exception as exc:  # ImportError, missing credentials, no test server
            raise _StorageUnavailable(f"{type(exc).__name__}: {exc}") from None
        table_path = f"projects/{table.project}/datasets/{table.dataset_id}/tables/{table.table_id}"
        try:
            table_bytes = int(self._client().get_table(table).num_bytes or 0)
        except exceptions.GoogleAPICallError:
            table_bytes = 0  # the fewest streams: slower, never wrong
        sessions = {}
        try:
            for code, name in enumerate(SPLITS):
                requested = types.ReadSession(
                    table=table_path,
                    data_format=types.DataFormat.ARROW,
                    read_options=types.ReadSession.TableReadOptions(
                        selected_fields=columns,
                        row_restriction=f"{SPLIT_COLUMN} = {code}",
                    ),
                )
                sessions[name] = client.create_read_session(
                    parent=f"projects/{self.project}",
                    read_session=requested,
                    max_stream_count=read_stream_count(table_bytes, fractions[code]),
                )
        except (
            exceptions.PermissionDenied,
            exceptions.Unauthenticated,
            exceptions.MethodNotImplemented,
            exceptions.ServiceUnavailable,
            exceptions.Forbidden,
        ) as exc:
            raise _StorageUnavailable(f"{type(exc).__name__}: {exc.message}") from None
        jobs = []
        for name, session in sessions.items():
            schema = pa.ipc.read_schema(pa.py_buffer(session.arrow_schema.serialized_schema))
            writer.set_schema(name, schema)
            for stream in session.streams:
                jobs.append((name, stream.name, schema))
        counts = dict.fromkeys(SPLITS, 0)
        workers = max(1, min(len(jobs), 2 * (os.cpu_count() or 4)))
        with concurrent.futures.ThreadPoolExecutor(
            workers, thread_name_prefix="voltpipe-read"
        ) as pool:
            futures = {
                pool.submit(_read_stream, client, stream, schema, writer.shard(name)): name
                for name, stream, schema in jobs
            }
            for future in concurrent.futures.as_completed(futures):
                counts[futures[future]] += future.result()
        return counts

    def _read_rest(self, table: Any, columns: list[str], writer: _ShardWriter) -> dict[str, int]:
        """tabledata.list pages as Arrow, each batch cut by the split column into its shard."""
        client = self._client()
        full = client.get_table(table)
        rows = client.list_rows(full, page_size=100_000)
        counts = dict.fromkeys(SPLITS, 0)
        shards = {}
        for batch in rows.to_arrow_iterable():
            codes = batch.column(SPLIT_COLUMN)
            data = batch.select(columns)
            for code, name in enumerate(SPLITS):
                part = data.filter(pc.equal(codes, code))
                if part.num_rows:
                    if name not in shards:
                        writer.set_schema(name, part.schema)
                        shards[name] = writer.shard(name)
                    shards[name].write_batch(part)
                    counts[name] += part.num_rows
        return counts


def _read_stream(client: Any, stream: str, schema: pa.Schema, shard: _Shard) -> int:
    """Writes one read stream's Arrow record batches to its parquet shard; returns its row count."""
    rows = 0
    for response in client.read_rows(stream):
        payload = response.arrow_record_batch.serialized_record_batch
        if not payload:
            continue
        batch = pa.ipc.read_record_batch(pa.py_buffer(payload), schema)
        shard.write_batch(batch)
        rows += batch.num_rows
    return rows


def _job_message(exc: Any) -> str:
    message = (getattr(exc, "message", None) or str(exc)).split("\n")[0]
    return message.split("; message: ")[0]  # the client repeats the job's errors


class _BigQueryChunkWriter(ChunkedWrite):
    """Load jobs per chunk into a staging table, then one copy job into the destination."""

    def __init__(self, wh: BigQueryWarehouse, destination: str, mode: str, ref: str) -> None:
        super().__init__(destination=destination, mode=mode)
        self._wh, self._ref = wh, ref
        self._pending: pa.Table | None = None  # the first chunk: one chunk needs no staging
        project, dataset, _ = ref.split(".")
        self._staging = f"{project}.{dataset}._voltpipe_staging_{uuid.uuid4().hex[:16]}"
        self._staged = False
        self.load_jobs = 0

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self.chunks == 0:
            self._pending = table
        else:
            if self._pending is not None:
                self._stage(self._pending)
                self._pending = None
            self._stage(table)
        self.counted(table.num_rows)

    def _stage(self, table: pa.Table) -> None:
        self._wh._load(table, self._staging, "WRITE_APPEND", self.destination)
        self._staged = True
        self.load_jobs += 1

    def commit(self) -> None:
        if self._pending is not None:
            self._wh._load(self._pending, self._ref, _DISPOSITION[self.mode], self.destination)
            self._pending = None
            self.load_jobs += 1
        elif self._staged:
            self._wh._copy(self._staging, self._ref, _DISPOSITION[self.mode], self.destination)

    def drop_staging(self) -> None:
        self._pending = None
        if self._staged:
            with contextlib.suppress(Exception):  # best effort: never hide the real outcome
                self._wh._client().delete_table(self._staging, not_found_ok=True)


class _StorageUnavailable(Exception):
    """The Storage Read API cannot be used here; the REST API is used instead."""


class _Shard:
    """One ``part-NNNNN.parquet`` being written under a temporary name."""

    def __init__(self, tmp: Path, final: Path, schema: pa.Schema) -> None:
        self.tmp, self.final, self.schema = tmp, final, schema
        self._writer: pq.ParquetWriter | None = None
        self.rows = 0

    def write_batch(self, batch: pa.RecordBatch) -> None:
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.tmp, self.schema, **_PARQUET_OPTIONS)
        self._writer.write_batch(batch)
        self.rows += batch.num_rows

    def close(self) -> None:
        if self._writer is None:  # an empty stream still leaves a readable file with the schema
            self._writer = pq.ParquetWriter(self.tmp, self.schema, **_PARQUET_OPTIONS)
        self._writer.close()


class _ShardWriter:
    """Parquet shards per split, written under temporary names and renamed only on success.

    A failed extraction removes its temporary files, so no folder ever looks complete by mistake.
    """

    def __init__(self, out_dirs: dict[str, Path]) -> None:
        self.out_dirs = {k: Path(v) for k, v in out_dirs.items()}
        self.token = uuid.uuid4().hex[:8]
        self.schemas: dict[str, pa.Schema] = {}
        self.shards: dict[str, list[_Shard]] = {name: [] for name in SPLITS}

    def __enter__(self) -> _ShardWriter:
        for name in SPLITS:
            self.out_dirs[name].mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is not None:
            self.reset()

    def set_schema(self, split: str, schema: pa.Schema) -> None:
        self.schemas[split] = schema

    def shard(self, split: str) -> _Shard:
        index = len(self.shards[split])
        folder = self.out_dirs[split]
        final = folder / f"part-{index:05d}.parquet"
        tmp = folder / f".part-{index:05d}.{self.token}.tmp"
        shard = _Shard(tmp, final, self.schemas[split])
        self.shards[split].append(shard)
        return shard

    def reset(self) -> None:
        for shards in self.shards.values():
            for shard in shards:
                if shard._writer is not None:
                    with contextlib.suppress(Exception):  # best effort on the failure path
                        shard._writer.close()
                shard.tmp.unlink(missing_ok=True)
        self.shards = {name: [] for name in SPLITS}

    def commit(self) -> dict[str, int]:
        """Closes every shard and renames it into place; returns bytes written per split."""
        any_schema = next(iter(self.schemas.values()), None)
        for name in SPLITS:
            if not self.shards[name]:  # a split with no rows still gets one (empty) shard
                self.schemas.setdefault(name, any_schema or pa.schema([]))
                self.shard(name)
        for shards in self.shards.values():
            for shard in shards:
                shard.close()
        sizes = {}
        for name, shards in self.shards.items():
            for old in self.out_dirs[name].glob("part-*.parquet"):
                old.unlink()  # a previous run's shards would mix with this run's
            sizes[name] = 0
            for shard in shards:
                os.replace(shard.tmp, shard.final)
                sizes[name] += shard.final.stat().st_size
        return sizes


_POSITION = re.compile(r"at \[(\d+):(\d+)\]")


def _parameter_at(sql: str, message: str, parameters: dict[str, Any]) -> str | None:
    """Names the parameter an error is about: by name in the message, else by its position."""
    for name in parameters:
        if re.search(rf"(?<![\w@]){re.escape(name)}(?!\w)|@{re.escape(name)}\b", message):
            return name
    m = _POSITION.search(message)
    if not m:
        return None
    line_no, col = int(m.group(1)), int(m.group(2))
    lines = sql.split("\n")
    if not 1 <= line_no <= len(lines):
        return None
    hits = [
        (p.start(), p.group(1))
        for p in re.finditer(r"@(\w+)", lines[line_no - 1])
        if p.group(1) in parameters
    ]
    after = [name for start, name in hits if start + 1 >= col]
    if after:
        return after[0]
    return hits[-1][1] if hits else None


def _parameters_lexically(sql: str) -> set[str]:
    """``@name`` references outside string literals, quoted names and comments."""
    code = re.sub(
        r"--[^\n]*|#[^\n]*|/\*.*?\*/|'(?:\\.|[^'\\])*'|\"(?:\\.|[^\"\\])*\"|`[^`]*`",
        " ",
        sql,
        flags=re.DOTALL,
    )
    return set(re.findall(r"(?<![@\w])@(\w+)", code))


def _translate_error(
    exc: Any, sql: str, parameters: dict[str, Any], line_offset: int = 0
) -> DataError:
    """One clear DataError for a BigQuery API error (the culprit named, no traceback).

    ``line_offset`` maps positions in the executed (wrapped) SQL back to the user's query.
    """
    message = (getattr(exc, "message", None) or str(exc)).split("\n")[0]
    message = re.sub(r"\s*Location: .*$", "", message).strip()  # the client's job footer
    message = re.sub(r"^(GET|POST|PUT|PATCH|DELETE) \S+: ", "", message)  # the client's URL prefix
    culprit_position = _parameter_at(sql, message, parameters)
    if line_offset:
        message = _POSITION.sub(
            lambda m: f"at [{max(1, int(m.group(1)) - line_offset)}:{m.group(2)}]", message
        )
    reasons = {e.get("reason") for e in (getattr(exc, "errors", None) or []) if isinstance(e, dict)}
    m = re.search(r"Not found: Table ([\w\-.:]+)", message)
    if m:
        return DataError(f"table {m.group(1).replace(':', '.')} does not exist: {message}")
    m = re.search(r"Not found: Dataset ([\w\-.:]+)", message)
    if m:
        return DataError(f"dataset {m.group(1).replace(':', '.')} does not exist: {message}")
    if "Syntax error" in message:
        return DataError(f"SQL syntax error: {message}")
    if "resourcesExceeded" in reasons or message.startswith("Resources exceeded"):
        return DataError(
            "BigQuery ran out of resources for the query (its size, not its SQL, is the "
            "problem: a global ORDER BY or an OVER (ORDER BY ...) without PARTITION BY runs in "
            f"one worker); narrow the query or partition the analytic function: {message}"
        )
    if (
        "bytes billed" in message.lower()
        or "billingTierLimitExceeded" in reasons
        or "bytesBilledLimitExceeded" in reasons
    ):
        return DataError(f"the query exceeds bigquery.maximum_bytes_billed: {message}")
    m = re.search(r"Unrecognized name: (\w+)", message)
    if m and m.group(1) not in parameters:
        return DataError(f"column {m.group(1)} does not exist: {message}")
    culprit = culprit_position
    if culprit is not None and (
        "parameter" in message.lower()
        or "signature" in message.lower()
        or "invalid" in message.lower()
        or "type" in message.lower()
    ):
        declared = parameters.get(culprit, {}).get("type", "?")
        return DataError(
            f"query parameter @{culprit} (declared {declared}) does not fit the query: {message}"
        )
    if "notFound" in reasons or type(exc).__name__ == "NotFound":
        return DataError(f"not found: {message}")
    return DataError(f"BigQuery rejected the query: {message}")
