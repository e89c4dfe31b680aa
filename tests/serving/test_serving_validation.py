"""Request checks: JSON body -> instances -> packed model inputs, or a 4xx naming the field."""

from __future__ import annotations

import json

import numpy as np
import pytest

from voltpipe.modelling.features import FeaturePlan
from voltpipe.serving.validation import (
    RequestError,
    instances_to_arrays,
    instances_to_columns,
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
