"""The BigQuery Storage Read API (``BigQueryRead`` over gRPC) served in-process from DuckDB, for tests.

Started by ``BigQueryTestServer`` (``storage_api=True``); the real ``BigQueryReadClient`` reaches it
through an insecure channel at ``srv.read_api_endpoint`` (``127.0.0.1:PORT``). CreateReadSession
evaluates ``selected_fields`` and ``row_restriction`` (BigQuery SQL, transpiled) against the table,
cuts the rows into up to ``max_stream_count`` streams, and answers the session's Arrow schema;
ReadRows streams each stream's rows as Arrow IPC record batches (honouring ``offset``).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import pyarrow as pa

from voltpipe.testing.bigquery_engine import BigQueryError, Engine

SERVICE = "google.cloud.bigquery.storage.v1.BigQueryRead"
BATCH_ROWS = 4096


def _status(exc: BigQueryError) -> grpc.StatusCode:
    return {404: grpc.StatusCode.NOT_FOUND, 403: grpc.StatusCode.PERMISSION_DENIED}.get(
        exc.code, grpc.StatusCode.INVALID_ARGUMENT
    )


class BigQueryReadTestServer:
    """BigQueryRead on 127.0.0.1 (ephemeral port), reading tables through an ``Engine``.

    Args:
        engine: the DuckDB side shared with the REST server.
        record: called as ``record("GRPC", "/Service/Method", {}, request_as_json)``.
        min_rows_per_stream: a session gets at most ``rows / min_rows_per_stream`` streams
            (BigQuery, too, returns fewer streams than asked for small tables).
    """

    def __init__(
        self,
        engine: Engine,
        record: Callable[[str, str, dict[str, Any], Any], None],
        min_rows_per_stream: int = 1,
    ) -> None:
        self.engine, self.record = engine, record
        self.min_rows_per_stream = max(1, min_rows_per_stream)
        self.streams: dict[str, tuple[pa.Table, pa.Schema]] = {}
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> BigQueryReadTestServer:
        from google.cloud.bigquery_storage_v1 import types

        handlers = {
            "CreateReadSession": grpc.unary_unary_rpc_method_handler(
                self.create_read_session,
                request_deserializer=types.CreateReadSessionRequest.deserialize,
                response_serializer=types.ReadSession.serialize,
            ),
            "ReadRows": grpc.unary_stream_rpc_method_handler(
                self.read_rows,
                request_deserializer=types.ReadRowsRequest.deserialize,
                response_serializer=types.ReadRowsResponse.serialize,
            ),
            "SplitReadStream": grpc.unary_unary_rpc_method_handler(
                self.split_read_stream,
                request_deserializer=types.SplitReadStreamRequest.deserialize,
                response_serializer=types.SplitReadStreamResponse.serialize,
            ),
        }
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="bq-read")
        )
        self._server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler(SERVICE, handlers)]
        )
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait(5)
            self._server = None
        with self._lock:
            self.streams.clear()  # the Arrow data DuckDB handed out; freed before DuckDB closes

    def _record(self, method: str, request: Any) -> None:
        self.record("GRPC", f"/{SERVICE}/{method}", {}, json.loads(type(request).to_json(request)))

    def create_read_session(self, request: Any, context: grpc.ServicerContext) -> Any:
        from google.cloud.bigquery_storage_v1 import types

        self._record("CreateReadSession", request)
        wanted = request.read_session
        parts = wanted.table.split("/")
        if (
            len(parts) != 6
            or parts[0] != "projects"
            or parts[2] != "datasets"
            or parts[4] != "tables"
        ):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid table name: {wanted.table}")
        if wanted.data_format != types.DataFormat.ARROW:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "This test server only serves ARROW")
        options = wanted.read_options
        try:
            data = self.engine.read_table(
                parts[1],
                parts[3],
                parts[5],
                list(options.selected_fields) or None,
                options.row_restriction or None,
            )
        except BigQueryError as exc:
            context.abort(_status(exc), exc.message)
        session_id = uuid.uuid4().hex
        name = f"projects/{parts[1]}/locations/{self.engine.location.lower()}/sessions/{session_id}"
        count = min(request.max_stream_count or 1, data.num_rows // self.min_rows_per_stream)
        streams = []
        if data.num_rows and count:
            size = -(-data.num_rows // count)
            with self._lock:
                for i in range(count):
                    stream = f"{name}/streams/{i}"
                    self.streams[stream] = (data.slice(i * size, size), data.schema)
                    streams.append(types.ReadStream(name=stream))
        return types.ReadSession(
            name=name,
            table=wanted.table,
            data_format=types.DataFormat.ARROW,
            read_options=options,
            arrow_schema=types.ArrowSchema(serialized_schema=data.schema.serialize().to_pybytes()),
            streams=streams,
            estimated_row_count=data.num_rows,
        )

    def read_rows(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        from google.cloud.bigquery_storage_v1 import types

        self._record("ReadRows", request)
        with self._lock:
            found = self.streams.get(request.read_stream)
        if found is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Not found: stream {request.read_stream}")
            return  # abort raises; the type checker does not know
        data, _ = found
        for batch in data.slice(request.offset).to_batches(max_chunksize=BATCH_ROWS):
            if not batch.num_rows:
                continue
            yield types.ReadRowsResponse(
                arrow_record_batch=types.ArrowRecordBatch(
                    serialized_record_batch=batch.serialize().to_pybytes(), row_count=batch.num_rows
                ),
                row_count=batch.num_rows,
            )

    def split_read_stream(self, request: Any, context: grpc.ServicerContext) -> Any:
        from google.cloud.bigquery_storage_v1 import types

        self._record("SplitReadStream", request)
        return types.SplitReadStreamResponse()  # "cannot split": both halves empty, as allowed
