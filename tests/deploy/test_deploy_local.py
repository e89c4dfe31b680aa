"""Local deployment: the smoke test guards the champion alias; a running server hot-reloads it."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest

from voltpipe.deploy import deploy_registered
from voltpipe.deploy.local import deploy_local, registry_source, sample_instances
from voltpipe.errors import DataError
from voltpipe.registry.local import LocalRegistry
from voltpipe.serving import Predictor, create_app
from voltpipe.serving.server import ModelReloader

pytestmark = pytest.mark.slow
NAME = "wind-power"


@pytest.fixture
def registry(tmp_path: Path, trained_model: Path, broken_model: Path) -> LocalRegistry:
    """Versions 1 and 2 (the same good model), 3 (broken); champion: 1."""
    reg = LocalRegistry(tmp_path / "registry")
    extra = {"reference_sample.parquet": trained_model.parent / "reference_sample.parquet"}
    for model in (trained_model, trained_model, broken_model):
        reg.register(NAME, model, {"decision": {"promote": True}}, extra_files=extra)
    reg.set_alias(NAME, "champion", "1")
    return reg


def test_sample_instances_come_from_the_reference_sample(registry) -> None:
    rows = sample_instances(registry.get(NAME, "1").uri, 3)
    assert len(rows) == 3
    assert set(rows[0]) == {"wind_speed", "turbine_id"}  # features only, no label
    os.remove(Path(registry.get(NAME, "2").uri) / "reference_sample.parquet")
    [row] = sample_instances(registry.get(NAME, "2").uri)  # from the feature plan
    assert set(row) == {"wind_speed", "turbine_id"}


def test_deploy_local_smoke_tests_then_moves_champion(registry) -> None:
    summary = deploy_local(str(registry.root), NAME, "2")
    assert summary["champion"] == "2" and summary["previous_champion"] == "1"
    assert summary["smoke_rows"] == 5
    assert all(isinstance(p, float) for p in summary["predictions"])
    assert registry.get(NAME).version == "2"


def test_broken_version_never_becomes_champion(registry) -> None:
    with pytest.raises(DataError, match=r"version 3 failed its smoke test.*version 1\) keeps"):
        deploy_local(str(registry.root), NAME, "3")
    assert registry.get(NAME).version == "1"


def test_broken_version_promoted_by_register_is_moved_back(registry) -> None:
    registry.set_alias(NAME, "champion", "3")  # what register does when the gate passes
    registration = {"version": "3", "champion": True, "previous_champion": "1"}
    with pytest.raises(DataError, match=r"previous champion \(version 1\) keeps serving"):
        deploy_registered(registration, registry_uri=str(registry.root), model_name=NAME)
    assert registry.get(NAME).version == "1"


def test_broken_first_champion_loses_the_alias(tmp_path, broken_model) -> None:
    reg = LocalRegistry(tmp_path / "registry")
    reg.register(NAME, broken_model, {})
    reg.set_alias(NAME, "champion", "1")
    with pytest.raises(DataError, match="no previous champion"):
        deploy_local(str(reg.root), NAME, "1")
    assert reg.get(NAME) is None


def test_champion_moves_only_from_the_one_the_gate_compared_with(registry) -> None:
    # Version 2 was gated against version 1, which is still champion: it moves, once.
    registration = {"version": "2", "promote": True, "gated_against": "1"}
    summary = deploy_registered(registration, registry_uri=str(registry.root), model_name=NAME)
    assert summary["deployed"] is True and summary["champion"] == "2"
    assert registry.get(NAME).version == "2"
    # Another run's version 1, gated against "no champion", comes in late: refused, and said.
    late = {"version": "1", "promote": True, "gated_against": None}
    summary = deploy_registered(late, registry_uri=str(registry.root), model_name=NAME)
    assert summary["deployed"] is False and summary["champion_moved"] is True
    assert "gated against no champion, but the champion is now version 2" in summary["reason"]
    assert registry.get(NAME).version == "2"


def test_a_failed_smoke_test_never_moves_the_champion(registry) -> None:
    registration = {"version": "3", "promote": True, "gated_against": "1"}
    with pytest.raises(DataError, match=r"version 3 failed its smoke test"):
        deploy_registered(registration, registry_uri=str(registry.root), model_name=NAME)
    assert registry.get(NAME).version == "1"


def test_gate_failure_never_deploys(registry) -> None:
    summary = deploy_registered(
        {"version": "2", "champion": False}, registry_uri=str(registry.root), model_name=NAME
    )
    assert summary["deployed"] is False
    assert registry.get(NAME).version == "1"


# -- hot reload -----------------------------------------------------------------------------------


def test_reloader_swaps_only_a_model_that_loads(registry) -> None:
    first = Predictor.from_dir(registry.get(NAME, "1").uri, warmup_batch_sizes=(1,))
    app = create_app(first)
    source = registry_source(str(registry.root), NAME)
    loaded: list[Path] = []

    def loader(path: Path) -> Predictor:
        loaded.append(path)
        return Predictor.from_dir(path, warmup_batch_sizes=(1,))

    reloader = ModelReloader(app, source, registry.get(NAME, "1").uri, loader=loader)
    assert reloader.check() is False and loaded == []  # nothing changed

    registry.set_alias(NAME, "champion", "3")  # broken: logged, the old model keeps serving
    assert reloader.check() is False
    assert reloader.last_error is not None
    assert app.predictor is first

    registry.set_alias(NAME, "champion", "2")
    assert reloader.check() is True
    assert app.predictor is not first and app.predictor.version == "2"
    assert app.predictor.describe()["version"] == "2"  # what GET / reports

    reloader.request()  # SIGHUP: re-resolves; the same folder is not reloaded
    assert reloader.check() is False and len(loaded) == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SERVER = """
