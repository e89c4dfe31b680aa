"""Typed query parameters: inference from YAML values and explicit types."""

from __future__ import annotations

import datetime as dt

import pytest

from voltpipe.data.params import normalize_parameters, python_value
from voltpipe.errors import ConfigError


def test_types_are_inferred_from_yaml_values() -> None:
    typed = normalize_parameters(
        {
            "s": "x",
            "i": 3,
            "f": 1.5,
            "b": True,
            "d": dt.date(2024, 1, 2),
            "t": dt.datetime(2024, 1, 2, 3, 4, 5),
            "ids": ["WT01", "WT02"],
            "st": {"a": 1, "b": "z"},
        }
    )
    assert {k: v["type"] for k, v in typed.items()} == {
        "s": "STRING",
        "i": "INT64",
        "f": "FLOAT64",
        "b": "BOOL",
        "d": "DATE",
        "t": "DATETIME",
        "ids": "ARRAY<STRING>",
        "st": "STRUCT<a INT64, b STRING>",
    }
    assert typed["t"]["value"] == "2024-01-02T03:04:05"


def test_explicit_type_override_and_python_values() -> None:
    typed = normalize_parameters(
        {
            "cutoff": {"type": "timestamp", "value": "2024-11-01"},
            "n": {"type": "INTEGER", "value": "7"},
        }
    )
    assert typed["cutoff"] == {"type": "TIMESTAMP", "value": "2024-11-01T00:00:00"}
    assert python_value(typed["cutoff"]) == dt.datetime(2024, 11, 1)
    assert python_value(typed["n"]) == 7


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"x": {"type": "INT64", "value": "seven"}},
            "query_parameters.x: value 'seven' is not a valid INT64",
        ),
        ({"x": {"type": "GEOGRAPHY", "value": "p"}}, "unknown type 'GEOGRAPHY'"),
        ({"x": [1, "a"]}, "mixed types"),
        ({"x": []}, "empty list"),
        ({"bad-name": 1}, "not a valid parameter name"),
    ],
)
def test_bad_parameters_name_the_culprit(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        normalize_parameters(raw)
