"""Serving: single-row HTTP latency and throughput of /predict against a no-op route on the same
server, local batch prediction throughput, and the latency of one forecast from a series' last
window (a forecaster's server, its no-op route taking the same body).

The server runs in a subprocess (uvicorn, the same app ``voltpipe serve`` runs) with an extra
no-op route that reads and parses the body and returns a constant. One keep-alive httpx client
sends sequential single-instance requests, alternating blocks of no-op and predict so that load
from other processes hits both alike.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks import Row

TURBINES = [f"WTG{i:02d}" for i in range(12)]

_SERVER = """
import socket, sys, uvicorn
from voltpipe.serving import create_app, load_predictor
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # proto set: asyncio then sets TCP_NODELAY
sock.bind(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
app = create_app(load_predictor(sys.argv[1]), noop_route="/noop")
uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")).run(sockets=[sock])
"""


def scada_table(n: int, seed: int) -> pa.Table:
    """Wind-turbine-like rows: three numbers, two categories (one boolean), and the power label."""
    rng = np.random.default_rng(seed)
    wind = rng.uniform(0, 25, n)
    icing = rng.random(n) < 0.05
    power = np.clip(wind**3 / 4, 0, 3000) * np.where(icing, 0.5, 1.0) + rng.normal(0, 20, n)
    return pa.table(
        {
            "wind_speed": wind,
            "temperature": rng.normal(10, 8, n),
            "hour": rng.integers(0, 24, n),
            "turbine_id": rng.choice(TURBINES, n),
            "icing": icing,
            "power_kw": power,
        }
    )


def train_tiny_model(root: Path) -> Path:
    from voltpipe.modelling.train import train_model

    for split, n, seed in (("train", 4000, 1), ("valid", 1000, 2)):
        (root / split).mkdir(parents=True)
        pq.write_table(scada_table(n, seed), root / split / "part-0.parquet")
    train_model(
        root / "train",
        root / "valid",
        root / "model",
        label="power_kw",
        task="regression",
        training_params={"epochs": 1},
    )
    return root / "model"


FORECAST_WINDOW, FORECAST_HORIZON = 48, 24


def site_load(hours: int, sites: int, seed: int) -> pa.Table:
    """Hourly load per site: a daily cycle, a temperature covariate and noise."""
    rng = np.random.default_rng(seed)
    ts = np.datetime64("2024-01-01T00:00:00", "s") + np.arange(hours) * np.timedelta64(3600, "s")
    hour = np.arange(hours) % 24
    parts = []
    for k in range(sites):
        temp = 8 + 6 * np.sin(2 * np.pi * (hour - 9) / 24) + rng.normal(0, 1, hours)
        load = 60 + 5 * k + 15 * np.sin(2 * np.pi * (hour - 6) / 24) - 0.5 * temp
        parts.append(
            pa.table(
                {
                    "ts": ts,
                    "site": [f"S{k:02d}"] * hours,
                    "load_mw": load + rng.normal(0, 1, hours),
                    "temp_c": temp,
                }
            )
        )
    return pa.concat_tables(parts)


def train_tiny_forecaster(root: Path) -> Path:
    from voltpipe.modelling.train import train_model

    for split, hours, seed in (("train", 24 * 28, 1), ("valid", 24 * 7, 2)):
        (root / split).mkdir(parents=True)
        pq.write_table(site_load(hours, 4, seed), root / split / "part-0.parquet")
    train_model(
        root / "train",
        root / "valid",
        root / "model",
        label="load_mw",
        task="forecasting",
        training_params={"epochs": 1},
        task_params={
            "time_column": "ts",
            "forecasting": {
                "window": FORECAST_WINDOW,
                "horizon": FORECAST_HORIZON,
                "group_column": "site",
                "covariates": ["temp_c"],
            },
        },
    )
    return root / "model"


def forecast_body() -> bytes:
    """One instance: a site's last `FORECAST_WINDOW` hours, as a client sends them."""
    import json

    rows = site_load(FORECAST_WINDOW, 1, 9).drop_columns(["site"]).to_pylist()
    history = [{**r, "ts": r["ts"].isoformat() + "Z"} for r in rows]
    return json.dumps({"instances": [{"site": "S00", "history": history}]}).encode()


@contextlib.contextmanager
def server_process(model_dir: Path) -> Iterator[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(model_dir)], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert proc.stdout is not None
        url = f"http://127.0.0.1:{int(proc.stdout.readline())}"
        import httpx

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + "/health").status_code == 200:
                    break
            time.sleep(0.1)
        else:
            raise RuntimeError("the benchmark server did not become healthy")
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def measure_http(url: str, body: bytes, n: int, blocks: int = 10) -> dict[str, np.ndarray]:
    import httpx

    headers = {"content-type": "application/json"}
    times: dict[str, list[float]] = {"/noop": [], "/predict": []}
    # Without TCP_NODELAY the client's separate header and body writes meet the server's delayed
    # ACK and every request waits ~40 ms (Nagle), whatever the server does.
    transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    with httpx.Client(base_url=url, headers=headers, transport=transport) as client:
        for route in times:  # warm both routes and the connection
            for _ in range(50):
                client.post(route, content=body).raise_for_status()
        for _ in range(blocks):
            for route, out in times.items():
                for _ in range(n // blocks):
                    started = time.perf_counter()
                    r = client.post(route, content=body)
                    out.append(time.perf_counter() - started)
                    if r.status_code != 200:
                        raise RuntimeError(f"{route}: {r.status_code} {r.text}")
    return {route: np.array(t) for route, t in times.items()}


def run(quick: bool) -> list[Row]:
    import json

    from voltpipe.serving import Predictor

    n_requests = 300 if quick else 2000
    n_batch = 200_000 if quick else 1_000_000
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        model_dir = train_tiny_model(Path(tmp))
        instance = scada_table(1, 7).drop_columns(["power_kw"]).to_pylist()[0]
        body = json.dumps({"instances": [instance]}).encode()
        with server_process(model_dir) as url:
            times = measure_http(url, body, n_requests)
        noop, pred = times["/noop"], times["/predict"]
        noop_p50, pred_p50 = float(np.median(noop)) * 1e3, float(np.median(pred)) * 1e3
        noop_rps, pred_rps = float(len(noop) / noop.sum()), float(len(pred) / pred.sum())

        forecaster_dir = train_tiny_forecaster(Path(tmp) / "forecaster")
        with server_process(forecaster_dir) as url:
            forecast_times = measure_http(url, forecast_body(), n_requests)

        predictor = Predictor.from_dir(model_dir)
        table = scada_table(n_batch, 11)
        predictor.predict_table(table.slice(0, 100_000))  # warm the large-batch shapes
        started = time.perf_counter()
        out = predictor.predict_table(table)
        seconds = time.perf_counter() - started
        batch_rps = float(n_batch / seconds)
        assert out.shape == (n_batch,) and np.isfinite(out).all()

    extra = {
        "requests": len(pred),
        "client": "httpx keep-alive, sequential",
        "noop_p99_ms": float(np.percentile(noop, 99)) * 1e3,
        "predict_p99_ms": float(np.percentile(pred, 99)) * 1e3,
    }
    f_noop, f_pred = forecast_times["/noop"], forecast_times["/predict"]
    return [
        Row(
            "serving",
            "p50 latency /predict vs no-op, 1 row",
            pred_p50,
            "ms",
            noop_p50,
            "no-op route, same server",
            "ratio <= 1.3",
            extra=extra,
        ),
        Row(
            "serving",
            "requests/s /predict vs no-op, 1 row",
            pred_rps,
            "/s",
            noop_rps,
            "no-op route, same server",
            "ratio >= 0.8",
            extra=extra,
        ),
        Row(
            "serving",
            f"batch predict {n_batch:,} rows",
            batch_rps,
            "/s",
            100_000.0,
            "goal: 100k rows/s",
            "ratio >= 1.0",
            extra={"seconds": seconds},
        ),
        Row(
            "serving",
            f"p50 latency forecast, 1 series x {FORECAST_WINDOW} rows",
            float(np.median(f_pred)) * 1e3,
            "ms",
            float(np.median(f_noop)) * 1e3,
            "no-op route, same body",
            "ratio <= 4.0",
            extra={
                "requests": len(f_pred),
                "horizon": FORECAST_HORIZON,
                "predict_p99_ms": float(np.percentile(f_pred, 99)) * 1e3,
                "noop_p99_ms": float(np.percentile(f_noop, 99)) * 1e3,
            },
        ),
    ]
