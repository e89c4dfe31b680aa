"""Shared fixtures: small warehouses and configs in isolated tmp folders."""

from __future__ import annotations

import textwrap
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from voltpipe.demo import WindFarmSpec, seed_duckdb

SMALL_SPEC = WindFarmSpec(turbines=2, days=21, start="2024-10-20", drift_start="2024-11-01")


@pytest.fixture(scope="session")
def wind_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DuckDB file with a small demo SCADA table (2 turbines x 21 days, ~6k rows)."""
    path = tmp_path_factory.mktemp("wh") / "wind.duckdb"
    seed_duckdb(path, SMALL_SPEC)
    return path


def make_equipment_table(n: int = 3000, seed: int = 0) -> pa.Table:
    """A small, non-demo classification table: transformer failures with a string label."""
    rng = np.random.default_rng(seed)
    load = rng.uniform(0.2, 1.2, n)
    oil_temp = 40 + 45 * load + rng.normal(0, 5, n)
    age = rng.integers(1, 40, n)
    region = rng.choice(["north", "south", "east", "west"], n)
    risk = 0.08 * (oil_temp - 70) + 0.06 * (age - 20) + (region == "south") * 0.8
    label = np.where(risk + rng.normal(0, 0.8, n) > 0.5, "failed", "healthy")
    return pa.table(
        {
            "asset_id": [f"TX{i:05d}" for i in range(n)],
            "load_pu": load,
            "oil_temp_c": oil_temp,
            "age_years": age,
            "region": region,
            "outcome": label,
        }
    )


@pytest.fixture(scope="session")
def equipment_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("wh") / "grid.duckdb"
    con = duckdb.connect(str(path))
    equipment = make_equipment_table()
    con.register("equipment", equipment)
    con.execute("CREATE SCHEMA assets")
    con.execute("CREATE TABLE assets.transformers AS SELECT * FROM equipment")
    con.execute(
        "CREATE TABLE assets.constant AS SELECT *, 1.0 AS const_label, 'same' AS one_class, "
        "CAST(NULL AS DOUBLE) AS null_label FROM equipment"
    )
    con.close()
    return path


def write_config(folder: Path, body: str, extra: str = "") -> Path:
    """Writes a config file from an indented YAML block (plus unindented `extra` lines)."""
    path = folder / "voltpipe.yaml"
    path.write_text(textwrap.dedent(body) + extra)
    return path


FAST_TRAINING = (
    "training: {epochs: 6, batch_size: 128, learning_rate: 0.01, early_stopping_patience: 2}\n"
    "model: {family: mlp, hidden_units: [16]}\n"
)


@pytest.fixture
def wind_config(tmp_path: Path, wind_warehouse: Path) -> Path:
    """A config training the wind-power regression on the small warehouse."""
    return write_config(
        tmp_path,
        f"""
        name: wind-test
        warehouse: duckdb:///{wind_warehouse}
        query: >
          SELECT ts, turbine_id, wind_speed_ms, air_density_kgm3, power_kw
          FROM scada.turbine WHERE ts < @cutoff AND status = 'ok'
        query_parameters: {{cutoff: {{type: TIMESTAMP, value: "2024-11-01T00:00:00"}}}}
        label: power_kw
        task: regression
        exclude: [ts]
        workdir: work
        split: {{method: hash, column: ts, seed: 1}}
        """,
        FAST_TRAINING,
    )


@pytest.fixture
def equipment_config(tmp_path: Path, equipment_warehouse: Path) -> Path:
    """A config for a different table and task: string-label classification."""
    return write_config(
        tmp_path,
        f"""
        name: transformer-failure
        warehouse: duckdb:///{equipment_warehouse}
        query: SELECT load_pu, oil_temp_c, age_years, region, outcome FROM assets.transformers
        label: outcome
        task: classification
        workdir: work
        """,
        FAST_TRAINING,
    )
