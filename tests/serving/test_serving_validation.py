"""Request checks: JSON body -> instances -> packed model inputs, or a 4xx naming the field."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from voltpipe.modelling.features import FeaturePlan
from voltpipe.serving.validation import (
    HistorySpec,
    RequestError,
    instances_to_arrays,
    instances_to_columns,
    parse_history,
    parse_instances,
)

PLAN = FeaturePlan(
    numeric={
        "wind_speed": {"mean": 10.0, "variance": 4.0},
        "hour": {"mean": 12.0, "variance": 40.0},
    },
    categorical={"turbine_id": ["T01", "T02"], "icing": ["false", "true"]},
    skipped={},
)
GOOD = {"wind_speed": 7.5, "hour": 3, "turbine_id": "T01", "icing": False}


def _error(body: bytes | str, max_instances: int = 10) -> RequestError:
    raw = body.encode() if isinstance(body, str) else body
    with pytest.raises(RequestError) as info:
        instances_to_arrays(parse_instances(raw, max_instances=max_instances), PLAN)
    return info.value


def test_packs_numbers_and_strings_in_plan_order() -> None:
    xn, xc = instances_to_arrays(
        [GOOD, {**GOOD, "wind_speed": 1, "turbine_id": "T02", "icing": True}], PLAN
    )
    assert xn.dtype == np.float32 and xn.tolist() == [[7.5, 3.0], [1.0, 3.0]]
    assert xc.dtype == object and xc.tolist() == [["T01", "false"], ["T02", "true"]]


def test_columns_match_model_inputs_layout() -> None:
    cols = instances_to_columns([GOOD], PLAN)
    assert list(cols) == ["wind_speed", "hour", "turbine_id", "icing"]
    assert all(c.shape == (1, 1) for c in cols.values())


def test_single_numeric_and_single_categorical_feature() -> None:
    plan = FeaturePlan(
        numeric={"x": {"mean": 0.0, "variance": 1.0}}, categorical={"c": ["a"]}, skipped={}
    )
    xn, xc = instances_to_arrays([{"x": 1, "c": "a"}, {"x": 2.5, "c": "b"}], plan)
    assert xn.tolist() == [[1.0], [2.5]] and xc.tolist() == [["a"], ["b"]]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3, "3"), (3.0, "3"), (2.5, "2.5"), (True, "true"), (False, "false"), (None, "")],
)
def test_categorical_values_become_training_strings(value: object, expected: str) -> None:
    _, xc = instances_to_arrays([{**GOOD, "turbine_id": value}], PLAN)
    assert xc[0, 0] == expected


def test_extra_fields_are_ignored() -> None:
    xn, _ = instances_to_arrays([{**GOOD, "note": [1, {"x": None}], "power_kw": "n/a"}], PLAN)
    assert xn.shape == (1, 2)


@pytest.mark.parametrize(
    ("body", "status", "names"),
    [
        ("not json", 400, ["not valid JSON"]),
        ("", 400, ["not valid JSON"]),
        (b"\xff\xfe", 400, ["not valid JSON"]),
        ("[1, 2]", 400, ["JSON object", "a list"]),
        ('{"rows": []}', 400, ['"instances"']),
        ('{"instances": {"wind_speed": 1}}', 400, ['"instances"', "an object"]),
        ('{"instances": []}', 400, ['"instances" is empty']),
        ('{"instances": [1]}', 400, ["instances[0]", "a number"]),
        (json.dumps({"instances": [GOOD, "x"]}), 400, ["instances[1]", "a string"]),
        (
            json.dumps({"instances": [GOOD, {k: v for k, v in GOOD.items() if k != "hour"}]}),
            400,
            ["instances[1]", "'hour'"],
        ),
        (
            json.dumps({"instances": [{k: v for k, v in GOOD.items() if k != "icing"}]}),
            400,
            ["instances[0]", "'icing'"],
        ),
        (
            json.dumps({"instances": [GOOD, {**GOOD, "wind_speed": "7.5"}]}),
            400,
            ["instances[1].wind_speed", "must be a number", '"7.5"'],
        ),
        (
            json.dumps({"instances": [{**GOOD, "hour": True}]}),
            400,
            ["instances[0].hour", "a boolean"],
        ),
        (json.dumps({"instances": [{**GOOD, "hour": None}]}), 400, ["instances[0].hour", "null"]),
        (json.dumps({"instances": [{**GOOD, "hour": [3]}]}), 400, ["instances[0].hour", "a list"]),
        (
            '{"instances": [{"wind_speed": NaN, "hour": 1, "turbine_id": "T01", "icing": false}]}',
            400,
            ["instances[0].wind_speed", "finite", "NaN"],
        ),
        (
            '{"instances": [{"wind_speed": 1, "hour": -Infinity, "turbine_id": "T01", "icing": false}]}',
            400,
            ["instances[0].hour", "finite"],
        ),
        (
            '{"instances": [{"wind_speed": 1e400, "hour": 1, "turbine_id": "T01", "icing": false}]}',
            400,
            ["instances[0].wind_speed", "finite"],
        ),
        (
            '{"instances": [{"wind_speed": 1e39, "hour": 1, "turbine_id": "T01", "icing": false}]}',
            400,
            ["instances[0].wind_speed", "float32"],
        ),
        (
            '{"instances": [{"wind_speed": 1'
            + "0" * 400
            + ', "hour": 1, "turbine_id": "T01", "icing": false}]}',
            400,
            ["instances[0].wind_speed", "finite"],
        ),
        (
            json.dumps({"instances": [{**GOOD, "turbine_id": {"id": 1}}]}),
            400,
            ["instances[0].turbine_id", "string"],
        ),
        (
            json.dumps({"instances": [GOOD, {**GOOD, "icing": float("nan")}]}),
            400,
            ["instances[1].icing"],
        ),
        (json.dumps({"instances": [GOOD] * 11}), 413, ["11 instances", "limit of 10"]),
    ],
)
def test_bad_requests_name_the_field(body: str | bytes, status: int, names: list[str]) -> None:
    err = _error(body)
    assert err.status == status
    for name in names:
        assert name in err.message, err.message


def test_request_error_is_a_value_error() -> None:
    assert issubclass(RequestError, ValueError)


# -- forecasting histories ---------------------------------------------------------------------------

SPEC = HistorySpec(
    time_column="ts",
    label="load_mw",
    covariates=("temp_c",),
    group_column="site",
    window=3,
    horizon=2,
    calendar=True,
)
ROWS = [
    {"ts": "2024-01-01T02:00:00", "load_mw": 12.5, "temp_c": 3},
    {"ts": "2024-01-01T00:00:00", "load_mw": 10.0, "temp_c": 1.5, "site": "north", "x": [1]},
    {"ts": "2024-01-01T01:00:00", "load_mw": 11, "temp_c": 2.0},
]


def test_history_rows_and_columns_give_the_same_table() -> None:
    rows = parse_history({"history": ROWS, "site": "north"}, 0, SPEC)
    columns = parse_history(
        {"history": {name: [r[name] for r in ROWS] for name in ("ts", "load_mw", "temp_c")}},
        0,
        SPEC,
    )
    assert rows.table.equals(columns.table)
    assert rows.table.column_names == ["ts", "load_mw", "temp_c"]  # extra fields dropped
    assert str(rows.table.schema.field("ts").type) == "timestamp[us]"
    assert rows.table.column("load_mw").to_pylist() == [12.5, 10.0, 11.0]  # sorted later
    assert rows.time_kind == "local" and rows.group == "north" and columns.group is None


def test_history_times_utc_dates_and_numbers() -> None:
    utc = parse_history(
        {"history": [{**r, "ts": r["ts"].replace("T0", "T1") + "+02:00"} for r in ROWS]}, 0, SPEC
    )
    assert utc.time_kind == "utc"
    assert str(utc.table.column("ts")[0].as_py()) == "2024-01-01 10:00:00"  # 12:00 at +02:00
    dates = parse_history(
        {"history": [{**r, "ts": f"2024-01-0{k + 1}"} for k, r in enumerate(ROWS)]}, 0, SPEC
    )
    assert dates.time_kind == "date"
    plain = dataclasses.replace(SPEC, calendar=False)
    numbers = parse_history({"history": [{**r, "ts": k} for k, r in enumerate(ROWS)]}, 0, plain)
    assert numbers.time_kind == "number" and numbers.table.column("ts").to_pylist() == [0, 1, 2]


def _history_error(instance: dict, spec: HistorySpec = SPEC) -> str:
    with pytest.raises(RequestError) as info:
        parse_history(instance, 2, spec)
    assert info.value.status == 400
    return info.value.message


@pytest.mark.parametrize(
    ("instance", "names"),
    [
        ({"rows": ROWS}, ['instances[2] has no "history"', '"ts"', "last 3 rows"]),
        ({"history": "x"}, ["instances[2].history", "list of rows", "a string"]),
        ({"history": [*ROWS, 1]}, ["instances[2].history[3]", "an object", "a number"]),
        ({"history": ROWS[:2]}, ["instances[2].history has 2 row(s)", "at least 3"]),
        ({"history": {"ts": [], "load_mw": [], "temp_c": []}}, ["has 0 row(s)", "at least 3"]),
        (
            {"history": [ROWS[0], {"ts": "2024-01-01T03:00:00", "load_mw": 1}, ROWS[2]]},
            ["instances[2].history[1] is missing 'temp_c'"],
        ),
        (
            {"history": [ROWS[0], ROWS[1], {**ROWS[2], "load_mw": None}]},
            ["instances[2].history[2].load_mw", "must be a number", "null"],
        ),
        (
            {"history": [ROWS[0], {**ROWS[1], "temp_c": float("nan")}, ROWS[2]]},
            ["instances[2].history[1].temp_c", "finite", "NaN"],
        ),
        (
            {"history": [ROWS[0], ROWS[1], {**ROWS[2], "load_mw": "11"}]},
            ["instances[2].history[2].load_mw", "must be a number", '"11"'],
        ),
        (
            {"history": [ROWS[0], {**ROWS[1], "ts": "yesterday"}, ROWS[2]]},
            ["instances[2].history[1].ts", "ISO 8601", '"yesterday"'],
        ),
        (
            {"history": [ROWS[0], {**ROWS[1], "ts": None}, ROWS[2]]},
            ["instances[2].history[1].ts", "ISO 8601", "null"],
        ),
        (
            {"history": [{**r, "ts": k} for k, r in enumerate(ROWS)]},
            ["instances[2].history[0].ts", "ISO 8601", "hour and weekday", "a number 0"],
        ),
        (
            {"history": [ROWS[0], {**ROWS[1], "ts": "2024-01-01T00:00:00Z"}, ROWS[2]]},
            ["instances[2].history[1].ts", "UTC offset"],
        ),
        (
            {"history": {"ts": [r["ts"] for r in ROWS], "load_mw": [1.0, 2.0]}},
            ["instances[2].history.load_mw has 2 values", "history.ts has 3"],
        ),
        (
            {"history": {"ts": [r["ts"] for r in ROWS], "load_mw": [1.0, 2.0, 3.0]}},
            ["instances[2].history is missing column 'temp_c'"],
        ),
        (
            {"history": {"ts": [r["ts"] for r in ROWS], "load_mw": [1, 2, 3], "temp_c": 4}},
            ["instances[2].history.temp_c must be a list", "a number"],
        ),
        (
            {
                "history": {
                    "ts": [r["ts"] for r in ROWS],
                    "load_mw": [1, float("inf"), 3],
                    "temp_c": [1, 2, 3],
                }
            },
            ["instances[2].history.load_mw[1]", "finite"],
        ),
        (
            {"history": [ROWS[0], {**ROWS[1], "site": "south"}, ROWS[2]], "site": "north"},
            ["instances[2] holds rows of 2 series", "'north', 'south'", "one series per instance"],
        ),
        ({"history": ROWS, "site": {"id": 1}}, ["instances[2].site must be a string"]),
    ],
)
def test_bad_histories_name_the_field(instance: dict, names: list[str]) -> None:
    message = _history_error(instance)
    for name in names:
        assert name in message, message


def test_numeric_times_must_not_mix_with_strings() -> None:
    plain = dataclasses.replace(SPEC, calendar=False)
    rows = [{**r, "ts": k} for k, r in enumerate(ROWS)]
    rows[1]["ts"] = "2024-01-01T00:00:00"
    message = _history_error({"history": rows}, plain)
    assert "instances[2].history[1].ts must be a number, as the first time is" in message


def test_a_history_needs_the_models_context_not_only_its_window() -> None:
    meta = {
        "label": "load_mw",
        "forecasting": {
            "time_column": "ts",
            "covariates": ["temp_c"],
            "group_column": "site",
            "window": 2,
            "context": 3,  # e.g. a season of 3 steps: its seasonal lags need a full cycle
            "horizon": 2,
            "calendar": True,
        },
    }
    spec = HistorySpec.from_meta(meta)
    assert (spec.window, spec.history_rows) == (2, 3)
    message = _history_error({"history": ROWS[:2]}, spec)
    assert "has 2 row(s); the model forecasts from the last 3 (the model's context" in message
    assert "send at least 3" in message
    assert parse_history({"history": ROWS}, 0, spec).table.num_rows == 3
    # A model saved before `context` existed needs its window.
    del meta["forecasting"]["context"]
    assert HistorySpec.from_meta(meta).history_rows == 2
