"""A local BigQuery v2 REST (and Storage Read gRPC) test server backed by DuckDB, for the real clients.

Usage::

    with BigQueryTestServer("warehouse.duckdb", project="p") as srv:
        client = bigquery.Client(project="p", credentials=AnonymousCredentials(),
                                 client_options={"api_endpoint": srv.endpoint})
        ...
        assert srv.requests[0]["body"]["configuration"]["dryRun"]

What it speaks: jobs.insert (query jobs: dryRun, maximumBytesBilled, labels, location, typed
queryParameters, destinationTable, writeDisposition), jobs.get, jobs.getQueryResults,
tabledata.list (pageToken paging), tables.get, tables.delete, datasets.get; copy jobs (one
source table, write/create dispositions); load jobs from PARQUET through the
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

It runs on the shared test HTTP server (``voltpipe.testing._http.RecordingServer``) like the
Vertex AI and KFP test servers. Every request is recorded in ``srv.requests`` as a
``RecordedRequest`` that also reads as ``{"method", "path", "query", "body"}`` (query as
``{key: [values]}``; gRPC calls have method ``"GRPC"`` and the RPC's full name as path), and
``srv.find(method, path_regex)`` selects them.
"""

from __future__ import annotations

import email.parser
import email.policy
import io
import json
import re
import time
import uuid
from pathlib import Path
from typing import Any, Self

import duckdb
import pyarrow as pa

from voltpipe.testing._http import HttpError, RecordedRequest, RecordingServer, Response
from voltpipe.testing.bigquery_engine import (
    _ANON_DATASET,
    MIN_BILLED_BYTES,
    PAGE_ROWS,
    BigQueryError,
    Engine,
    check_labels,
    rows_json,
    schema_json,
)


