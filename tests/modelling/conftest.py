"""Fixtures of the modelling tests: synthetic splits in session tmp folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.modelling.synthetic import demand_series, time_splits, write_split


@pytest.fixture(scope="session")
def demand_splits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Six weeks of two sites: four weeks train, one valid, one test (split on time)."""
    root = tmp_path_factory.mktemp("demand")
    parts = time_splits(demand_series(), ("2024-01-29", "2024-02-05"))
    return {
        s: write_split(root / s, t) for s, t in zip(("train", "valid", "test"), parts, strict=True)
    }
