"""A tiny threaded HTTP server that records every request and dispatches to regex routes."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    json: Any = None

    def param(self, name: str) -> str | None:
        """The first value of query parameter `name`, if any."""
        values = self.query.get(name)
        return values[0] if values else None

    def __getitem__(self, key: str) -> Any:
        """``req["method"|"path"|"query"|"body"]``: the record as a mapping (``body`` is the
        parsed body, `json`), the form the BigQuery test server has always offered."""
        if key not in ("method", "path", "query", "body"):
            raise KeyError(key)
        return self.json if key == "body" else getattr(self, key)


@dataclass
class Response:
    """What a route handler returns: a JSON-able body (or raw bytes), a status and headers."""

    body: Any = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


class HttpError(Exception):
    """Raised by a handler to answer with a Google-style JSON error."""

    _STATUS: ClassVar[dict[int, str]] = {
        400: "INVALID_ARGUMENT",
        404: "NOT_FOUND",
        409: "ALREADY_EXISTS",
        412: "FAILED_PRECONDITION",
    }

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def payload(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.status,
                "message": self.message,
                "status": self._STATUS.get(self.status, "UNKNOWN"),
            }
        }


def _error(exc: HttpError) -> tuple[int, dict[str, str], bytes]:
    return exc.status, {"Content-Type": "application/json"}, json.dumps(exc.payload()).encode()


Handler = Callable[[RecordedRequest, "re.Match[str]"], Response | Any]


class RecordingServer:
    """Base class: bind 127.0.0.1 on a free port, serve routes in a thread, record requests.

    Subclasses register routes with `self.route(METHOD, regex, handler)`; a handler returns a
    `Response` or a JSON-able value (status 200). Use as a context manager::

        with MyServer() as srv:
            client = Client(host=srv.endpoint)
            ...
            assert srv.requests[0].method == "POST"
    """

    path_prefix: ClassVar[str] = ""
    """Stripped from request paths before they are recorded and routed (``/bigquery/v2``)."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._lock = threading.RLock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----- routing -----------------------------------------------------------------------

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        """Registers `handler` for `method` and a full-match `pattern` on the URL path."""
        self._routes.append((method.upper(), re.compile(pattern), handler))

    def find(self, method: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        """The recorded requests with this method and a path matching the regex `path`."""
        return [
            r
            for r in list(self.requests)
            if (method is None or r.method == method.upper())
            and (path is None or re.search(path, r.path))
        ]

    def _dispatch(self, req: RecordedRequest) -> tuple[int, dict[str, str], bytes]:
        allowed = False
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(req.path)
            if not match:
                continue
            allowed = True
            if method != req.method:
                continue
            try:
                with self._lock:
                    result = handler(req, match)
            except HttpError as exc:
                return _error(exc)
            except Exception as exc:  # a server bug: answer 500 so the client fails fast, not hangs
                return _error(self.server_error(exc))
            resp = result if isinstance(result, Response) else Response(result)
            if isinstance(resp.body, bytes | bytearray):
                headers = {"Content-Type": "application/octet-stream", **resp.headers}
                return resp.status, headers, bytes(resp.body)
            if isinstance(resp.body, str):
                headers = {"Content-Type": "text/plain", **resp.headers}
                return resp.status, headers, resp.body.encode()
            headers = {"Content-Type": "application/json", **resp.headers}
            return resp.status, headers, json.dumps({} if resp.body is None else resp.body).encode()
        return _error(self.no_route(req, allowed))

    def server_error(self, exc: Exception) -> HttpError:
        """The error answered when a handler raises something other than `HttpError`."""
        return HttpError(500, f"{type(exc).__name__}: {exc}")

    def no_route(self, req: RecordedRequest, path_known: bool) -> HttpError:
        """The error for a request no route takes (`path_known`: another method would)."""
        status = 405 if path_known else 404
        return HttpError(status, f"{req.method} {req.path}: no such route on {type(self).__name__}")

    # ----- lifecycle ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._httpd is not None, "the server is not started"
        return int(self._httpd.server_address[1])

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT`` of the running server."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the tests read `requests`, not stderr

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parsed: Any = None
                if body and "json" in (self.headers.get("Content-Type") or "application/json"):
                    try:
                        parsed = json.loads(body)
                    except ValueError:
                        parsed = None
                path = unquote(parts.path)
                if server.path_prefix and path.startswith(server.path_prefix):
                    path = path[len(server.path_prefix) :]
                req = RecordedRequest(
                    method=self.command,
                    path=path,
                    query=parse_qs(parts.query),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    json=parsed,
                )
                server.requests.append(req)
                status, headers, payload = server._dispatch(req)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name=type(self).__name__, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
