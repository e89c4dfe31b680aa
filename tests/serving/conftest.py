"""Shared fixtures: two tiny trained models (regression, classification), trained once per session."""

from __future__ import annotations

import asyncio
import dataclasses
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
