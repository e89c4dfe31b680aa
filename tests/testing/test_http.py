"""The shared test HTTP server: routes, records, the path prefix and the error hooks."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from typing import Any

import pytest

from voltpipe.testing._http import HttpError, RecordedRequest, RecordingServer


class _EchoServer(RecordingServer):
    path_prefix = "/api/v1"

    def __init__(self) -> None:
        super().__init__()
        self.route("POST", r"/things/([^/]+)", self._create)
        self.route("GET", r"/boom", self._boom)

    def _create(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        return {"name": m.group(1), "got": req.json}

    def _boom(self, req: RecordedRequest, m: re.Match[str]) -> Any:
        raise ZeroDivisionError("division by zero")


def _call(url: str, method: str = "GET", body: Any = None) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_prefix_is_stripped_and_the_record_reads_as_a_mapping():
    with _EchoServer() as srv:
        status, body = _call(f"{srv.endpoint}/api/v1/things/a%20b?x=1", "POST", {"k": 2})
        assert (status, body) == (200, {"name": "a b", "got": {"k": 2}})
        [req] = srv.find("POST", r"^/things/")
        assert req.path == "/things/a b"
        assert (req["method"], req["path"], req["query"], req["body"]) == (
            "POST",
            "/things/a b",
            {"x": ["1"]},
            {"k": 2},
        )
        with pytest.raises(KeyError):
            req["headers"]


def test_a_handler_bug_is_a_500_and_an_unknown_route_a_404_or_405():
    with _EchoServer() as srv:
        status, body = _call(f"{srv.endpoint}/api/v1/boom")
        assert status == 500
        assert body["error"]["message"] == "ZeroDivisionError: division by zero"
        assert _call(f"{srv.endpoint}/api/v1/nowhere")[0] == 404
        assert _call(f"{srv.endpoint}/api/v1/boom", "POST", {})[0] == 405


def test_no_route_and_server_error_are_hooks():
    class _Strict(_EchoServer):
        def no_route(self, req: RecordedRequest, path_known: bool) -> HttpError:
            return HttpError(400, f"refused {req.method} {req.path}")

    with _Strict() as srv:
        status, body = _call(f"{srv.endpoint}/api/v1/nowhere")
        assert (status, body["error"]["message"]) == (400, "refused GET /nowhere")
        assert body["error"]["status"] == "INVALID_ARGUMENT"
