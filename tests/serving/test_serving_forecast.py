"""Forecasting over HTTP: "forecast from the last window" equals the in-process forecast."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pytest

from tests.serving.conftest import ForecastModel, iso_rows
from tests.serving.test_serving_server import serving_container
from voltpipe.errors import DataError
from voltpipe.modelling.predict import last_windows, load_model
from voltpipe.serving import ForecastPredictor, Predictor, create_app, load_predictor

META = {
    "task": "forecasting",
    "label": "y",
    "forecasting": {
        "window": 3,
        "horizon": 2,
        "time_column": "ts",
        "group_column": "site",
        "covariates": ["x"],
        "calendar": False,
    },
}


def _series(times: list[Any], site: str = "a") -> pa.Table:
    n = len(times)
    return pa.table(
        {
            "ts": times,
            "site": [site] * n,
            "y": np.arange(n, dtype="float64"),
            "x": np.arange(n, dtype="float64") * 10,
        }
    )


# -- the last window of each series (no TensorFlow) -------------------------------------------------


def test_last_windows_take_each_series_last_rows_in_time_order() -> None:
    table = pa.concat_tables([_series([5, 1, 2, 3, 4], "b"), _series([10, 20, 30, 40], "a")])
    w = last_windows(table, META)
    assert w.groups.tolist() == ["a", "b"]
    # channels: y, x; site b's rows sorted by time: ts 1..5 hold y 1, 2, 3, 4, 0
    assert w.values.shape == (2, 3, 2)
    assert w.values[1, :, 0].tolist() == [3.0, 4.0, 0.0]
    assert w.values[0, :, 1].tolist() == [10.0, 20.0, 30.0]
    assert w.last_times.tolist() == [40, 5] and w.steps.tolist() == [10, 1]
    assert w.forecast_times(2).tolist() == [[50, 60], [6, 7]]


def test_last_windows_check_only_the_rows_they_use() -> None:
    # A gap before the last window does not matter; one inside it does.
    assert last_windows(_series([1, 5, 6, 7]), META).steps.tolist() == [1]
    with pytest.raises(DataError, match=r"site='a' is not evenly spaced.*5 is followed by 7"):
        last_windows(_series([1, 4, 5, 7]), META)
    with pytest.raises(DataError, match="holds time 5 twice"):
        last_windows(_series([4, 5, 5, 6]), META)
    with pytest.raises(DataError, match=r"site='a' has 2 row\(s\).*at least 3"):
        last_windows(_series([1, 2]), META)
    with pytest.raises(DataError, match="label column 'y' holds 1 null, NaN or infinite"):
        last_windows(_series([1, 2, 3]).set_column(2, "y", pa.array([1.0, None, 2.0])), META)


def test_last_windows_without_the_group_column_is_one_series() -> None:
    times = np.datetime64("2024-03-01T00:00", "s") + np.array([0, 15, 45, 30]) * 60
    w = last_windows(_series(list(times)).drop_columns(["site"]), META)
    assert w.groups.tolist() == [""]
    assert str(w.forecast_times(2)[0, 1]) == "2024-03-01T01:15:00"
    gap = np.datetime64("2024-03-01T00:00", "s") + np.array([0, 15, 30, 60]) * 60
    with pytest.raises(DataError, match=r"the history is not .* a step of 30min where"):
        last_windows(_series(list(gap)).drop_columns(["site"]), META)


def test_predictor_refuses_a_forecasting_folder_before_loading(tmp_path: Path) -> None:
    (tmp_path / "voltpipe_model.json").write_text(json.dumps(META))
    with pytest.raises(DataError, match="forecasting model; Predictor serves .* load_predictor"):
        Predictor.from_dir(tmp_path)


# -- the served forecast ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def forecast_predictor(forecasting_model: ForecastModel) -> ForecastPredictor:
    predictor = load_predictor(forecasting_model.model_dir, warmup_batch_sizes=(1,))
    assert isinstance(predictor, ForecastPredictor)
    return predictor


def _instance(history: pa.Table, *, columns: bool = False, **extra: Any) -> dict[str, Any]:
    rows = iso_rows(history.drop_columns(["site"]))
    if columns:
        return {"history": {k: [r[k] for r in rows] for k in rows[0]}, **extra}
    return {"history": rows[::-1], **extra}  # newest first: the server sorts


def _raw_last_window(model: Any, history: pa.Table, future: pa.Table) -> np.ndarray:
    """predict_raw's forecast for the window that ends where `history` ends."""
    raw = model.predict_raw(pa.concat_tables([history, future]))
    return raw[-1]  # the last scored window: its targets are exactly `future`


