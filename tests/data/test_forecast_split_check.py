"""The validate step's forecasting check: every split long enough for window + horizon, before
any training, with a message naming the keys to change."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from kfp import dsl

from voltpipe.components import validate
from voltpipe.data.validation import check_forecast_splits, forecast_context, series_lengths


def _series(n: int, sites: tuple[str, ...] = ("a", "b"), start: int = 0) -> pa.Table:
    hours = np.arange(start, start + n)
    ts = np.datetime64("2024-01-01T00:00:00", "s") + hours * np.timedelta64(3600, "s")
    return pa.table(
        {
            "ts": pa.array(np.tile(ts, len(sites))),
            "site": [s for s in sites for _ in range(n)],
            "load": np.sin(np.tile(hours, len(sites)) / 4.0),
        }
    )


def _write(folder: Path, table: pa.Table) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / "part-00000.parquet")
    return folder


def test_series_lengths_by_group(tmp_path: Path) -> None:
    table = pa.concat_tables([_series(30, ("a",)), _series(12, ("b",))])
    path = _write(tmp_path / "d", table)
    assert series_lengths(path, "site") == {"series": 2, "longest": 30, "shortest": 12}
    assert series_lengths(path, None) == {"series": 1, "longest": 42, "shortest": 42}


def _lengths(train: int, valid: int, test: int) -> dict[str, dict[str, int]]:
    return {
        name: {"series": 1 if n else 0, "longest": n, "shortest": n}
        for name, n in (("train", train), ("valid", valid), ("test", test))
    }


def test_long_enough_splits_pass() -> None:
    f = {"window": 24, "horizon": 6}
    assert check_forecast_splits(_lengths(500, 30, 6), forecasting=f).ok
    # The test split only needs the horizon: its forecasts' history comes from valid.
    assert check_forecast_splits(_lengths(500, 30, 29), forecasting=f).errors == []


@pytest.mark.parametrize(
    ("lengths", "forecasting", "message"),
    [
        (
            (20, 40, 40),
            {"window": 24, "horizon": 6},
            r"train split's longest series has 20 rows, fewer than forecasting.window \+ "
            r"forecasting.horizon = 24 \+ 6; lower forecasting.window or forecasting.horizon, "
            r"or give the train split more rows \(split.fractions",
        ),
        (
            (500, 25, 40),
            {"window": 24, "horizon": 6, "group_column": "site"},
            r"valid split's longest series \(by site\) has 25 rows, fewer than "
            r"forecasting.window \+ forecasting.horizon = 24 \+ 6",
        ),
        (
            (500, 40, 4),
            {"window": 24, "horizon": 6},
            r"test split's longest series has 4 rows, fewer than forecasting.horizon = 6",
        ),
        (
            (500, 0, 20),
            {"window": 24, "horizon": 6},
            r"valid split is empty, so its first rows are the forecasts' history",
        ),
        (
            (500, 100, 40),
            {"window": 24, "horizon": 1, "seasons": [24, 168]},
            r"valid split's .* 100 rows, fewer than the 168 past rows \(context\)",
        ),
    ],
)
def test_short_splits_fail_naming_the_keys(
    lengths: tuple[int, int, int], forecasting: dict, message: str
) -> None:
    result = check_forecast_splits(_lengths(*lengths), forecasting=forecasting)
    assert len(result.errors) == 1, result.errors
    assert re.search(message, result.errors[0]), result.errors[0]


def test_context_is_the_window_or_the_longest_configured_season() -> None:
    assert forecast_context({"window": 48}) == 48
    assert forecast_context({"window": 48, "season": 168}) == 168
    assert forecast_context({"window": 48, "seasons": [24, 336]}) == 336
    assert forecast_context({"window": 400, "seasons": [24, 336]}) == 400


def test_missing_time_or_group_column_is_named() -> None:
    result = check_forecast_splits(
        _lengths(500, 40, 40),
        forecasting={"window": 24, "horizon": 6, "group_column": "turbine"},
        columns=["ts", "load"],
        time_column="time",
    )
    assert result.errors == [
        "time_column 'time' is not in the data (columns: ts, load)",
        "forecasting.group_column 'turbine' is not in the data (columns: ts, load)",
    ]


def _art(cls: type, root: Path, name: str) -> dsl.Artifact:
    return cls(name=name, uri=str(root / name), metadata={})


def test_validate_step_fails_on_a_window_longer_than_the_valid_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    splits = {}
    for name, (n, start) in {"train": (300, 0), "valid": (40, 300), "test": (40, 340)}.items():
        splits[name] = _art(dsl.Dataset, tmp_path / "data", name)
        _write(Path(splits[name].path), _series(n, start=start))
    outs = {
        "statistics": _art(dsl.Artifact, tmp_path, "stats"),
        "schema": _art(dsl.Artifact, tmp_path, "schema"),
        "report": _art(dsl.Markdown, tmp_path, "report"),
    }
    task_params = {
        "time_column": "ts",
        "forecasting": {"window": 24, "horizon": 6, "group_column": "site"},
    }
    validate.python_func(
        label="load", task="forecasting", task_params=task_params, **splits, **outs
    )
    assert "**Verdict:** passed" in Path(outs["report"].path).read_text()

    task_params["forecasting"]["window"] = 48
    with pytest.raises(SystemExit):
        validate.python_func(
            label="load", task="forecasting", task_params=task_params, **splits, **outs
        )
    err = capsys.readouterr().err
    assert "valid split's longest series (by site) has 40 rows" in err
    assert "forecasting.window + forecasting.horizon = 48 + 6" in err
    report = Path(outs["report"].path).read_text()
    assert "**Verdict:** FAILED" in report and "split.fractions" in report
    stats = json.loads(Path(outs["statistics"].path).read_text())
    assert stats["valid"]["rows"] == 80
