"""Family auto: every candidate backtested on the same valid targets, the best one kept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from voltpipe.config import ForecastingConfig
from voltpipe.modelling.predict import load_model
from voltpipe.modelling.train import META_FILE, train_model

TASK = {
    "time_column": "ts",
    "forecasting": {"window": 24, "horizon": 6, "group_column": "site", "covariates": ["temp_c"]},
}


def test_auto_is_the_forecasting_default_and_keeps_the_best_valid_candidate(
    demand_splits: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "auto"
    result = train_model(
        demand_splits["train"],
        demand_splits["valid"],
        out,
        label="load_mw",
        task="forecasting",
        task_params=TASK,
    )
    meta = json.loads((out / META_FILE).read_text())
    assert meta["family"] == "auto" and result.meta["family"] == "auto"
    candidates = {c["family"]: c for c in meta["candidates"]}
    best = min(meta["candidates"], key=lambda c: c["score"])
    assert set(candidates) == {"gbdt", "statistical", "naive", "combination"}
    for c in candidates.values():
        assert c["metric"] == "valid_mae" and c["score"] > 0 and c["fit_seconds"] >= 0
    two_best = sorted(
        (c for c in meta["candidates"] if "members" not in c), key=lambda c: c["score"]
    )
    assert candidates["combination"]["members"] == [c["family"] for c in two_best[:2]]
    assert best["score"] <= candidates["naive"]["score"]  # never worse than its naive base
    members = meta["forecasting"]["members"]
    assert members == (best.get("members") or [best["family"]])

    # The kept members were fitted again on train and valid: the valid rows are now seen, so
    # the valid MAE falls below the backtest's.
    assert all(meta["fit"][m]["refit_seconds"] > 0 for m in members)
    loaded = load_model(out)
    history = pa.concat_tables(
        [pq.read_table(demand_splits["train"]), pq.read_table(demand_splits["valid"])]
    )
    w = loaded.forecast_windows(history)
    valid_start = pq.read_table(demand_splits["valid"]).column("ts").to_numpy().min()
    scored = w.first_forecast_times >= valid_start
    assert scored.sum() == meta["rows"]["valid_windows"]
    mae = float(np.abs(loaded.predict_raw(history)[scored] - w.y_true[scored]).mean())
    assert mae < best["score"]


def test_auto_without_a_valid_split_keeps_its_first_candidate(
    demand_splits: dict[str, Path], tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    pq.write_table(pq.read_table(demand_splits["valid"]).slice(0, 0), empty / "part-0.parquet")
    task = {**TASK, "forecasting": {**TASK["forecasting"], "candidates": ["statistical", "gbdt"]}}
    train_model(
        demand_splits["train"], empty, tmp_path / "m", label="load_mw", task="forecasting",
        task_params=task,
    )  # fmt: skip
    meta = json.loads((tmp_path / "m" / META_FILE).read_text())
    assert meta["forecasting"]["members"] == ["statistical"]
    assert [c["family"] for c in meta["candidates"]] == ["statistical", "gbdt", "naive"]
    assert [c["score"] for c in meta["candidates"]] == [None, None, None]


def test_candidates_are_checked() -> None:
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="unknown candidate family"):
        ForecastingConfig(candidates=["prophet"])
    assert ForecastingConfig(candidates=["gbdt", "gbdt"]).candidates == ["gbdt"]


def test_tuning_auto_names_the_keys_to_change(demand_splits: dict[str, Path]) -> None:
    import pytest

    from voltpipe.errors import DataError
    from voltpipe.modelling.train import fit_tables

    with pytest.raises(DataError, match="tuning.enabled: false"):
        fit_tables(
            pq.read_table(demand_splits["train"]),
            pq.read_table(demand_splits["valid"]),
            label="load_mw",
            task="forecasting",
            task_params=TASK,
        )
