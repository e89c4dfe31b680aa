"""The HTTP server: Vertex AI's custom-container contract, status codes and error bodies."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn

from voltpipe.errors import ConfigError
from voltpipe.modelling.predict import load_model
from voltpipe.serving import Predictor, create_app, settings_from_env


@pytest.fixture(scope="module")
def regression_predictor(regression_model) -> Predictor:
    return Predictor.from_dir(regression_model.model_dir, warmup_batch_sizes=(1,))


@pytest.fixture(scope="module")
def classification_predictor(classification_model) -> Predictor:
    return Predictor.from_dir(classification_model.model_dir, warmup_batch_sizes=(1,))


@contextlib.contextmanager
def running_server(app: Any) -> Iterator[str]:
    """uvicorn in a thread on an ephemeral 127.0.0.1 port; yields the base URL."""
    # proto=IPPROTO_TCP so asyncio sets TCP_NODELAY on accepted connections (as it does when
    # uvicorn binds host/port itself).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(
    url: str, proc: subprocess.Popen[str] | None = None, timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the server exited: {proc.communicate()[1][-2000:]}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url).status_code == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"{url} did not turn healthy")


@contextlib.contextmanager
def serving_container(model_dir: Path, model: str) -> Iterator[str]:
    """``python -m voltpipe.serving`` as the image starts it on Vertex AI (AIP_* variables), on
    routes ``/v1/models/<model>``; yields its base URL once healthy."""
    port = _free_port()
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "VOLTPIPE_SERVING_HOST": "127.0.0.1",
        "AIP_HTTP_PORT": str(port),
        "AIP_STORAGE_URI": f"file://{model_dir}",
        "AIP_PREDICT_ROUTE": f"/v1/models/{model}:predict",
        "AIP_HEALTH_ROUTE": f"/v1/models/{model}",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "voltpipe.serving"],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(f"{url}/v1/models/{model}", proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


# -- environment contract (no model needed) ------------------------------------------------------


def test_settings_from_env_defaults_and_routes() -> None:
    assert settings_from_env({"AIP_STORAGE_URI": "file:///models/wind"}) == {
        "model_dir": "file:///models/wind",
        "host": "0.0.0.0",
        "port": 8080,
        "predict_route": "/predict",
        "health_route": "/health",
    }
    settings = settings_from_env(
        {
            "AIP_STORAGE_URI": "/m",
            "AIP_HTTP_PORT": "9000",
            "AIP_PREDICT_ROUTE": "/v1/endpoints/1/deployed_models/2:predict",
            "AIP_HEALTH_ROUTE": "/v1/endpoints/1/deployed_models/2",
        }
    )
    assert settings["port"] == 9000
    assert settings["predict_route"] == "/v1/endpoints/1/deployed_models/2:predict"
    assert settings["health_route"] == "/v1/endpoints/1/deployed_models/2"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "AIP_STORAGE_URI"),
        ({"AIP_STORAGE_URI": "/m", "AIP_HTTP_PORT": "http"}, "AIP_HTTP_PORT"),
        ({"AIP_STORAGE_URI": "/m", "AIP_HTTP_PORT": "70000"}, "AIP_HTTP_PORT"),
    ],
)
def test_settings_from_env_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_from_env(env)


def test_bad_routes_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="must start with '/'"):
        create_app(lambda: None, predict_route="predict")  # type: ignore[arg-type,return-value]
    with pytest.raises(ConfigError, match="must differ"):
        create_app(lambda: None, predict_route="/x", health_route="/x")  # type: ignore[arg-type,return-value]


# -- predictions over the ASGI interface -----------------------------------------------------------


@pytest.mark.slow
def test_regression_predictions_equal_keras(
    regression_model, regression_predictor, asgi_client
) -> None:
    client = asgi_client(create_app(regression_predictor))
    response = client.post("/predict", json={"instances": regression_model.instances()})
    assert response.status_code == 200, response.text
    expected = load_model(regression_model.model_dir).predict_raw(regression_model.test)
    np.testing.assert_allclose(response.json()["predictions"], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_classification_predictions_equal_keras(
    classification_model, classification_predictor, asgi_client
) -> None:
    client = asgi_client(create_app(classification_predictor))
    response = client.post("/predict", json={"instances": classification_model.instances()})
    assert response.status_code == 200, response.text
    expected = load_model(classification_model.model_dir).predict_raw(classification_model.test)
    predictions = response.json()["predictions"]
    classes = ["curtailed", "iced", "normal"]
    got = np.array([[p["probabilities"][c] for c in classes] for p in predictions])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert [p["class"] for p in predictions] == [classes[i] for i in expected.argmax(axis=1)]


@pytest.mark.slow
def test_anomaly_scores_over_http(anomaly_model, asgi_client) -> None:
    from voltpipe.serving import load_predictor

    app = create_app(load_predictor(anomaly_model.model_dir, warmup_batch_sizes=(1,)))
    client = asgi_client(app)
    response = client.post("/predict", json={"instances": anomaly_model.instances()})
    assert response.status_code == 200, response.text
    loaded = load_model(anomaly_model.model_dir)
    expected = loaded.predict_raw(anomaly_model.test)
    threshold = loaded.meta["anomaly"]["threshold"]
    predictions = response.json()["predictions"]
    assert set(predictions[0]) == {"score", "is_anomaly", "threshold"}
    np.testing.assert_allclose([p["score"] for p in predictions], expected, rtol=1e-5, atol=1e-6)
    assert [p["is_anomaly"] for p in predictions] == (expected > threshold).tolist()
    assert all(p["threshold"] == threshold for p in predictions)

    instance = anomaly_model.instances(1)[0]
    for bad, names in [
        ({k: v for k, v in instance.items() if k != "pressure"}, ["instances[1]", "'pressure'"]),
        ({**instance, "flow": "high"}, ["instances[1].flow", "must be a number"]),
        ({**instance, "vibration": float("nan")}, ["instances[1].vibration", "NaN"]),
        ({**instance, "mode": {"x": 1}}, ["instances[1].mode", "string"]),
    ]:
        body = json.dumps({"instances": [instance, bad]}).encode()
        error = client.post("/predict", content=body)
        assert error.status_code == 400, error.text
        for name in names:
            assert name in error.json()["error"], error.json()["error"]

    info = client.get("/").json()
    assert info["task"] == "anomaly" and info["threshold"] == threshold
    assert info["request"]["instances"] == [
        {"flow": "number", "pressure": "number", "vibration": "number", "mode": "string"}
    ]
    assert set(info["response"]["predictions"][0]) == {"score", "is_anomaly", "threshold"}


def _bad_requests(instance: dict[str, Any]) -> list[tuple[str, bytes, int, list[str]]]:
    def body(payload: Any) -> bytes:
        return json.dumps(payload).encode()

    missing = {k: v for k, v in instance.items() if k != "temperature"}
    return [
        ("non-JSON", b"wind_speed=3", 400, ["not valid JSON"]),
        ("no instances", body({"inputs": [instance]}), 400, ['"instances"']),
        (
            "instances not a list",
            body({"instances": instance}),
            400,
            ['"instances" must be a list'],
        ),
        ("empty", body({"instances": []}), 400, ['"instances" is empty']),
        (
            "instance not an object",
            body({"instances": [instance, [1, 2]]}),
            400,
            ["instances[1]", "object"],
        ),
        (
            "missing feature",
            body({"instances": [instance, instance, missing]}),
            400,
            ["instances[2]", "'temperature'"],
        ),
        (
            "string for a number",
            body({"instances": [{**instance, "wind_speed": "fast"}]}),
            400,
            ["instances[0].wind_speed", "must be a number"],
        ),
        (
            "NaN literal",
            body({"instances": [{**instance, "hour": float("nan")}]}),
            400,
            ["instances[0].hour", "NaN"],
        ),
        (
            "Infinity literal",
            body({"instances": [instance, {**instance, "wind_speed": float("inf")}]}),
            400,
            ["instances[1].wind_speed", "finite"],
        ),
        (
            "too many instances",
            body({"instances": [instance] * 6}),
            413,
            ["6 instances", "limit of 5"],
        ),
        (
            "body too large",
            body({"instances": [{**instance, "pad": "x" * 3000}]}),
            413,
            ["over the limit of 2048"],
        ),
    ]


@pytest.mark.slow
def test_malformed_requests_get_4xx_naming_the_field(
    regression_model, regression_predictor, asgi_client
) -> None:
    client = asgi_client(create_app(regression_predictor, max_instances=5, max_body_bytes=2048))
    for case, body, status, names in _bad_requests(regression_model.instances(1)[0]):
        response = client.post(
            "/predict", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == status, (case, response.text)
        error = response.json()["error"]
        for name in names:
            assert name in error, (case, error)


async def _chunks(body: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(body), size):
        yield body[i : i + size]


@pytest.mark.slow
def test_streamed_body_over_the_limit_is_413(
    regression_model, regression_predictor, asgi_client
) -> None:
    # No content-length header: the limit is enforced while reading the chunks.
    client = asgi_client(create_app(regression_predictor, max_body_bytes=2048))
    body = json.dumps({"instances": regression_model.instances(40)}).encode()
    response = client.post("/predict", content=_chunks(body, 512))
    assert response.status_code == 413 and "2048" in response.json()["error"]


@pytest.mark.slow
def test_extra_fields_are_ignored(regression_model, regression_predictor, asgi_client) -> None:
    client = asgi_client(create_app(regression_predictor))
    instance = regression_model.instances(1)[0]
    plain = client.post("/predict", json={"instances": [instance]}).json()
    extra = client.post(
        "/predict",
        json={
            "instances": [{**instance, "site": "north", "power_kw": None}],
            "parameters": {"x": 1},
        },
    ).json()
    assert plain == extra


@pytest.mark.slow
def test_methods_routes_health_and_info(regression_predictor, asgi_client) -> None:
    client = asgi_client(create_app(regression_predictor))
    wrong = client.get("/predict")
    assert (
        wrong.status_code == 405
        and wrong.headers["allow"] == "POST"
        and "GET" in wrong.json()["error"]
    )
    assert client.post("/health").status_code == 405
    assert client.get("/nowhere").status_code == 404
    health = client.get("/health")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    info = client.get("/").json()
    assert info["task"] == "regression" and "wind_speed" in info["features"]
    assert info["request"]["instances"] == [info["features"]]
    assert info["response"]["predictions"] == ["number: the predicted power_kw"]


@pytest.mark.slow
def test_env_routes_are_honoured(regression_model, regression_predictor, asgi_client) -> None:
    settings = settings_from_env(
        {
            "AIP_STORAGE_URI": str(regression_model.model_dir),
            "AIP_PREDICT_ROUTE": "/v1/models/x:predict",
            "AIP_HEALTH_ROUTE": "/v1/models/x",
        }
    )
    client = asgi_client(
        create_app(
            regression_predictor,
            predict_route=settings["predict_route"],
            health_route=settings["health_route"],
        )
    )
    body = {"instances": regression_model.instances(2)}
    ok = client.post("/v1/models/x:predict", json=body)
    assert ok.status_code == 200 and len(ok.json()["predictions"]) == 2
    assert client.get("/v1/models/x").status_code == 200
    assert client.post("/predict", json=body).status_code == 404
    assert client.get("/health").status_code == 404


@pytest.mark.slow
def test_model_bug_is_a_500_with_json(
    regression_predictor, regression_model, asgi_client, monkeypatch
) -> None:
    app = create_app(regression_predictor)

    def broken(*_: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(regression_predictor, "predict_arrays", broken)
    response = asgi_client(app).post("/predict", json={"instances": regression_model.instances(1)})
    assert response.status_code == 500 and "boom" in response.json()["error"]


# -- real servers ------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.integration
def test_uvicorn_end_to_end_with_background_loading(regression_model, regression_predictor) -> None:
    release = threading.Event()

    def loader() -> Predictor:
        release.wait(30)
        return regression_predictor

    app = create_app(loader)
    with running_server(app) as url, httpx.Client(base_url=url) as client:
        loading = client.get("/health")
        assert loading.status_code == 503 and "loading" in loading.json()["error"]
        assert (
            client.post("/predict", json={"instances": regression_model.instances(1)}).status_code
            == 503
        )
        release.set()
        _wait_healthy(url + "/health", timeout=30)
        response = client.post("/predict", json={"instances": regression_model.instances(3)})
        assert response.status_code == 200
        expected = load_model(regression_model.model_dir).predict_raw(
            regression_model.test.slice(0, 3)
        )
        np.testing.assert_allclose(response.json()["predictions"], expected, rtol=1e-5, atol=1e-5)
        assert client.post("/predict", content=b"{").status_code == 400
        big = json.dumps({"instances": regression_model.instances(1) * 1001}).encode()
        assert client.post("/predict", content=big).status_code == 413


@pytest.mark.slow
@pytest.mark.integration
def test_failed_load_reports_503_with_the_error() -> None:
    def loader() -> Predictor:
        raise ConfigError("model folder is broken")

    app = create_app(loader)
    with running_server(app) as url:
        deadline = time.monotonic() + 10
        while app.load_error is None and time.monotonic() < deadline:
            time.sleep(0.01)
        response = httpx.get(url + "/health")
        assert response.status_code == 503 and "model folder is broken" in response.json()["error"]


@pytest.mark.slow
@pytest.mark.integration
def test_container_entrypoint_reads_the_aip_environment(classification_model: Any) -> None:
    with serving_container(classification_model.model_dir, "x") as url:
        response = httpx.post(
            url + "/v1/models/x:predict", json={"instances": classification_model.instances(2)}
        )
        assert response.status_code == 200
        assert {p["class"] for p in response.json()["predictions"]} <= {
            "curtailed",
            "iced",
            "normal",
        }


@pytest.mark.slow
@pytest.mark.integration
def test_container_entrypoint_fails_clearly_without_a_model(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "AIP_STORAGE_URI": str(tmp_path / "nothing"),
        "AIP_HTTP_PORT": str(_free_port()),
    }
    result = subprocess.run(
        [sys.executable, "-m", "voltpipe.serving"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "voltpipe error: model folder" in result.stderr and "Traceback" not in result.stderr


# -- hostile clients (issue 11) -------------------------------------------------------------------


def test_deeply_nested_json_is_one_400_and_no_traceback(
    regression_predictor, asgi_client, caplog: pytest.LogCaptureFixture
) -> None:
    client = asgi_client(create_app(regression_predictor))
    depth = 200_000
    body = b'{"instances": ' + b"[" * depth + b"]" * depth + b"}"
    caplog.clear()
    response = client.post("/predict", content=body)
    assert response.status_code == 400 and "nested too deeply" in response.json()["error"]
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


def test_a_404_does_not_echo_a_long_path(regression_predictor, asgi_client) -> None:
    client = asgi_client(create_app(regression_predictor))
    response = client.get("/" + "x" * 8000)
    assert response.status_code == 404
    assert len(response.content) < 300 and "xxx..." in response.json()["error"]


def test_websocket_upgrade_is_refused_not_a_500(regression_predictor) -> None:
    import asyncio

    app = create_app(regression_predictor)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app({"type": "websocket", "path": "/predict", "headers": []}, receive, send))
    assert sent == [{"type": "websocket.close", "code": 1008}]


def test_a_slow_body_is_a_408_and_a_busy_server_a_503_while_health_answers(
    regression_predictor, asgi_client
) -> None:
    import asyncio

    app = create_app(regression_predictor)
    app.body_timeout_seconds = 0.3
    app.max_pending_predictions = 1
    sent: list[dict[str, Any]] = []

    async def never() -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def scenario() -> list[int]:
        scope = {"type": "http", "path": "/predict", "method": "POST", "headers": []}
        slow = asyncio.create_task(app(scope, never, send))
        await asyncio.sleep(0.05)  # the slow request holds the only prediction slot
        busy: list[dict[str, Any]] = []

        async def send_busy(message: dict[str, Any]) -> None:
            busy.append(message)

        await app(scope, never, send_busy)
        health: list[dict[str, Any]] = []

        async def send_health(message: dict[str, Any]) -> None:
            health.append(message)

        health_scope = {"type": "http", "path": "/health", "method": "GET", "headers": []}
        await app(health_scope, never, send_health)
        await asyncio.wait_for(slow, 5)
        return [busy[0]["status"], health[0]["status"], sent[0]["status"]]

    assert asyncio.run(scenario()) == [503, 200, 408]
    assert app.pending_predictions == 0


@pytest.mark.slow
def test_slow_header_clients_cannot_take_the_server_off_the_air(regression_model) -> None:
    """1,000 slow-header connections against a server limited to 256 open files: health keeps
    answering and the slow clients are cut off after the header timeout."""
    import resource

    port = _free_port()
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "VOLTPIPE_SERVING_HOST": "127.0.0.1",
        "AIP_HTTP_PORT": str(port),
        "AIP_STORAGE_URI": f"file://{regression_model.model_dir}",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "voltpipe.serving"],
        env=env,
        text=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256)),
    )
    slow: list[socket.socket] = []
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(f"{url}/health", proc)
        for _ in range(1000):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")  # and never the rest
            slow.append(s)
        started = time.monotonic()
        for _ in range(5):
            assert httpx.get(f"{url}/health", timeout=5).status_code == 200
        assert time.monotonic() - started < 10
        # Every slow client is cut off (evicted at once, or after the 10 s header timeout).
        deadline = time.monotonic() + 30
        open_ = list(slow)
        while open_ and time.monotonic() < deadline:
            still = []
            for s in open_:
                s.settimeout(0.01)
                try:
                    if s.recv(1024) != b"":
                        still.append(s)
                except (TimeoutError, BlockingIOError):
                    still.append(s)
                except OSError:
                    pass
            open_ = still
            time.sleep(0.2)
        assert not open_, f"{len(open_)} slow clients still connected"
        assert proc.poll() is None
    finally:
        for s in slow:
            s.close()
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