import logging, sys
from voltpipe.deploy.local import registry_source
from voltpipe.serving.server import serve
logging.basicConfig(level=logging.INFO)
source = registry_source(sys.argv[1], sys.argv[2], interval_seconds=float(sys.argv[4]))
serve(source.resolve(), port=int(sys.argv[3]), source=source, log_level="warning")
"""


@contextlib.contextmanager
def _server(registry: LocalRegistry, interval: float) -> Iterator[tuple[str, subprocess.Popen]]:
    port = _free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    args = [sys.executable, "-c", SERVER, str(registry.root), NAME, str(port), str(interval)]
    proc = subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _until(lambda: _get(url + "/health", proc) == 200, "the server turned healthy")
        yield url, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(20)
        if proc.poll() is None:
            proc.kill()


def _get(url: str, proc: subprocess.Popen) -> int | None:
    if proc.poll() is not None:
        raise AssertionError(f"the server exited: {proc.communicate()[1][-2000:]}")
    with contextlib.suppress(httpx.TransportError):
        return httpx.get(url, timeout=5).status_code
    return None


def _until(condition: Any, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.1)


@pytest.mark.integration
def test_running_server_follows_the_champion_without_downtime(registry) -> None:
    instances = sample_instances(registry.get(NAME, "1").uri)
    with _server(registry, interval=0.3) as (url, proc):
        assert httpx.get(url + "/").json()["version"] == "1"

        deploy_local(str(registry.root), NAME, "2")
        statuses: list[int] = []

        def served_version() -> str:
            # Every request during the reload must be answered, by the old or the new model.
            statuses.append(httpx.post(url + "/predict", json={"instances": instances}).status_code)
            return httpx.get(url + "/").json()["version"]

        _until(lambda: served_version() == "2", "the server serves version 2")
        assert set(statuses) == {200}

        # A broken version forced into the alias: the server logs it and keeps version 2.
        registry.set_alias(NAME, "champion", "3")
        time.sleep(3)
        assert httpx.get(url + "/").json()["version"] == "2"
        assert httpx.post(url + "/predict", json={"instances": instances}).status_code == 200

        # SIGHUP asks for a check at once; the server keeps running and follows the alias.
        registry.set_alias(NAME, "champion", "1")
        proc.send_signal(signal.SIGHUP)
        _until(lambda: httpx.get(url + "/").json()["version"] == "1", "version 1 is back")
    log = proc.stderr.read() if proc.stderr else ""
    assert "hot reload failed" in log, log[-2000:]


# -- the component ------------------------------------------------------------------------------


def test_deploy_component_writes_the_summary(registry, tmp_path: Path) -> None:
    from kfp import dsl

    from voltpipe.components import deploy

    registration = dsl.Artifact(name="registration", uri=str(tmp_path / "registration"))
    Path(registration.path).write_text(
        json.dumps({"version": "2", "champion": True, "previous_champion": "1"})
    )
    deployment = dsl.Artifact(name="deployment", uri=str(tmp_path / "deployment"), metadata={})
    deploy.python_func(
        registration=registration,
        registry_uri=str(registry.root),
        model_name=NAME,
        deployment=deployment,
    )
    summary = json.loads(Path(deployment.path).read_text())
    assert summary["deployed"] is True and summary["champion"] == "2"
    assert deployment.metadata["target"] == "local"
    assert registry.get(NAME).version == "2"

    registration_3 = dsl.Artifact(name="registration", uri=str(tmp_path / "registration3"))
    Path(registration_3.path).write_text(json.dumps({"version": "3", "champion": True}))
    with pytest.raises(SystemExit):  # a user error: one marked line, the step fails
        deploy.python_func(
            registration=registration_3,
            registry_uri=str(registry.root),
            model_name=NAME,
            deployment=deployment,
        )
    assert registry.get(NAME).version == "2"


# -- forecasting and anomaly models: the same predictor path ------------------------------------


@pytest.fixture
def forecast_registry(tmp_path: Path, forecasting_model_dir: Path) -> LocalRegistry:
    """Versions 1 and 2 of the same forecaster (reference sample inside); no champion."""
    reg = LocalRegistry(tmp_path / "registry")
    for _ in range(2):
        reg.register("load", forecasting_model_dir, {})
    return reg


def _hourly(history: list[dict[str, Any]]) -> bool:
    times = [dt.datetime.fromisoformat(r["ts"]) for r in history]
    return all(b - a == dt.timedelta(hours=1) for a, b in itertools.pairwise(times))


def _context(model_dir: Path) -> int:
    """The rows a request's history needs: the model's context (its window, or more)."""
    from voltpipe.modelling.train import read_model_meta
    from voltpipe.serving.validation import HistorySpec

    return HistorySpec.from_meta(read_model_meta(model_dir)).history_rows


def test_forecaster_sample_instances_are_window_histories(forecast_registry) -> None:
    uri = Path(forecast_registry.get("load", "1").uri)
    need = _context(uri)  # 24 (the window) for a Keras model; more with seasonal lags
    assert need >= 24
    north, south = sample_instances(uri, 5)  # one per series
    assert (north["site"], south["site"]) == ("north", "south")
    for instance in (north, south):
        history = instance["history"]
        assert len(history) == need and set(history[0]) == {"ts", "load_mw", "temp_c"}
        assert _hourly(history)
        assert history[-1]["ts"] == "2024-01-10T23:00:00"  # the latest window

    # A sampled reference (gaps): the latest evenly spaced run of 24 rows is found.
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    reference = uri / "reference_sample.parquet"
    table = pq.read_table(reference)
    hour = pc.hour(table.column("ts"))
    gaps = pc.and_(
        pc.equal(hour, 20), pc.greater(table.column("ts"), pa.scalar(dt.datetime(2024, 1, 9)))
    )
    pq.write_table(table.filter(pc.invert(gaps)), reference)
    [north] = sample_instances(uri, 1)
    # 21:00 on the 9th to 19:00 on the 10th is 23 rows: short of a history.
    assert _hourly(north["history"]) and north["history"][-1]["ts"] == "2024-01-09T19:00:00"

    # No reference sample: one synthetic history at the training means.
    reference.unlink()
    [synthetic] = sample_instances(uri)
    assert len(synthetic["history"]) == need and _hourly(synthetic["history"])


def test_deploy_local_smoke_tests_a_forecaster_through_the_predictor(forecast_registry) -> None:
    summary = deploy_local(str(forecast_registry.root), "load", "1")
    assert summary["champion"] == "1" and summary["smoke_rows"] == 2
    first = summary["predictions"][0]
    assert set(first) == {"forecast", "times"} and len(first["forecast"]) == 6
    assert first["times"][0] == "2024-01-11T00:00:00"
    assert forecast_registry.get("load").version == "1"

    # The server's request checks apply: a bad history fails the smoke test, 1 keeps serving.
    short = [
        {"history": sample_instances(forecast_registry.get("load", "2").uri)[0]["history"][:5]}
    ]
    need = _context(Path(forecast_registry.get("load", "2").uri))
    with pytest.raises(DataError, match=rf"version 2 failed its smoke test.*at least {need}"):
        deploy_local(str(forecast_registry.root), "load", "2", smoke_instances=short)
    assert forecast_registry.get("load").version == "1"


def test_deploy_local_smoke_tests_an_autoencoder(tmp_path: Path, anomaly_model_dir: Path) -> None:
    reg = LocalRegistry(tmp_path / "registry")
    reg.register("pump", anomaly_model_dir, {})
    instances = sample_instances(reg.get("pump", "1").uri)
    assert len(instances) == 5 and set(instances[0]) == {"flow", "pressure", "vibration", "mode"}
    summary = deploy_local(str(reg.root), "pump", "1")
    assert summary["champion"] == "1"
    assert all(set(p) == {"score", "is_anomaly", "threshold"} for p in summary["predictions"])


def test_reloader_loads_a_forecaster_with_its_predictor(forecast_registry) -> None:
    from voltpipe.serving import ForecastPredictor, load_predictor

    forecast_registry.set_alias("load", "champion", "1")
    app = create_app(load_predictor(forecast_registry.get("load", "1").uri, warmup_batch_sizes=()))
    source = registry_source(str(forecast_registry.root), "load")
    reloader = ModelReloader(app, source, forecast_registry.get("load", "1").uri)
    forecast_registry.set_alias("load", "champion", "2")
    assert reloader.check() is True, reloader.last_error
    assert isinstance(app.predictor, ForecastPredictor) and app.predictor.version == "2"