class BigQueryTestServer(RecordingServer):
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

    path_prefix = "/bigquery/v2"

    def __init__(
        self,
        database: str | Path | duckdb.DuckDBPyConnection,
        project: str = "p",
        location: str = "US",
        storage_api: bool = True,
        max_global_sort_rows: int | None = 10_000_000,
    ) -> None:
        super().__init__()
        self.engine = Engine(database, project, location, max_global_sort_rows)
        self.project, self.location = project, location
        self.jobs: dict[str, dict[str, Any]] = {}
        self.uploads: dict[str, dict[str, Any]] = {}
        self._storage_api = storage_api
        self.storage: Any = None
        dataset = r"/projects/([^/]+)/datasets/([^/]+)"
        self.route("POST", r"/projects/([^/]+)/jobs", self._route_insert_job)
        self.route("GET", r"/projects/([^/]+)/jobs/([^/]+)", self._route_job)
        self.route("GET", r"/projects/([^/]+)/queries/([^/]+)", self._route_query_results)
        self.route("GET", dataset, self._route_dataset)
        self.route("GET", dataset + r"/tables/([^/]+)", self._route_table)
        self.route("DELETE", dataset + r"/tables/([^/]+)", self._route_delete_table)
        self.route("GET", dataset + r"/tables/([^/]+)/data", self._route_table_data)
        for method in ("POST", "PUT"):
            self.route(method, r"/upload/bigquery/v2/projects/([^/]+)/jobs", self._route_upload)

    # -- lifecycle --

    @property
    def read_api_endpoint(self) -> str | None:
        return self.storage.endpoint if self.storage else None

    def start(self) -> Self:
        super().start()
        if self._storage_api:
            from voltpipe.testing.bigquery_storage_server import BigQueryReadTestServer

            self.storage = BigQueryReadTestServer(self.engine, self.record).start()
        return self

    def stop(self) -> None:
        if self.storage is not None:
            self.storage.stop()
            self.storage = None
        super().stop()
        self.engine.close()

    # -- errors in BigQuery's form --

    def no_route(self, req: RecordedRequest, path_known: bool) -> HttpError:
        return BigQueryError(404, "notFound", f"Not found: {req.method} {req.path}")

    def server_error(self, exc: Exception) -> HttpError:
        return BigQueryError(500, "internalError", f"{type(exc).__name__}: {exc}")

    # -- helpers for tests --

    def record(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> None:
        """Records a call that did not come over HTTP (the Storage Read API's gRPC calls)."""
        self.requests.append(RecordedRequest(method, path, query, {}, b"", body))

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

    def grpc_requests(self, rpc: str | None = None) -> list[RecordedRequest]:
        """The recorded Storage Read API calls (all, or those of RPC `rpc`), in order."""
        return [
            r
            for r in self.requests
            if r["method"] == "GRPC" and (rpc is None or r["path"].endswith("/" + rpc))
        ]

    # -- REST methods --

    def insert_job(self, project: str, body: dict[str, Any]) -> dict[str, Any]:
        config = body.get("configuration", {})
        if "copy" in config:
            return self.insert_copy_job(project, body)
        query = config.get("query")
        if query is None:
            raise BigQueryError(
                400, "invalid", "Only query, load and copy jobs are supported by this test server"
            )
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
            self._write_destination(load, dest, table, project, default="WRITE_APPEND")
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

    def _write_destination(
        self,
        config: dict[str, Any],
        dest: dict[str, Any],
        data: pa.Table,
        project: str,
        *,
        default: str,
    ) -> None:
        """A load or copy job's write into its destination table, as BigQuery does it:
        ``createDisposition: CREATE_NEVER`` refuses a missing table (404), the write
        disposition (`default` when unset: loads append, copies refuse a non-empty table)
        applies, and rows that do not fit the table's schema are a 400."""
        dataset, table_id = dest["datasetId"], dest["tableId"]
        try:
            self.engine.resolve(dest.get("projectId", project), dataset, table_id)
            exists = True
        except BigQueryError:
            exists = False
        if not exists and config.get("createDisposition") == "CREATE_NEVER":
            raise BigQueryError(404, "notFound", f"Not found: Table {project}:{dataset}.{table_id}")
        disposition = config.get("writeDisposition") or default
        try:
            self.engine.write_table(dataset, table_id, data, disposition, project)
        except duckdb.Error as exc:
            raise BigQueryError(
                400,
                "invalid",
                f"Provided Schema does not match Table {project}:{dataset}.{table_id}. "
                + str(exc).splitlines()[0],
            ) from None

    def insert_copy_job(self, project: str, body: dict[str, Any]) -> dict[str, Any]:
        """A copy job (one source table): writeDisposition (default WRITE_EMPTY) and
        createDisposition as BigQuery applies them; the destination changes in one statement."""
        config = body["configuration"]
        copy = config["copy"]
        check_labels(config.get("labels"))
        ref = dict(body.get("jobReference") or {})
        job_id = ref.get("jobId") or f"job_{uuid.uuid4().hex}"
        ref.update(projectId=project, jobId=job_id, location=ref.get("location") or self.location)
        if job_id in self.jobs:
            raise BigQueryError(409, "duplicate", f"Already Exists: Job {project}:{job_id}")
        now = str(int(time.time() * 1000))
        job: dict[str, Any] = {
            "kind": "bigquery#job",
            "id": f"{project}:{ref['location']}.{job_id}",
            "jobReference": ref,
            "configuration": {**config, "jobType": "COPY"},
            "status": {"state": "DONE"},
            "statistics": {"creationTime": now, "startTime": now, "endTime": now},
            "user_email": "anonymous@voltpipe.test",
        }
        self.jobs[job_id] = job
        try:
            sources = copy.get("sourceTables") or [copy.get("sourceTable")]
            if len(sources) != 1 or not sources[0]:
                raise BigQueryError(400, "invalid", "This test server copies one source table")
            src, dest = sources[0], copy.get("destinationTable") or {}
            data = self.engine.read_table(
                src.get("projectId", project), src["datasetId"], src["tableId"]
            )
            dataset, table_id = dest.get("datasetId"), dest.get("tableId")
            if not dataset or not table_id:
                raise BigQueryError(400, "invalid", "Copy configuration must specify destination")
            self._write_destination(copy, dest, data, project, default="WRITE_EMPTY")
        except BigQueryError as exc:
            job["status"] = {
                "state": "DONE",
                "errorResult": exc.body()["error"]["errors"][0],
                "errors": exc.body()["error"]["errors"],
            }
            return job
        job["statistics"]["copy"] = {"copiedRows": str(data.num_rows)}
        return job

    def delete_table(self, project: str, dataset: str, table: str) -> None:
        """tables.delete: 404 notFound when the table does not exist."""
        name = self.engine.resolve(project, dataset, table)
        with self.engine.cursor() as cur:
            cur.execute(f"DROP TABLE {name}")

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

    # -- routes --

    def _route_insert_job(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        return _public(self.insert_job(m.group(1), req.json or {}))

    def _route_job(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        return _public(self.job(m.group(2)))

    def _route_query_results(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        return _public(self.query_results(m.group(1), m.group(2), req.query))

    def _route_dataset(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        return _public(self.dataset(*m.groups()))

    def _route_table(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        return _public(self.table(*m.groups()))

    def _route_delete_table(self, req: RecordedRequest, m: re.Match[str]) -> Response:
        self.delete_table(*m.groups())
        return Response(b"", status=204)

    def _route_table_data(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        project, dataset, table = m.groups()
        return _public(self.table_data(project, dataset, table, req.query))

    def _route_upload(self, req: RecordedRequest, m: re.Match[str]) -> Response:
        """The media upload endpoint of jobs.insert: multipart, or resumable (start + PUTs).

        The request is recorded with ``body`` ``{"job": resource, "bytes": n}`` (multipart),
        ``{"job": resource}`` (resumable start) or ``{"upload_id", "bytes"}`` (a resumable PUT).
        """
        project = m.group(1)
        kind = req.param("uploadType") or ""
        if req.method == "POST" and kind == "multipart":
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + req.headers["content-type"].encode() + b"\r\n\r\n" + req.body
            )
            parts = list(message.iter_parts())
            resource = json.loads(bytes(parts[0].get_payload(decode=True)))
            data = bytes(parts[1].get_payload(decode=True) or b"")
            req.json = {"job": resource, "bytes": len(data)}
            return Response(_public(self.insert_load_job(project, resource, data)))
        if req.method == "POST" and kind == "resumable":
            resource = json.loads(req.body) if req.body else {}
            upload_id = uuid.uuid4().hex
            self.uploads[upload_id] = {"job": resource, "data": bytearray()}
            req.json = {"job": resource}
            location = f"{self.endpoint}{req.path}?uploadType=resumable&upload_id={upload_id}"
            return Response({}, headers={"Location": location})
        if req.method == "PUT" and kind == "resumable":
            upload_id = req.param("upload_id") or ""
            upload = self.uploads.get(upload_id)
            if upload is None:
                raise BigQueryError(404, "notFound", f"Not found: upload {upload_id}")
            upload["data"] += req.body
            req.json = {"upload_id": upload_id, "bytes": len(req.body)}
            total = (req.headers.get("content-range") or "").rpartition("/")[2]
            received = len(upload["data"])
            if total.isdigit() and int(total) == received:
                del self.uploads[upload_id]
                job = self.insert_load_job(project, upload["job"], bytes(upload["data"]))
                return Response(_public(job))
            return Response({}, 308, {"Range": f"bytes=0-{received - 1}"} if received else {})
        raise BigQueryError(400, "invalid", f"Unsupported upload: {req.method} uploadType={kind}")


def _public(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource without the server's private ``_`` keys."""
    return {k: v for k, v in resource.items() if not k.startswith("_")}
