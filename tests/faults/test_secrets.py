"""Credentials never reach a summary, stderr, the run log or the failure webhook; the webhook
URL itself can be passed by reference (``env:NAME``) instead of as a pipeline parameter."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from voltpipe.cli import app
from voltpipe.monitoring.alerts import notify, structured_log_line
from voltpipe.tracking.redact import redact

SECRET_URL = "http://bob:hunter2@db.internal:5000/x"


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[bytes]]]:
    bodies: list[bytes] = []

    class Hook(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            bodies.append(self.rfile.read(int(self.headers["content-length"])))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook", bodies
    finally:
        server.shutdown()
        thread.join(10)


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        (f"could not reach {SECRET_URL}", "hunter2"),
        ("GET https://api.x.io/v1?token=abc123def456&page=2 failed", "abc123def456"),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig", "eyJhbGciOiJIUzI1NiJ9"),
        ("posting to https://hooks.slack.com/services/T000/B000/XXXXSECRET", "XXXXSECRET"),
    ],
)
def test_redact_hides_credentials_and_keeps_the_rest(text: str, hidden: str) -> None:
    out = redact(text)
    assert hidden not in out and "***" in out
    assert out[:8] == text[:8]  # the rest of the message stays readable


def test_failure_webhook_gets_no_credentials_and_reads_its_url_from_the_environment(
    webhook: tuple[str, list[bytes]], monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    url, bodies = webhook
    monkeypatch.setenv("VOLTPIPE_TEST_WEBHOOK", url)
    event = {"model": "wind", "pipeline": "training", "error": f"tracking at {SECRET_URL} down"}
    assert notify("env:VOLTPIPE_TEST_WEBHOOK", event="run_failed", summary=event) is True
    [body] = bodies
    assert b"hunter2" not in body and b"bob:" not in body and b"db.internal" in body
    line = structured_log_line("run_failed", event)
    assert "hunter2" not in line and "hunter2" not in capsys.readouterr().out
    assert notify("env:VOLTPIPE_UNSET_WEBHOOK", event="run_failed", summary=event) is False


def test_cli_error_and_summary_json_are_redacted(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "summary.json"
    result = CliRunner().invoke(
        app,
        [
            "run",
            "training",
            "--set",
            "query_file=null",
            "--set",
            "query=SELECT * FROM scada.`http://bob:hunter2@db`",
            "--summary-json",
            str(out),
        ],
    )
    assert result.exit_code == 1
    assert "hunter2" not in result.output and "http://***@db" in result.output
    summary = json.loads(out.read_text())
    assert summary["status"] == "failed" and "hunter2" not in summary["error"]


def test_the_run_log_and_screen_get_no_credentials(tmp_path: Path, capsys) -> None:
    from voltpipe.runners.local import _capture_steps

    log = tmp_path / "logs" / "run.log"
    with _capture_steps(log, debug=True) as steps:
        print(f"voltpipe: tracking at {SECRET_URL} failed")
        print("voltpipe error: cannot post to https://hooks.slack.com/services/T/B/SECRET9")
    text = log.read_text()
    assert "hunter2" not in text and "SECRET9" not in text and "db.internal" in text
    assert "hunter2" not in capsys.readouterr().out
    assert steps.messages == ["cannot post to https://hooks.slack.com/***"]
