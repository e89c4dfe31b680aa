"""Tests of drift alerts (voltpipe.monitoring.alerts) against a webhook on 127.0.0.1."""

from __future__ import annotations

import http.server
import json
import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from voltpipe.monitoring.alerts import notify, slack_payload, structured_log_line

SUMMARY = {
    "drift_detected": True,
    "drifted_features": ["wind_speed_ms", "wind_direction_deg"],
    "features_compared": 9,
    "reference_rows": 50_000,
    "current_rows": 26_352,
    "prediction_drift": None,
    "prediction_psi": None,
}


class _Webhook(http.server.BaseHTTPRequestHandler):
    status: ClassVar[int] = 200
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append({"path": self.path, "headers": dict(self.headers), "body": body})
        self.send_response(type(self).status)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, type[_Webhook]]]:
    handler = type("Handler", (_Webhook,), {"received": [], "status": 200})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hooks/T000/B000", handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.integration
def test_notify_posts_slack_json(webhook: tuple[str, type[_Webhook]]) -> None:
    url, handler = webhook
    assert notify(url, event="drift_detected", summary=SUMMARY) is True
    (request,) = handler.received
    assert request["path"] == "/hooks/T000/B000"
    assert request["headers"]["Content-Type"] == "application/json"
    payload = json.loads(request["body"])
    assert (
        payload["text"]
        == "voltpipe: Drift detected in 2 feature(s): wind_speed_ms, wind_direction_deg"
    )
    assert payload["blocks"][0] == {
        "type": "section",
        "text": {"type": "mrkdwn", "text": payload["text"]},
    }
    fields = payload["blocks"][1]["fields"]
    assert {"type": "mrkdwn", "text": "*current_rows*\n26352"} in fields
    assert payload["blocks"][-1]["elements"][0]["text"] == "event: `drift_detected`"


@pytest.mark.integration
def test_notify_returns_false_on_http_error(
    webhook: tuple[str, type[_Webhook]], caplog: pytest.LogCaptureFixture
) -> None:
    url, handler = webhook
    handler.status = 500
    with caplog.at_level(logging.WARNING, logger="voltpipe.monitoring.alerts"):
        assert notify(url, event="drift_detected", summary=SUMMARY) is False
    assert "HTTP 500" in caplog.text


def test_notify_never_raises_when_unreachable(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with caplog.at_level(logging.WARNING, logger="voltpipe.monitoring.alerts"):
        assert (
            notify(f"http://127.0.0.1:{port}/x", event="drift_detected", summary=SUMMARY, timeout=2)
            is False
        )
        assert notify("not a url", event="drift_detected", summary=SUMMARY) is False
    assert caplog.text.count("alert webhook unreachable") == 2


def test_notify_without_url_sends_nothing() -> None:
    assert notify(None, event="drift_detected", summary=SUMMARY) is False
    assert notify("", event="drift_detected", summary=SUMMARY) is False


def test_payload_lists_many_features_briefly() -> None:
    many = {"drifted_features": [f"f{i}" for i in range(25)], "pipeline": "wind-power"}
    text = slack_payload("drift_detected", many)["text"]
    assert text.startswith("voltpipe wind-power: Drift detected in 25 feature(s): f0, f1")
    assert text.endswith("f19 and 5 more")


def test_structured_log_line(capsys: pytest.CaptureFixture[str]) -> None:
    line = structured_log_line("drift_detected", SUMMARY)
    printed = capsys.readouterr().out
    assert printed == line + "\n" and "\n" not in line
    entry = json.loads(line)
    assert entry["severity"] == "WARNING" and entry["voltpipe_event"] == "drift_detected"
    assert entry["message"].startswith("voltpipe: Drift detected in 2 feature(s)")
    assert entry["drifted_features"] == SUMMARY["drifted_features"]
    assert (
        json.loads(structured_log_line("no_drift", {"drift_detected": False}))["severity"] == "INFO"
    )
