"""Shared fixtures: tiny trained models (regression, classification, forecasting, anomaly),
each trained once per session."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

TURBINES = ["T01", "T02", "T03", "T04"]


def scada_table(n: int, seed: int) -> pa.Table:
    """Turbine-like rows: numbers (float, float32, int), a string and a boolean category, two labels."""
    rng = np.random.default_rng(seed)
    wind = rng.uniform(0, 25, n)
    icing = rng.random(n) < 0.1
    return pa.table(
        {
            "wind_speed": wind,
            "temperature": rng.normal(10, 8, n).astype("float32"),
            "hour": rng.integers(0, 24, n),
            "turbine_id": rng.choice(TURBINES, n),
            "icing": icing,
            "power_kw": np.clip(wind**3 / 4, 0, 3000) * np.where(icing, 0.5, 1.0)
            + rng.normal(0, 20, n),
            "state": np.where(wind > 20, "curtailed", np.where(icing, "iced", "normal")),
        }
    )


@dataclasses.dataclass
class TrainedModel:
    model_dir: Path
    task: str
    label: str
    test: pa.Table  # feature columns only

    def instances(self, n: int | None = None) -> list[dict[str, Any]]:
        return (self.test if n is None else self.test.slice(0, n)).to_pylist()


def _train(root: Path, task: str, label: str, drop: str) -> TrainedModel:
    from voltpipe.modelling.train import train_model

    for split, n, seed in (("train", 600, 1), ("valid", 200, 2)):
        (root / split).mkdir(parents=True)
        pq.write_table(scada_table(n, seed).drop_columns([drop]), root / split / "part-0.parquet")
    train_model(
        root / "train",
        root / "valid",
        root / "model",
        label=label,
        task=task,
        model_params={"family": "mlp"},  # the Keras predictor's tests
        training_params={"epochs": 2, "batch_size": 128},
    )
    return TrainedModel(
        root / "model", task, label, scada_table(50, 3).drop_columns(["power_kw", "state"])
    )


@pytest.fixture(scope="session")
def regression_model(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    return _train(tmp_path_factory.mktemp("regression"), "regression", "power_kw", "state")


@pytest.fixture(scope="session")
def classification_model(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    return _train(tmp_path_factory.mktemp("classification"), "classification", "state", "power_kw")


FORECAST_TASK = {
    "time_column": "ts",
    "forecasting": {"window": 24, "horizon": 6, "group_column": "site", "covariates": ["temp_c"]},
}


@dataclasses.dataclass
class ForecastModel:
    model_dir: Path
    series: pa.Table  # the whole demand series (both sites), rows shuffled
    window: int = 24
    horizon: int = 6

    @property
    def context(self) -> int:
        """The rows one forecast needs (the window, and a cycle plus 24 steps of each season)."""
        meta = json.loads((self.model_dir / "voltpipe_model.json").read_text())
        return int(meta["forecasting"]["context"])

    def history(self, site: str, end: str, rows: int | None = None) -> pa.Table:
        """`site`'s rows before `end` (the last `rows` of them, default a context), in time
        order."""
        import pyarrow.compute as pc

        t = self.series.filter(
            pc.and_(
                pc.equal(self.series.column("site"), site),
                pc.less(self.series.column("ts"), pa.scalar(np.datetime64(end, "s"))),
            )
        ).sort_by("ts")
        n = self.context if rows is None else rows
        return t.slice(max(t.num_rows - n, 0))


def iso_rows(table: pa.Table) -> list[dict[str, Any]]:
    """Rows as JSON-able dicts with ISO 8601 times."""
    return [
        {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in row.items()}
        for row in table.to_pylist()
    ]


def train_forecaster(root: Path) -> ForecastModel:
    """A small CNN forecaster of hourly load per site (window 24, horizon 6, one covariate),
    with its training rows stored as the reference sample, as the register step stores them."""
    from tests.modelling.synthetic import demand_series, time_splits
    from voltpipe.modelling.train import train_model

    series = demand_series(days=14, seed=4)
    train, valid, _ = time_splits(series, ("2024-01-11", "2024-01-13"))
    for split, table in (("train", train), ("valid", valid)):
        (root / split).mkdir(parents=True)
        pq.write_table(table, root / split / "part-0.parquet")
    train_model(
        root / "train",
        root / "valid",
        root / "model",
        label="load_mw",
        task="forecasting",
        model_params={"family": "cnn", "hidden_units": [16], "filters": 8},
        training_params={"epochs": 2, "batch_size": 64},
        task_params=FORECAST_TASK,
    )
    pq.write_table(train, root / "model" / "reference_sample.parquet")
    return ForecastModel(root / "model", series)


@pytest.fixture(scope="session")
def forecasting_model(tmp_path_factory: pytest.TempPathFactory) -> ForecastModel:
    return train_forecaster(tmp_path_factory.mktemp("forecasting"))


@dataclasses.dataclass
class AnomalyModel:
    model_dir: Path
    test: pa.Table  # feature columns and the 0/1 label "fault"

    def instances(self, n: int | None = None) -> list[dict[str, Any]]:
        t = self.test if n is None else self.test.slice(0, n)
        return t.drop_columns(["fault"]).to_pylist()


def train_autoencoder(root: Path) -> AnomalyModel:
    """An autoencoder on pump sensors (three numbers, one category), with a reference sample."""
    from tests.modelling.synthetic import sensor_table
    from voltpipe.modelling.train import train_model

    for split, n, seed in (("train", 1500, 1), ("valid", 500, 2)):
        (root / split).mkdir(parents=True)
        pq.write_table(sensor_table(n, 0.02, seed), root / split / "part-0.parquet")
    train_model(
        root / "train",
        root / "valid",
        root / "model",
        label="fault",
        task="anomaly",
        model_params={"hidden_units": [8], "latent_dim": 2, "dropout": 0.0},
        training_params={"epochs": 2, "batch_size": 64, "learning_rate": 0.01},
        task_params={"anomaly": {"threshold_quantile": 0.95}},
    )
    pq.write_table(sensor_table(50, 0.02, 4), root / "model" / "reference_sample.parquet")
    return AnomalyModel(root / "model", sensor_table(60, 0.2, 3))


@pytest.fixture(scope="session")
def anomaly_model(tmp_path_factory: pytest.TempPathFactory) -> AnomalyModel:
    return train_autoencoder(tmp_path_factory.mktemp("anomaly"))


class AsgiClient:
    """A synchronous client calling an ASGI app in-process (no lifespan, no sockets)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://testserver"
            ) as client:
                return await client.request(method, url, **kwargs)

        return asyncio.run(go())

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)


@pytest.fixture
def asgi_client() -> type[AsgiClient]:
    """``asgi_client(app)``: a synchronous in-process client for an ASGI app."""
    return AsgiClient
