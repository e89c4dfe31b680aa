"""Batch prediction: equal to the model's own predictions, written with keys and model columns."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from tests.serving.conftest import AnomalyModel, TrainedModel, scada_table
from voltpipe.errors import ConfigError, DataError
from voltpipe.registry.local import LocalRegistry
from voltpipe.serving.batch import predict_batch, resolve_model

pytestmark = pytest.mark.slow  # uses the session's trained models


def _warehouse(path: Path, table: pa.Table) -> str:
    con = duckdb.connect(str(path))
    con.register("rows", table)
    con.execute("CREATE SCHEMA src; CREATE TABLE src.rows AS SELECT * FROM rows")
    con.close()
    return f"duckdb:///{path}"


def _read(path: Path, table: str) -> pa.Table:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.sql(f"SELECT * FROM {table} ORDER BY row_id").to_arrow_table()
    finally:
        con.close()


def _registered(tmp_path: Path, trained: TrainedModel, name: str) -> str:
    registry = LocalRegistry(tmp_path / "registry")
    version = registry.register(name, trained.model_dir, {})
    registry.set_alias(name, "champion", version.version)
    return resolve_model(str(tmp_path / "registry"), name).uri


def test_regression_batch_equals_predict_raw(
    tmp_path: Path, regression_model: TrainedModel
) -> None:
    from voltpipe.modelling.predict import load_model

    rows = scada_table(3000, 7).drop_columns(["power_kw", "state"])
    rows = rows.append_column("row_id", pa.array(np.arange(3000)))
    wh = _warehouse(tmp_path / "wh.duckdb", rows)
    uri = _registered(tmp_path, regression_model, "wind")
    summary = predict_batch(
        wh,
        "SELECT * FROM src.rows WHERE hour >= @h",
        {"h": {"type": "INT64", "value": 0}},
        uri,
        "predictions.wind",
        mode="replace",
        batch_size=700,  # several batches, the last one partial
    )
    assert summary["rows"] == 3000 and summary["model"]["version"] == "1"
    out = _read(tmp_path / "wh.duckdb", "predictions.wind")
    # Keys and categorical features pass through; numeric features do not.
    assert out.column_names == [
        "turbine_id",
        "icing",
        "row_id",
        "prediction",
        "model_name",
        "model_version",
        "predicted_at",
    ]
    expected = load_model(regression_model.model_dir).predict_raw(rows)
    np.testing.assert_allclose(out["prediction"].to_numpy(), expected, rtol=1e-4, atol=1e-3)
    assert set(out["model_name"].to_pylist()) == {"wind"}
    assert set(out["model_version"].to_pylist()) == {"1"}
    assert len(set(out["predicted_at"].to_pylist())) == 1
    # append adds a second run's rows
    predict_batch(wh, "SELECT * FROM src.rows LIMIT 10", {}, uri, "predictions.wind", mode="append")
    assert _read(tmp_path / "wh.duckdb", "predictions.wind").num_rows == 3010


def test_classification_batch_has_classes_and_probabilities(
    tmp_path: Path, classification_model: TrainedModel
) -> None:
    from voltpipe.modelling.predict import load_model

    rows = scada_table(500, 8).drop_columns(["power_kw", "state"])
    rows = rows.append_column("row_id", pa.array(np.arange(500)))
    wh = _warehouse(tmp_path / "wh.duckdb", rows)
    uri = _registered(tmp_path, classification_model, "state")
    predict_batch(wh, "SELECT * FROM src.rows", {}, uri, "predictions.state", mode="replace")
    out = _read(tmp_path / "wh.duckdb", "predictions.state")
    expected = load_model(classification_model.model_dir).predict_raw(rows)
    classes = ["curtailed", "iced", "normal"]
    got = np.c_[[out[f"probability_{c}"].to_numpy() for c in classes]].T
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert out["predicted_class"].to_pylist() == [classes[i] for i in expected.argmax(axis=1)]
    np.testing.assert_allclose(out["prediction"].to_numpy(), expected.max(axis=1), rtol=1e-4)


def test_bad_inputs_each_get_one_clear_error(
    tmp_path: Path, regression_model: TrainedModel
) -> None:
    rows = scada_table(50, 9).drop_columns(["power_kw", "state"])
    wh = _warehouse(tmp_path / "wh.duckdb", rows)
    with pytest.raises(DataError, match="has no champion .* run training first"):
        resolve_model(str(tmp_path / "registry"), "wind")
    uri = _registered(tmp_path, regression_model, "wind")
    with pytest.raises(DataError, match="no version or alias '7'"):
        resolve_model(str(tmp_path / "registry"), "wind", "7")
    with pytest.raises(DataError, match=r"lacks the model's feature column\(s\) hour, wind_speed"):
        predict_batch(wh, "SELECT turbine_id, temperature, icing FROM src.rows", {}, uri, "p.t")
    with pytest.raises(DataError, match="returned no rows"):
        predict_batch(wh, "SELECT * FROM src.rows WHERE hour > 99", {}, uri, "p.t")
    with pytest.raises(DataError, match="clash with the prediction output"):
        predict_batch(wh, "SELECT *, 1.0 AS prediction FROM src.rows", {}, uri, "p.t")
    with pytest.raises(ConfigError, match="expected DATASET.TABLE"):
        predict_batch(wh, "SELECT * FROM src.rows", {}, uri, "t")
    holder = duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True)
    try:
        with pytest.raises(DataError, match="p.t is not writable"):
            predict_batch(wh, "SELECT * FROM src.rows", {}, uri, "p.t")
    finally:
        holder.close()


def test_anomaly_models_get_a_clear_error_before_loading(
    tmp_path: Path, anomaly_model: AnomalyModel
) -> None:
    wh = _warehouse(tmp_path / "wh.duckdb", scada_table(10, 9))
    with pytest.raises(
        DataError,
        match=r"task anomaly: batch prediction scores regression, classification, clustering, "
        r"embedding and forecasting models, not anomaly \(use LoadedModel.predict_raw",
    ):
        predict_batch(wh, "SELECT * FROM src.rows", {}, str(anomaly_model.model_dir), "p.t")
