"""The fast predictor agrees with the in-process Keras model, on both of its engines."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from voltpipe.errors import ConfigError
from voltpipe.modelling.predict import load_model
from voltpipe.serving import Predictor, resolve_model_dir
from voltpipe.serving.predictor import NUMPY_MAX_ROWS


def test_importing_serving_pulls_neither_tensorflow_nor_kfp() -> None:
    code = "import sys, voltpipe.serving; print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', 'kfp', 'fastapi'}))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_resolve_model_dir(tmp_path, monkeypatch) -> None:
    assert resolve_model_dir(f"file://{tmp_path}") == tmp_path
    assert resolve_model_dir(tmp_path) == tmp_path
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_model_dir(tmp_path / "missing")
    monkeypatch.setitem(sys.modules, "google.cloud.storage", None)  # as if not installed
    with pytest.raises(ConfigError, match="google-cloud-storage"):
        resolve_model_dir("gs://bucket/models/wind/1")


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["auto", "tensorflow"])
@pytest.mark.parametrize("model", ["regression_model", "classification_model"])
def test_predictions_match_keras(model: str, engine: str, request: pytest.FixtureRequest) -> None:
    trained = request.getfixturevalue(model)
    predictor = Predictor.from_dir(trained.model_dir, engine=engine, warmup_batch_sizes=(1,))
    assert predictor.engine == ("numpy+tensorflow" if engine == "auto" else "tensorflow")
    expected = load_model(trained.model_dir).predict_raw(trained.test)
    instances = trained.instances()
    from voltpipe.serving.validation import instances_to_arrays

    online = predictor.predict_arrays(*instances_to_arrays(instances, predictor.plan))
    batch = predictor.predict_table(trained.test, batch_rows=16)  # several batches, TF path
    np.testing.assert_allclose(online, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(batch, expected, rtol=1e-5, atol=1e-5)
    predictions = predictor.predict(instances)
    assert len(predictions) == len(instances)
    if trained.task == "regression":
        np.testing.assert_allclose(predictions, expected, rtol=1e-5, atol=1e-5)
    else:
        classes = predictor.classes
        assert classes == ["curtailed", "iced", "normal"]
        for p, row in zip(predictions, expected, strict=True):
            assert list(p["probabilities"]) == classes
            np.testing.assert_allclose(list(p["probabilities"].values()), row, rtol=1e-5, atol=1e-5)
            assert p["class"] == classes[int(np.argmax(row))]


@pytest.mark.slow
def test_large_batches_take_tensorflow_and_agree(regression_model) -> None:
    predictor = Predictor.from_dir(regression_model.model_dir, warmup_batch_sizes=())
    rows = regression_model.instances() * (NUMPY_MAX_ROWS // 50 + 1)
    assert len(rows) > NUMPY_MAX_ROWS
    big = np.array(predictor.predict(rows))
    small = np.array(predictor.predict(rows[:50]))
    np.testing.assert_allclose(big[:50], small, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_unseen_and_coerced_categories(classification_model) -> None:
    predictor = Predictor.from_dir(classification_model.model_dir, warmup_batch_sizes=())
    base = classification_model.instances(1)[0]
    as_bool, as_text = predictor.predict([{**base, "icing": True}, {**base, "icing": "true"}])
    # Rows of one batch may differ in the last bits (vectorised sums): compare with a tolerance.
    assert as_bool["class"] == as_text["class"]
    assert as_bool["probabilities"] == pytest.approx(as_text["probabilities"], rel=1e-6, abs=1e-9)
    unseen, null, empty = predictor.predict(
        [{**base, "turbine_id": "T99"}, {**base, "turbine_id": None}, {**base, "turbine_id": ""}]
    )
    # all the out-of-vocabulary bucket
    assert unseen["class"] == null["class"] == empty["class"]
    for other in (null, empty):
        assert unseen["probabilities"] == pytest.approx(other["probabilities"], rel=1e-6, abs=1e-9)


@pytest.mark.slow
def test_describe_comes_from_registry_metadata(regression_model, tmp_path) -> None:
    from voltpipe.registry.local import LocalRegistry

    version = LocalRegistry(tmp_path).register(
        "wind-power", regression_model.model_dir, {"task": "regression"}
    )
    info = Predictor.from_dir(version.uri, warmup_batch_sizes=()).describe()
    assert info["model"] == "wind-power" and info["version"] == "1" and info["task"] == "regression"
    assert info["features"] == {
        "wind_speed": "number",
        "temperature": "number",
        "hour": "number",
        "turbine_id": "string",
        "icing": "string",
    }


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["auto", "tensorflow"])
def test_anomaly_scores_match_keras(anomaly_model, engine: str) -> None:
    predictor = Predictor.from_dir(anomaly_model.model_dir, engine=engine, warmup_batch_sizes=(1,))
    # The autoencoder's residual layers have a NumPy replay too.
    assert predictor.engine == ("numpy+tensorflow" if engine == "auto" else "tensorflow")
    loaded = load_model(anomaly_model.model_dir)
    expected = loaded.predict_raw(anomaly_model.test)
    threshold = loaded.meta["anomaly"]["threshold"]
    predictions = predictor.predict(anomaly_model.instances())
    scores = [p["score"] for p in predictions]
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
    assert [p["is_anomaly"] for p in predictions] == (expected > threshold).tolist()
    assert {p["threshold"] for p in predictions} == {threshold}
    flagged = [p["is_anomaly"] for p in predictions]
    assert any(flagged) and not all(flagged)  # the test rows hold 20 % faults
    batch = predictor.predict_table(anomaly_model.test, batch_rows=16)
    np.testing.assert_allclose(batch, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_load_predictor_picks_the_predictor_for_the_task(
    regression_model, anomaly_model, forecasting_model
) -> None:
    from voltpipe.serving import ForecastPredictor, load_predictor

    kinds = {
        m.model_dir: type(load_predictor(m.model_dir, warmup_batch_sizes=()))
        for m in (regression_model, anomaly_model, forecasting_model)
    }
    assert list(kinds.values()) == [Predictor, Predictor, ForecastPredictor]