@pytest.mark.slow
def test_served_forecast_equals_in_process_forecast(
    forecasting_model: ForecastModel, forecast_predictor: ForecastPredictor, asgi_client: Any
) -> None:
    north = forecasting_model.history("north", "2024-01-13T05:00:00")  # exactly one context
    south = forecasting_model.history("south", "2024-01-14T00:00:00", rows=60)  # more rows
    client = asgi_client(create_app(forecast_predictor))
    response = client.post(
        "/predict",
        json={
            "instances": [
                _instance(north, site="north"),
                _instance(south, columns=True, site="south"),
            ]
        },
    )
    assert response.status_code == 200, response.text
    first, second = response.json()["predictions"]

    loaded = load_model(forecasting_model.model_dir)
    in_process = loaded.forecast_last(pa.concat_tables([north, south]))
    assert in_process.groups.tolist() == ["north", "south"]
    np.testing.assert_allclose(first["forecast"], in_process.forecast[0], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(second["forecast"], in_process.forecast[1], rtol=1e-5, atol=1e-4)
    # ... and predict_raw, which scores windows with a known future, agrees on the same window.
    future = forecasting_model.history("north", "2024-01-13T11:00:00", rows=6)
    np.testing.assert_allclose(
        first["forecast"], _raw_last_window(loaded, north, future), rtol=1e-5, atol=1e-4
    )
    assert first["times"] == [f"2024-01-13T{h:02d}:00:00" for h in range(5, 11)]
    assert second["times"] == [f"2024-01-14T{h:02d}:00:00" for h in range(6)]
    assert len(first["forecast"]) == len(second["forecast"]) == 6


@pytest.mark.slow
def test_utc_times_are_answered_in_utc(
    forecasting_model: ForecastModel, forecast_predictor: ForecastPredictor
) -> None:
    north = forecasting_model.history("north", "2024-01-13T05:00:00")
    plain = _instance(north)
    utc = {"history": [{**r, "ts": r["ts"] + "Z"} for r in plain["history"]]}
    shifted = {
        "history": [  # the same instants written at +01:00
            {**r, "ts": (dt.datetime.fromisoformat(r["ts"]) + dt.timedelta(hours=1)).isoformat()}
            for r in plain["history"]
        ]
    }
    for r in shifted["history"]:
        r["ts"] += "+01:00"
    a, b, c = forecast_predictor.predict([plain, utc, shifted])
    assert a["forecast"] == b["forecast"] == c["forecast"]
    assert b["times"][0] == "2024-01-13T05:00:00Z" and c["times"] == b["times"]
    assert a["times"][0] == "2024-01-13T05:00:00"


@pytest.mark.slow
def test_bad_histories_are_400_naming_the_field(
    forecasting_model: ForecastModel, forecast_predictor: ForecastPredictor, asgi_client: Any
) -> None:
    context = forecasting_model.context  # 48: the window 24 and the daily season + 24 steps
    history = forecasting_model.history("north", "2024-01-13T05:00:00", rows=context + 6)
    good = _instance(history)
    rows = good["history"]  # newest first
    gap = [r for r in rows if r["ts"] != "2024-01-13T01:00:00"]
    duplicate = [*rows, rows[3]]
    nan = [dict(r) for r in rows]
    nan[4]["temp_c"] = float("nan")
    cases = [
        (
            [good, {"history": rows[: context - 1]}],
            [f"instances[1].history has {context - 1} row(s)", f"at least {context}"],
        ),
        (
            [{"history": gap}],
            [
                f"instances[0].history is not evenly spaced over its last {context} rows",
                "2024-01-13T00:00:00 is followed by 2024-01-13T02:00:00",
                "a step of 2h where the others are 1h",
            ],
        ),
        ([{"history": duplicate}], ["instances[0].history holds time 2024-01-13T01:00:00 twice"]),
        ([{"history": nan}], ["instances[0].history[4].temp_c", "finite", "NaN"]),
        ([{"rows": rows}], ['instances[0] has no "history"']),
    ]
    client = asgi_client(create_app(forecast_predictor))
    for instances, names in cases:
        body = json.dumps({"instances": instances}).encode()  # NaN as the NaN literal
        response = client.post("/predict", content=body)
        assert response.status_code == 400, response.text
        for name in names:
            assert name in response.json()["error"], response.json()["error"]
    # A gap before the last context rows is not an input: still a forecast.
    old_gap = [r for r in rows if r["ts"] != "2024-01-11T01:00:00"]
    assert client.post("/predict", json={"instances": [{"history": old_gap}]}).status_code == 200


@pytest.mark.slow
def test_describe_states_the_forecasting_formats(
    forecasting_model: ForecastModel, forecast_predictor: ForecastPredictor, asgi_client: Any
) -> None:
    info = asgi_client(create_app(forecast_predictor)).get("/").json()
    assert info["task"] == "forecasting"
    assert (info["window"], info["horizon"], info["time_column"]) == (24, 6, "ts")
    context = forecasting_model.context
    assert info["context"] == context > 24
    assert info["group_column"] == "site" and info["covariates"] == ["temp_c"]
    [instance] = info["request"]["instances"]
    assert set(instance["history"][0]) == {"ts", "load_mw", "temp_c"} and "site" in instance
    assert f"at least {context} rows" in info["request"]["notes"]
    assert set(info["response"]["predictions"][0]) == {"forecast", "times"}
    # the example the predictor warms up with is a valid request
    [prediction] = forecast_predictor.predict([forecast_predictor.example_instance()])
    assert len(prediction["forecast"]) == 6 and np.all(np.isfinite(prediction["forecast"]))


@pytest.mark.slow
@pytest.mark.integration
def test_container_serves_a_forecaster(forecasting_model: ForecastModel) -> None:
    with serving_container(forecasting_model.model_dir, "load") as url:
        histories = [
            forecasting_model.history("north", "2024-01-13T05:00:00"),
            forecasting_model.history("south", "2024-01-12T17:00:00", rows=60),
        ]
        response = httpx.post(
            url + "/v1/models/load:predict",
            json={"instances": [_instance(h) for h in histories]},
        )
        assert response.status_code == 200, response.text
        served = [p["forecast"] for p in response.json()["predictions"]]
        in_process = load_model(forecasting_model.model_dir).forecast_last(
            pa.concat_tables(histories)
        )
        np.testing.assert_allclose(served, in_process.forecast, rtol=1e-5, atol=1e-4)
        short = httpx.post(
            url + "/v1/models/load:predict",
            json={"instances": [_instance(histories[0].slice(0, 10))]},
        )
        context = forecasting_model.context
        assert short.status_code == 400 and f"at least {context}" in short.json()["error"]
        assert httpx.get(url + "/").json()["task"] == "forecasting"


# -- gbdt, statistical and auto forecasters: served without TensorFlow -----------------------------

_SERVE_WITHOUT_TF = """
import json, sys
import pyarrow.parquet as pq
from voltpipe.deploy.local import smoke_test
from voltpipe.modelling.predict import load_model
from voltpipe.serving import load_predictor

model_dir, history_path = sys.argv[1], sys.argv[2]
history = pq.read_table(history_path)
predictor = load_predictor(model_dir, warmup_batch_sizes=(1,))
rows = [{k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in r.items()}
        for r in history.drop_columns(["site"]).to_pylist()]
served = predictor.predict([{"history": rows}])
smoke_test(model_dir, [predictor.example_instance()])
last = load_model(model_dir).forecast_last(history)
print(json.dumps({
    "served": served[0], "last": last.forecast[0].tolist(), "engine": predictor.engine,
    "context": predictor.describe()["context"], "tensorflow": "tensorflow" in sys.modules,
}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("family", ["gbdt", "statistical", "auto"])
def test_gbdt_statistical_and_auto_forecasters_serve_without_tensorflow(
    family: str, tmp_path: Path
) -> None:
    import subprocess
    import sys

    import pyarrow.parquet as pq

    from tests.modelling.synthetic import demand_series, time_splits
    from tests.serving.conftest import FORECAST_TASK
    from voltpipe.modelling.train import train_model

    series = demand_series(days=21, seed=5)
    train, valid, test = time_splits(series, ("2024-01-15", "2024-01-19"))
    for split, table in (("train", train), ("valid", valid)):
        (tmp_path / split).mkdir()
        pq.write_table(table, tmp_path / split / "part-0.parquet")
    result = train_model(
        tmp_path / "train",
        tmp_path / "valid",
        tmp_path / "model",
        label="load_mw",
        task="forecasting",
        model_params={"family": family},
        task_params=FORECAST_TASK,
    )
    context = result.meta["forecasting"]["context"]
    # the valid and test rows: the context (four daily cycles) is longer than the test split
    recent = pa.concat_tables([valid, test])
    north = recent.filter(pa.compute.equal(recent.column("site"), "north")).sort_by("ts")
    pq.write_table(north.slice(0, context + 5), tmp_path / "history.parquet")
    run = subprocess.run(
        [sys.executable, "-c", _SERVE_WITHOUT_TF, str(tmp_path / "model"), str(tmp_path / "history.parquet")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["tensorflow"] is False and out["engine"] == "numpy"
    assert out["context"] == context
    np.testing.assert_allclose(out["served"]["forecast"], out["last"], rtol=1e-5)
    expected = north.column("ts").to_numpy()[context + 5 : context + 11]
    assert out["served"]["times"] == [str(t) for t in expected.astype("datetime64[s]")]
    predictor = load_predictor(tmp_path / "model", warmup_batch_sizes=(1,))
    short = {"history": iso_rows(north.slice(0, context - 1).drop_columns(["site"]))}
    with pytest.raises(Exception, match=f"at least {context}"):
        predictor.predict([short])
