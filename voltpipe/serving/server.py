"""The prediction server: Vertex AI's custom-container contract as a small ASGI app on uvicorn.

Routes: POST `predict_route` ``{"instances": [...]}`` -> ``{"predictions": [...]}``; GET
`health_route` -> 200 once the model is loaded and warm (503 before); GET ``/`` -> what the model
is, and its request and response formats. Client mistakes get a 4xx ``{"error": "..."}`` naming
the field.

Per task (see `load_predictor`): regression, classification and anomaly models take one row of
feature values per instance and answer a number, ``{"class", "probabilities"}`` or ``{"score",
"is_anomaly", "threshold"}``; forecasting models take one series' recent history per instance and
answer ``{"forecast", "times"}`` for the steps after its last row.

Hot reload: given a `ModelSource` (e.g. a registry alias), a `ModelReloader` thread polls the
source's watch file (and reacts to SIGHUP), loads and warms the newly selected model beside the
serving one and swaps it in only once it is ready; a model that fails to load is logged and the
previous one keeps serving.

The app is plain ASGI rather than FastAPI: with three fixed routes and hand-rolled request checks,
a framework would add per-request work and a dependency (FastAPI was not benchmarked against it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from voltpipe.errors import ConfigError
from voltpipe.serving.predictor import BasePredictor, load_predictor, resolve_model_dir
from voltpipe.serving.validation import RequestError, parse_instances

log = logging.getLogger("voltpipe.serving")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# Bodies up to this size are parsed and predicted on the event loop: a thread hop costs more
# than the work. Larger ones go to a worker thread so health checks stay answered meanwhile.
INLINE_MAX_BODY_BYTES = 16_384

_JSON_HEADERS = [(b"content-type", b"application/json")]

# Hostile or broken clients (see `serve`): how long a connection may take to send its request
# headers, and a request its body; how many predictions may run or wait at once (more get a
# 503 at once, health checks are never queued); how much of an unknown path a 404 repeats.
HEADER_TIMEOUT_SECONDS = 10.0
BODY_TIMEOUT_SECONDS = 30.0
MAX_PENDING_PREDICTIONS = 64
_SHOWN_PATH_CHARS = 64


class PredictionApp:
    """The ASGI app. Build it with `create_app`."""

    def __init__(
        self,
        predictor: BasePredictor | Callable[[], BasePredictor],
        *,
        predict_route: str,
        health_route: str,
        max_instances: int,
        max_body_bytes: int,
        noop_route: str | None = None,
        inline_max_body_bytes: int = INLINE_MAX_BODY_BYTES,
        body_timeout_seconds: float = BODY_TIMEOUT_SECONDS,
        max_pending_predictions: int = MAX_PENDING_PREDICTIONS,
    ) -> None:
        for what, route in (("predict route", predict_route), ("health route", health_route)):
            if not route.startswith("/"):
                raise ConfigError(f"{what} {route!r} must start with '/'")
        if predict_route == health_route:
            raise ConfigError(
                f"the predict and health routes are both {predict_route!r}; they must differ"
            )
        self.predict_route = predict_route
        self.health_route = health_route
        self.noop_route = noop_route
        self.max_instances = max_instances
        self.max_body_bytes = max_body_bytes
        self.inline_max_body_bytes = inline_max_body_bytes
        self.body_timeout_seconds = body_timeout_seconds
        self.max_pending_predictions = max_pending_predictions
        self.pending_predictions = 0
        self.predictor: BasePredictor | None = None
        self._loader: Callable[[], BasePredictor] | None = None
        if isinstance(predictor, BasePredictor):
            self.predictor = predictor
        else:
            self._loader = predictor
        self.load_error: BaseException | None = None
        self.on_load_error: Callable[[BaseException], None] | None = None
        self._noop_response = json.dumps({"predictions": [0.0]}).encode()

    def swap(self, predictor: BasePredictor) -> BasePredictor | None:
        """Serves `predictor` from now on (a loaded, warm one) and returns the one it replaces.

        Requests already running finish on the predictor they started with: each reads
        `self.predictor` once, and the assignment is atomic.
        """
        previous, self.predictor = self.predictor, predictor
        # Unfreeze so the replaced model's objects can be collected, then freeze the new heap.
        gc.unfreeze()
        _freeze_heap()
        return previous

    # -- ASGI entry ---------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            # Closing before accepting makes the server answer the upgrade with a 403.
            await send({"type": "websocket.close", "code": 1008})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.predictor is not None:
                    _freeze_heap()
                elif self._loader is not None:
                    # Load in the background: the port opens at once (Vertex's liveness probe is a
                    # TCP connect) and the health route answers 503 until the model is warm.
                    threading.Thread(
                        target=self._load, name="voltpipe-model-loader", daemon=True
                    ).start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _load(self) -> None:
        assert self._loader is not None
        try:
            predictor = self._loader()
        except BaseException as exc:
            self.load_error = exc
            log.error("the model failed to load: %s", exc)
            if self.on_load_error is not None:
                self.on_load_error(exc)
            return
        _freeze_heap()
        self.predictor = predictor
        log.info(
            "model %s (version %s, %s) loaded and warm",
            predictor.name,
            predictor.version,
            predictor.task,
        )

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        try:
            if path == self.predict_route:
                if method != "POST":
                    raise _method_not_allowed(path, method, "POST")
                predictor = self._ready()
                if self.pending_predictions >= self.max_pending_predictions:
                    raise _Busy(
                        f"the server is busy ({self.pending_predictions} predictions running "
                        "or waiting); retry shortly"
                    )
                self.pending_predictions += 1
                try:
                    body = await self._read_body(scope, receive)
                    if len(body) <= self.inline_max_body_bytes:
                        response = self._predict(predictor, body)
                    else:
                        response = await asyncio.get_running_loop().run_in_executor(
                            None, self._predict, predictor, body
                        )
                finally:
                    self.pending_predictions -= 1
                await _respond(send, 200, response)
            elif path == self.health_route:
                if method not in ("GET", "HEAD"):
                    raise _method_not_allowed(path, method, "GET, HEAD")
                self._ready()
                await _respond(send, 200, b'{"status": "ok"}', head=method == "HEAD")
            elif path == self.noop_route:
                # Same stack, no model: the benchmark's floor for the predict route.
                if method != "POST":
                    raise _method_not_allowed(path, method, "POST")
                _loads(await self._read_body(scope, receive))
                await _respond(send, 200, self._noop_response)
            elif path == "/":
                if method not in ("GET", "HEAD"):
                    raise _method_not_allowed(path, method, "GET, HEAD")
                await _respond(
                    send, 200, json.dumps(self._ready().describe()).encode(), head=method == "HEAD"
                )
            else:
                shown = path if len(path) <= _SHOWN_PATH_CHARS else path[:_SHOWN_PATH_CHARS] + "..."
                raise RequestError(
                    404, f"no route {shown}; predictions are at POST {self.predict_route}"
                )
        except RecursionError:
            # json gives up on very deep nesting; no model takes it (a client error, no traceback)
            await _respond(
                send,
                400,
                json.dumps({"error": "request body is nested too deeply to be instances"}).encode(),
            )
        except RequestError as exc:
            headers = [(b"allow", exc.allow.encode())] if isinstance(exc, _MethodNotAllowed) else []
            if isinstance(exc, _Busy):
                headers = [(b"retry-after", b"1")]
            await _respond(send, exc.status, json.dumps({"error": exc.message}).encode(), headers)
        except Exception as exc:  # a bug, not the client's fault: log it, answer 500
            log.exception("%s %s failed", method, path)
            await _respond(
                send,
                500,
                json.dumps({"error": f"internal error: {type(exc).__name__}: {exc}"}).encode(),
            )

    def _ready(self) -> BasePredictor:
        if self.predictor is None:
            state = f"failed to load: {self.load_error}" if self.load_error else "is loading"
            raise RequestError(503, f"the model {state}")
        return self.predictor

    def _predict(self, predictor: BasePredictor, body: bytes) -> bytes:
        instances = parse_instances(body, max_instances=self.max_instances)
        return json.dumps({"predictions": predictor.predict(instances)}).encode()

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body_bytes:
                raise self._too_large(int(value))
        chunks: list[bytes] = []
        size = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout_seconds
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.0))
            except TimeoutError:
                raise RequestError(
                    408,
                    f"the request body did not arrive within {self.body_timeout_seconds:g} s",
                ) from None
            if message["type"] == "http.disconnect":
                raise RequestError(
                    400, "the client closed the connection before sending the whole body"
                )
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise self._too_large(size)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _too_large(self, size: int) -> RequestError:
        return RequestError(
            413,
            f"request body is {size} bytes or more, over the limit of {self.max_body_bytes}; send fewer instances",
        )


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """Where the served model comes from when it can change (a registry alias, say).

    Attributes:
        resolve: returns the model folder to serve now.
        watch: a file whose modification means `resolve` may answer differently (the
            registry's ``aliases.json``); None: reload only on SIGHUP or `ModelReloader.check`.
        interval_seconds: how often the watch file is polled.
    """

    resolve: Callable[[], str | os.PathLike[str]]
    watch: Path | None = None
    interval_seconds: float = 2.0


class ModelReloader:
    """Swaps a newly selected model into a running `PredictionApp` without downtime.

    `check` (called by the polling thread, or directly) reloads when the watch file changed or a
    reload was requested (SIGHUP) and `source.resolve()` names another folder than the one
    serving. The new model is loaded and warmed while the old one keeps answering; on failure the
    error is logged, kept in `last_error`, and the old model keeps serving.
    """

    def __init__(
        self,
        app: PredictionApp,
        source: ModelSource,
        current: str | os.PathLike[str],
        *,
        loader: Callable[[Path], BasePredictor] | None = None,
    ) -> None:
        self.app = app
        self.source = source
        self.current = Path(current)
        self.loader = loader or (lambda path: load_predictor(path))
        self.last_error: BaseException | None = None
        self.reloads = 0
        self._stamp = self._watch_stamp()
        self._requested = threading.Event()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def _watch_stamp(self) -> tuple[int, int] | None:
        if self.source.watch is None:
            return None
        try:
            st = os.stat(self.source.watch)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def request(self) -> None:
        """Asks for a reload at the next check, at once (safe from a signal handler)."""
        self._requested.set()
        self._wake.set()

    def check(self) -> bool:
        """Reloads if the source changed; True if a new model was swapped in."""
        if self.app.predictor is None:  # still loading the first model: look again later
            return False
        stamp = self._watch_stamp()
        if stamp == self._stamp and not self._requested.is_set():
            return False
        self._requested.clear()
        self._stamp = stamp
        try:
            path = Path(os.fspath(self.source.resolve()))
            if path.resolve() == self.current.resolve():
                return False
            log.info("reloading: loading and warming %s", path)
            predictor = self.loader(path)
        except Exception as exc:
            self.last_error = exc
            log.error("hot reload failed; still serving %s: %s", self.current, exc)
            return False
        self.app.swap(predictor)
        self.current = path
        self.last_error = None
        self.reloads += 1
        log.info("now serving model %s version %s from %s", predictor.name, predictor.version, path)
        return True

    def start(self) -> ModelReloader:
        """Starts the polling thread (a daemon)."""
        self._thread = threading.Thread(
            target=self._run, name="voltpipe-model-reloader", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.source.interval_seconds)
            self._wake.clear()
            if not self._stop.is_set():
                self.check()


def _freeze_heap() -> None:
    # TensorFlow and the model leave ~10^6 long-lived objects; without freezing them, every
    # full collection walks them all and shows up as latency spikes on requests.
    gc.collect()
    gc.freeze()


def _loads(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"request body is not valid JSON: {exc}") from None


class _Busy(RequestError):
    def __init__(self, message: str) -> None:
        super().__init__(503, message)


class _MethodNotAllowed(RequestError):
    def __init__(self, message: str, allow: str) -> None:
        super().__init__(405, message)
        self.allow = allow


def _method_not_allowed(path: str, method: str, allow: str) -> _MethodNotAllowed:
    return _MethodNotAllowed(f"method {method} is not allowed on {path}; use {allow}", allow)


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
    *,
    head: bool = False,
) -> None:
    headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode()), *(extra_headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


def create_app(
    predictor: BasePredictor | Callable[[], BasePredictor],
    *,
    predict_route: str = "/predict",
    health_route: str = "/health",
    max_instances: int = 1000,
    max_body_bytes: int = 1_500_000,
    noop_route: str | None = None,
) -> PredictionApp:
    """The ASGI app serving `predictor`.

    Args:
        predictor: a loaded predictor, or a function returning one; a function is called in a
            background thread at startup and the health route answers 503 until it returns.
        predict_route, health_route: paths (Vertex passes them as AIP_PREDICT_ROUTE and
            AIP_HEALTH_ROUTE).
        max_instances: more instances in one request is a 413.
        max_body_bytes: a larger body is a 413 (Vertex's own limit is 1.5 MB).
        noop_route: if set, a POST route that parses the body and returns a constant (benchmarks).

    Raises:
        ConfigError: a route does not start with '/', or the two routes are the same.
    """
    return PredictionApp(
        predictor,
        predict_route=predict_route,
        health_route=health_route,
        max_instances=max_instances,
        max_body_bytes=max_body_bytes,
        noop_route=noop_route,
    )


def connection_limits(fd_limit: int | None = None) -> tuple[int, int]:
    """How many client connections to keep open, and the listen backlog, for a process that
    may open `fd_limit` files (default: its soft RLIMIT_NOFILE).

    Connections stay below the file limit (the model, logs and health checks need
    descriptors too), at most 1,000. asyncio accepts up to `backlog` connections in one go
    before any is looked at, so the backlog is what the limit leaves free, halved.
    """
    if fd_limit is None:
        import resource

        fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if fd_limit == resource.RLIM_INFINITY:
            fd_limit = 1_000_000
    limit = max(16, min(1000, fd_limit - 128 if fd_limit > 256 else fd_limit // 2))
    return limit, max(16, min(2048, (fd_limit - limit) // 2))


def guarded_http_protocol(
    header_timeout_seconds: float = HEADER_TIMEOUT_SECONDS, max_connections: int | None = None
) -> type:
    """uvicorn's h11 protocol with two guards against slow or hostile clients.

    - A connection that has not sent a complete request head within `header_timeout_seconds`
      (after connecting, or after its previous response) is closed: a slow-header client
      cannot hold a connection open for ever.
    - Beyond `max_connections` open connections, a new one first evicts the oldest connection
      that has no request in progress (idle or still sending headers), so descriptors never run
      out and health checks keep being answered.
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    limit = max_connections or connection_limits()[0]

    class GuardedH11Protocol(H11Protocol):
        _voltpipe_head_timer: asyncio.TimerHandle | None
        _voltpipe_since: float
        _voltpipe_waiting_head: bool

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._voltpipe_head_timer = None
            self._arm_head_timer()
            # Closed transports leave `connections` a loop turn later: count the open ones.
            open_ = [c for c in self.connections if not c.transport.is_closing()]
            if len(open_) > limit:
                idle = [
                    c
                    for c in open_
                    if c is not self
                    and isinstance(c, GuardedH11Protocol)
                    and getattr(c, "_voltpipe_waiting_head", False)
                ]
                victim = min(idle, key=lambda c: c._voltpipe_since, default=None)
                (victim or self).transport.close()

        def _arm_head_timer(self) -> None:
            self._voltpipe_waiting_head = True
            self._voltpipe_since = self.loop.time()
            if self._voltpipe_head_timer is not None:
                self._voltpipe_head_timer.cancel()
            self._voltpipe_head_timer = self.loop.call_later(
                header_timeout_seconds, self._head_timed_out
            )

        def _head_timed_out(self) -> None:
            if self._voltpipe_waiting_head and not self.transport.is_closing():
                self.transport.close()

        def handle_events(self) -> None:
            super().handle_events()
            if self.cycle is not None and not self.cycle.response_complete:
                self._voltpipe_waiting_head = False
                if self._voltpipe_head_timer is not None:
                    self._voltpipe_head_timer.cancel()
                    self._voltpipe_head_timer = None

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_head_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._voltpipe_head_timer is not None:
                self._voltpipe_head_timer.cancel()
            super().connection_lost(exc)

    return GuardedH11Protocol


def serve(
    model_dir: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    predict_route: str = "/predict",
    health_route: str = "/health",
    max_instances: int = 1000,
    max_body_bytes: int = 1_500_000,
    log_level: str = "info",
    access_log: bool = False,
    source: ModelSource | None = None,
) -> None:
    """Serves the model in `model_dir` until interrupted (blocking).

    The port opens at once; the model loads in the background and the health route turns 200
    when it is warm. If loading fails, the server stops and the error is raised.

    Args:
        model_dir: a model folder (``model.keras`` + ``voltpipe_model.json``), ``file://`` URI,
            or ``gs://`` URI (copied locally; needs google-cloud-storage).
        access_log: log every request (costs a little latency per request).

    Slow or hostile clients are bounded (`guarded_http_protocol`): request heads must arrive
    within 10 s and bodies within 30 s (408), at most `MAX_PENDING_PREDICTIONS` predictions
    run or wait (503 with Retry-After beyond), and open connections stay below the file limit;
    the health route is never queued behind predictions.
        source: where `model_dir` came from (e.g. a registry alias): the server then hot-reloads
            when it changes (polling `source.watch`, or on SIGHUP), keeping the old model on
            failure. See `voltpipe.deploy.local.registry_source`.

    Raises:
        ConfigError: a bad route, or the model folder does not exist.
        DataError: the folder is not a voltpipe model, or the model fails to load.
    """
    import uvicorn

    from voltpipe.model_dir import read_meta

    path = resolve_model_dir(model_dir)
    read_meta(path)  # fail now, before binding the port, if it is not a model folder
    app = create_app(
        lambda: load_predictor(path),
        predict_route=predict_route,
        health_route=health_route,
        max_instances=max_instances,
        max_body_bytes=max_body_bytes,
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=10,
        http=guarded_http_protocol(max_connections=connection_limits()[0]),
        backlog=connection_limits()[1],
        # Plain HTTP only: a WebSocket upgrade is answered by the app (403), not served.
        ws="none",
    )
    server = uvicorn.Server(config)
    app.on_load_error = lambda _exc: setattr(server, "should_exit", True)
    log.info(
        "serving %s on http://%s:%s%s (health %s)", path, host, port, predict_route, health_route
    )
    reloader = ModelReloader(app, source, path).start() if source is not None else None
    on_hup = None
    if reloader is not None and threading.current_thread() is threading.main_thread():
        on_hup = signal.signal(signal.SIGHUP, lambda _sig, _frame: reloader.request())
    try:
        server.run()
    finally:
        if reloader is not None:
            reloader.stop()
        if on_hup is not None:
            signal.signal(signal.SIGHUP, on_hup)
    if app.load_error is not None:
        raise app.load_error


def settings_from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """`serve` arguments from Vertex AI's container environment (AIP_* variables).

    Raises:
        ConfigError: AIP_STORAGE_URI is unset, or AIP_HTTP_PORT is not a port number.
    """
    uri = environ.get("AIP_STORAGE_URI", "").strip()
    if not uri:
        raise ConfigError(
            "AIP_STORAGE_URI is not set: it must name the model folder (a path, file:// or gs:// URI)"
        )
    port_text = environ.get("AIP_HTTP_PORT", "8080")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigError(f"AIP_HTTP_PORT={port_text!r} is not a port number (1-65535)")
    return {
        "model_dir": uri,
        # Vertex requires listening on all interfaces inside the container.
        "host": environ.get("VOLTPIPE_SERVING_HOST", "0.0.0.0"),
        "port": int(port_text),
        "predict_route": environ.get("AIP_PREDICT_ROUTE") or "/predict",
        "health_route": environ.get("AIP_HEALTH_ROUTE") or "/health",
    }


def serve_from_env(environ: Mapping[str, str] | None = None) -> None:
    """The container entrypoint: reads AIP_* variables (here and only here) and calls `serve`."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    serve(**settings_from_env(os.environ if environ is None else environ))
