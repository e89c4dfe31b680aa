"""Typed BigQuery named query parameters: inferred from YAML values or given explicitly.

A parameter is kept in a JSON-safe typed form, ``{"type": "TIMESTAMP", "value": "2024-11-01T00:00:00"}``,
so it can travel as a KFP pipeline parameter and be bound natively by either warehouse
(``@name`` on BigQuery, ``$name`` on DuckDB). Values are never pasted into SQL text.
"""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

from voltpipe.errors import ConfigError

SCALAR_TYPES = ("STRING", "INT64", "FLOAT64", "BOOL", "DATE", "DATETIME", "TIMESTAMP", "NUMERIC")
_ALIASES = {
    "INTEGER": "INT64",
    "INT": "INT64",
    "FLOAT": "FLOAT64",
    "BOOLEAN": "BOOL",
    "STR": "STRING",
}


def infer_type(value: Any, name: str) -> str:
    """Returns the BigQuery type of a YAML value (arrays as ``ARRAY<T>``)."""
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    if isinstance(value, float):
        return "FLOAT64"
    if isinstance(value, decimal.Decimal):
        return "NUMERIC"
    if isinstance(value, dt.datetime):
        return "TIMESTAMP" if value.tzinfo else "DATETIME"
    if isinstance(value, dt.date):
        return "DATE"
    if isinstance(value, str):
        return "STRING"
    if isinstance(value, list):
        if not value:
            raise ConfigError(
                f"query_parameters.{name}: an empty list has no element type; "
                f"write it as {{type: ARRAY<STRING>, value: []}}"
            )
        kinds = {infer_type(v, name) for v in value}
        if len(kinds) != 1:
            raise ConfigError(
                f"query_parameters.{name}: list elements have mixed types {sorted(kinds)}"
            )
        (kind,) = kinds
        if kind.startswith("ARRAY"):
            raise ConfigError(f"query_parameters.{name}: BigQuery has no arrays of arrays")
        return f"ARRAY<{kind}>"
    if isinstance(value, dict):
        fields = ", ".join(f"{k} {infer_type(v, f'{name}.{k}')}" for k, v in value.items())
        return f"STRUCT<{fields}>"
    raise ConfigError(
        f"query_parameters.{name}: unsupported value {value!r} ({type(value).__name__})"
    )


def _canonical_type(type_: str, name: str) -> str:
    t = type_.strip().upper().replace(" ", "")
    if t.startswith("ARRAY<") and t.endswith(">"):
        return f"ARRAY<{_canonical_type(t[6:-1], name)}>"
    if t.startswith("STRUCT<"):
        return type_.strip().upper()
    t = _ALIASES.get(t, t)
    if t not in SCALAR_TYPES:
        raise ConfigError(
            f"query_parameters.{name}: unknown type {type_!r}; valid: {', '.join(SCALAR_TYPES)}, "
            "ARRAY<T>, STRUCT<...>"
        )
    return t


def _to_json_value(value: Any, type_: str, name: str) -> Any:
    if type_.startswith("ARRAY<"):
        if not isinstance(value, list):
            raise ConfigError(f"query_parameters.{name}: type {type_} needs a list, got {value!r}")
        inner = type_[6:-1]
        return [_to_json_value(v, inner, name) for v in value]
    if type_.startswith("STRUCT<"):
        if not isinstance(value, dict):
            raise ConfigError(f"query_parameters.{name}: type {type_} needs a mapping")
        return {k: _json_scalar(v) for k, v in value.items()}
    try:
        return _coerce_scalar(value, type_, name, to_json=True)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"query_parameters.{name}: value {value!r} is not a valid {type_}"
        ) from exc


def _json_scalar(value: Any) -> Any:
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return value


def _coerce_scalar(value: Any, type_: str, name: str, *, to_json: bool) -> Any:
    if value is None:
        return None
    if type_ == "STRING":
        if not isinstance(value, str):
            raise TypeError(name)
        return value
    if type_ == "BOOL":
        if not isinstance(value, bool):
            raise TypeError(name)
        return value
    if type_ == "INT64":
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise TypeError(name)
        return int(value)
    if type_ == "FLOAT64":
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise TypeError(name)
        return float(value)
    if type_ == "NUMERIC":
        number = decimal.Decimal(str(value))
        return str(number) if to_json else number
    if type_ == "DATE":
        d = value if isinstance(value, dt.date) and not isinstance(value, dt.datetime) else None
        if d is None:
            d = dt.date.fromisoformat(str(value))
        return d.isoformat() if to_json else d
    if type_ in ("DATETIME", "TIMESTAMP"):
        if isinstance(value, dt.datetime):
            t = value
        elif isinstance(value, dt.date):
            t = dt.datetime(value.year, value.month, value.day)
        else:
            t = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        if type_ == "TIMESTAMP" and t.tzinfo is not None:
            t = t.astimezone(dt.UTC).replace(tzinfo=None)
        return t.isoformat() if to_json else t
    raise TypeError(type_)


def normalize_parameters(raw: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Returns ``{name: {"type": T, "value": json_value}}`` for plain or explicitly typed values.

    Raises:
        ConfigError: a value has no BigQuery type, or does not fit its explicit type.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, value in (raw or {}).items():
        if not name.isidentifier():
            raise ConfigError(f"query_parameters.{name}: not a valid parameter name")
        if isinstance(value, dict) and set(value) <= {"type", "value"} and "type" in value:
            type_ = _canonical_type(str(value["type"]), name)
            inner = value.get("value")
        else:
            type_ = infer_type(value, name)
            inner = value
        out[name] = {"type": type_, "value": _to_json_value(inner, type_, name)}
    return out


def python_value(param: dict[str, Any]) -> Any:
    """Returns the Python value of a typed parameter, for binding by a database driver."""
    type_, value = param["type"], param["value"]
    if type_.startswith("ARRAY<"):
        inner = type_[6:-1]
        return [_coerce_scalar(v, inner, "", to_json=False) for v in value]
    if type_.startswith("STRUCT<"):
        return dict(value)
    return _coerce_scalar(value, type_, "", to_json=False)
