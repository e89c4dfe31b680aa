"""A gs:// model download never writes outside its folder, whatever the bucket's object names."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from voltpipe.errors import ConfigError
from voltpipe.serving.predictor import resolve_model_dir


class _Bucket(BaseHTTPRequestHandler):
    """The two Cloud Storage JSON API calls a download makes: list objects, get media."""

    objects: ClassVar[dict[str, bytes]] = {}

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        url = urllib.parse.urlparse(self.path)
        query = urllib.parse.parse_qs(url.query)
        if url.path.endswith("/o") and "alt" not in query:
            prefix = query.get("prefix", [""])[0]
            items = [
                {"name": n, "bucket": "b", "size": str(len(d)), "generation": "1"}
                for n, d in self.objects.items()
                if n.startswith(prefix)
            ]
            body = json.dumps({"kind": "storage#objects", "items": items}).encode()
            self._send(200, body, "application/json")
            return
        name = urllib.parse.unquote(url.path.split("/o/", 1)[1])
        self._send(200, self.objects[name], "application/octet-stream")

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_Bucket]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Bucket)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "test")
    try:
        yield _Bucket
    finally:
        server.shutdown()
        thread.join(10)


def test_object_names_with_dot_dot_are_refused_before_anything_is_written(
    bucket: type[_Bucket], tmp_path: Path
) -> None:
    bucket.objects = {
        "models/m/voltpipe_model.json": b"{}",
        "models/m/../../escaped.txt": b"pwned",
    }
    target = tmp_path / "a" / "b" / "model"
    with pytest.raises(ConfigError, match=r"outside the model folder"):
        resolve_model_dir("gs://b/models/m", download_to=target)
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not (target / "voltpipe_model.json").exists()


def test_a_normal_model_folder_is_copied(bucket: type[_Bucket], tmp_path: Path) -> None:
    bucket.objects = {
        "models/m/voltpipe_model.json": b'{"task": "regression"}',
        "models/m/assets/vocab.txt": b"a\nb",
    }
    got = resolve_model_dir("gs://b/models/m", download_to=tmp_path / "model")
    assert (got / "voltpipe_model.json").read_bytes() == b'{"task": "regression"}'
    assert (got / "assets" / "vocab.txt").read_bytes() == b"a\nb"
