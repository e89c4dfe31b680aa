"""Every time type a warehouse gives works end to end: DATE (date32), DATETIME (timestamp
without a zone) and TIMESTAMP with a zone, in training, evaluation, ``forecast_last``, serving
and batch forecasts. The rows come from DuckDB, which types them as a warehouse does."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tests.modelling.synthetic import write_split
from voltpipe.modelling import forecasting as fc

ROWS = 260  # per series: 160 train, 60 valid (a daily season's context: 48), 40 test
WINDOW, HORIZON = 14, 3
# time expression, period of the generated cycle (in steps), step as a numpy timedelta
TIME_TYPES = {
    "date": ("DATE '2023-01-01' + i::INTEGER", 7, np.timedelta64(1, "D")),
    "datetime": (
        "TIMESTAMP '2023-01-01 00:00:00' + i * INTERVAL 1 HOUR",
        24,
        np.timedelta64(1, "h"),
    ),
    "timestamptz": (
        "TIMESTAMPTZ '2023-01-01 00:00:00+00' + i * INTERVAL 1 HOUR",
        24,
        np.timedelta64(1, "h"),
    ),
}


def _rows(kind: str) -> pa.Table:
    expr, period, _ = TIME_TYPES[kind]
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        return con.sql(
            f"SELECT {expr} AS t, site, "
            f"50 + 10 * sin(2 * pi() * i / {period}) + 5 * k + 0.3 * sin(i * 12.9898) AS y "
            f"FROM range({ROWS}) r(i), (VALUES ('a', 0), ('b', 1)) s(site, k) ORDER BY site, i"
        ).to_arrow_table()
    finally:
        con.close()


def test_calendar_of_every_time_type() -> None:
    for kind in TIME_TYPES:
        table = _rows(kind)
        cal = fc._calendar(table.column("t"))
        assert cal is not None and cal.shape == (table.num_rows, 4), kind
        # 2023-01-01 was a Sunday (Monday = 0): day-of-week 6 at midnight.
        np.testing.assert_allclose(
            cal[0], [0, 1, np.sin(2 * np.pi * 6 / 7), np.cos(2 * np.pi * 6 / 7)], atol=1e-9
        )
    hourly = fc._calendar(_rows("timestamptz").column("t"))
    np.testing.assert_allclose(
        hourly[13, :2], [np.sin(2 * np.pi * 13 / 24), np.cos(2 * np.pi * 13 / 24)], atol=1e-9
    )
    # Sub-second timestamps no longer fail a cast to seconds.
    ms = pa.chunked_array([pa.array([1_500, 3_601_500], pa.timestamp("ms"))])
    np.testing.assert_allclose(fc.epoch_seconds(ms), [1.5, 3601.5])
    assert fc._calendar(pa.chunked_array([pa.array([1, 2])])) is None


@dataclasses.dataclass
class Trained:
    kind: str
    rows: pa.Table
    splits: dict[str, Path]
    model_dir: Path


FAMILIES = ("mlp", "gbdt", "statistical")  # a Keras window model and the feature-path ones


@pytest.fixture(
    scope="module",
    params=[(kind, family) for kind in TIME_TYPES for family in FAMILIES],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    from voltpipe.modelling.train import train_model

    kind, family = request.param
    rows = _rows(kind)
    root = tmp_path_factory.mktemp(f"{kind}-{family}")
    site = rows["site"].to_numpy(zero_copy_only=False)
    pos = np.r_[np.arange(ROWS), np.arange(ROWS)]
    assert (site[:ROWS] == "a").all()
    cuts = {"train": pos < 160, "valid": (pos >= 160) & (pos < 220), "test": pos >= 220}
    splits = {s: write_split(root / s, rows.filter(pa.array(m))) for s, m in cuts.items()}
    train_model(
        splits["train"],
        splits["valid"],
        root / "model",
        label="y",
        task="forecasting",
        model_params={"family": family, "hidden_units": [8]},
        training_params={"epochs": 1, "batch_size": 64, "steps_per_execution": 1},
        task_params={
            "time_column": "t",
            "forecasting": {"window": WINDOW, "horizon": HORIZON, "group_column": "site"},
        },
    )
    return Trained(kind, rows, splits, root / "model")


@pytest.mark.slow
def test_train_and_evaluate_on_every_time_type(trained: Trained) -> None:
    from voltpipe.evaluation.evaluate import score_model
    from voltpipe.modelling.predict import load_model

    meta = load_model(trained.model_dir).meta["forecasting"]
    assert meta["calendar"] is True and meta["time_column"] == "t"
    score = score_model(
        trained.model_dir, trained.splits["test"], valid_path=trained.splits["valid"]
    )
    assert score.details["windows"] == 2 * (40 - HORIZON + 1)  # every test row a target
    assert score.details["short_history_series"] == 0
    assert np.isfinite(score.metrics["mae"]) and score.metrics["mae_persistence"] > 0


def _history(trained: Trained, site: str, end: int) -> pa.Table:
    """`site`'s rows 0..end-1 (the model needs the last context of them)."""
    mine = trained.rows.filter(pc.equal(trained.rows["site"], site))
    return mine.slice(0, end)


