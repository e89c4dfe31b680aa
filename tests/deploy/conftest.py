"""Fixtures for the deployment tests: one tiny trained model, and registries holding it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest


def turbine_table(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    wind = rng.uniform(0, 25, n)
    return pa.table(
        {
            "wind_speed": wind,
            "turbine_id": rng.choice(["T01", "T02"], n),
            "power_kw": np.clip(wind**3 / 4, 0, 3000) + rng.normal(0, 20, n),
        }
    )


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny regression model folder (trained once per session) with a reference sample."""
    from voltpipe.modelling.train import train_model

    root = tmp_path_factory.mktemp("deploy-model")
    for split, n, seed in (("train", 300, 1), ("valid", 100, 2)):
        (root / split).mkdir()
        pq.write_table(turbine_table(n, seed), root / split / "part-0.parquet")
    train_model(
        root / "train",
        root / "valid",
        root / "model",
        label="power_kw",
        task="regression",
        model_params={"family": "mlp"},  # the Keras folder's tests
        training_params={"epochs": 1, "batch_size": 128},
    )
    pq.write_table(turbine_table(20, 3), root / "reference_sample.parquet")
    return root / "model"


@pytest.fixture(scope="session")
def broken_model(trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same model with a corrupted model.keras: it registers, but does not load."""
    import shutil

    path = tmp_path_factory.mktemp("broken") / "model"
    shutil.copytree(trained_model, path)
    (path / "model.keras").write_bytes(b"this is not a keras archive")
    return path


@pytest.fixture(scope="session")
def forecasting_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small forecaster (window 24, horizon 6, sites north/south) with a reference sample."""
    from tests.serving.conftest import train_forecaster

    return train_forecaster(tmp_path_factory.mktemp("deploy-forecaster")).model_dir


@pytest.fixture(scope="session")
def anomaly_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small autoencoder with a reference sample."""
    from tests.serving.conftest import train_autoencoder

    return train_autoencoder(tmp_path_factory.mktemp("deploy-autoencoder")).model_dir