@pytest.mark.slow
def test_forecast_last_serving_and_batch_agree_on_every_time_type(
    trained: Trained, tmp_path: Path
) -> None:
    from voltpipe.modelling.predict import load_model
    from voltpipe.serving.batch import predict_batch
    from voltpipe.serving.forecast import ForecastPredictor

    _, _, step = TIME_TYPES[trained.kind]
    loaded = load_model(trained.model_dir)
    need = fc.context_length(loaded.meta["forecasting"])
    history = pa.concat_tables([_history(trained, s, 200) for s in ("a", "b")])
    last = loaded.forecast_last(history)
    assert last.forecast.shape == (2, HORIZON) and np.isfinite(last.forecast).all()
    end = history["t"].to_numpy()[199]  # numpy: dates as datetime64[D], timestamps in UTC
    np.testing.assert_array_equal(last.times[0], end + step * np.arange(1, HORIZON + 1))

    # Serving: one request per series with ISO times, as a client sends them.
    predictor = ForecastPredictor.from_dir(trained.model_dir, warmup_batch_sizes=())
    a = _history(trained, "a", 200).slice(200 - need)
    rows = [{"t": r["t"].isoformat(), "y": r["y"]} for r in a.select(["t", "y"]).to_pylist()]
    (served,) = predictor.predict([{"history": rows, "site": "a"}])
    np.testing.assert_allclose(served["forecast"], last.forecast[0], rtol=1e-4, atol=1e-3)
    first = served["times"][0]
    if trained.kind == "date":
        assert first == str(end + step)  # a date answers in dates
    elif trained.kind == "timestamptz":
        assert first.endswith("Z") and first.startswith(str(end + step)[:19])
    else:
        assert first == str((end + step).astype("datetime64[s]"))

    # Batch: the query's rows in a DuckDB warehouse, forecasts written with the same time type.
    path = tmp_path / "wh.duckdb"
    con = duckdb.connect(str(path))
    con.register("rows", trained.rows)
    con.execute("SET TimeZone = 'UTC'; CREATE SCHEMA src; CREATE TABLE src.s AS SELECT * FROM rows")
    con.close()
    summary = predict_batch(
        f"duckdb:///{path}",
        "SELECT * FROM src.s QUALIFY row_number() OVER (PARTITION BY site ORDER BY t) <= 200",
        {},
        trained.model_dir,
        "forecasts.s",
        mode="replace",
    )
    assert summary["rows"] == 2 * HORIZON and summary["series"] == 2
    con = duckdb.connect(str(path), read_only=True)
    out = con.sql("SELECT * FROM forecasts.s ORDER BY site, step").to_arrow_table()
    con.close()
    t = out.schema.field("t").type
    if trained.kind == "date":
        assert t == pa.date32()
    elif trained.kind == "timestamptz":
        assert pa.types.is_timestamp(t) and t.tz is not None
    else:
        assert t == pa.timestamp("us")
    np.testing.assert_array_equal(
        out["t"].to_numpy()[:HORIZON], last.times[0].astype(out["t"].to_numpy().dtype)
    )
    np.testing.assert_allclose(
        out["prediction"].to_numpy(), last.forecast.reshape(-1), rtol=1e-5, atol=1e-4
    )
