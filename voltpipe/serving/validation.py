"""Request checks: a JSON body of ``{"instances": [...]}`` to model inputs, or a 4xx.

Row models take one object of feature values per instance (`instances_to_arrays`);
forecasting models one series' recent history per instance (`parse_history`).

Every check names the field (and the instance index) at fault. The happy path does one pass
per feature column at C speed (``map``/``set``/numpy); the per-value Python loops only run to
find the culprit once a check has failed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np

from voltpipe.modelling.features import FeaturePlan


class RequestError(ValueError):
    """A client mistake: answered with `status` and ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_NUMBER_TYPES = frozenset({int, float})


def parse_instances(body: bytes, *, max_instances: int) -> list[dict[str, Any]]:
    """Parses a prediction request body into its list of instances.

    Python's json accepts the non-standard ``NaN``/``Infinity`` literals; they parse to floats
    here and are rejected per feature by `instances_to_columns`, which can name the field.

    Raises:
        RequestError: 400 for a body that is not a JSON object with a non-empty ``instances``
            list of objects, 413 for more than `max_instances` instances.
    """
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"request body is not valid JSON: {exc}") from None
    if type(payload) is not dict:
        raise RequestError(
            400,
            f'request body must be a JSON object {{"instances": [...]}}, got {_json_type(payload)}',
        )
    if "instances" not in payload:
        raise RequestError(
            400, 'request body has no "instances" field; expected {"instances": [{...}, ...]}'
        )
    instances = payload["instances"]
    if type(instances) is not list:
        raise RequestError(
            400, f'"instances" must be a list of objects, got {_json_type(instances)}'
        )
    if not instances:
        raise RequestError(400, '"instances" is empty; send one or more objects')
    if len(instances) > max_instances:
        raise RequestError(
            413,
            f'"instances" holds {len(instances)} instances, more than the limit of {max_instances}; split the request',
        )
    if set(map(type, instances)) != {dict}:
        i = next(i for i, inst in enumerate(instances) if type(inst) is not dict)
        raise RequestError(
            400,
            f"instances[{i}] must be an object of feature values, got {_json_type(instances[i])}",
        )
    return instances


def instances_to_arrays(
    instances: list[dict[str, Any]], plan: FeaturePlan
) -> tuple[np.ndarray, np.ndarray]:
    """The model's inputs packed as two arrays: (n, numeric) float32 and (n, categorical) str.

    Columns follow the plan's order. Numeric features must be JSON numbers (not booleans),
    finite in float32. Categorical ones take strings; numbers and booleans become the strings
    the training data would have held (``true``/``false``, ``3`` for 3.0), and null becomes
    ``""`` (the out-of-vocabulary bucket) as in batch prediction. Other fields are ignored.

    Raises:
        RequestError: 400 naming the feature and the instance index of a missing or bad value.
    """
    n = len(instances)
    numeric, categorical = list(plan.numeric), list(plan.categorical)
    xn = np.empty((n, len(numeric)), dtype=np.float32)
    if numeric:
        rows = _rows(instances, numeric)
        flat = rows if len(numeric) == 1 else list(chain.from_iterable(rows))
        if not set(map(type, flat)) <= _NUMBER_TYPES:
            _raise_first_non_number(instances, numeric)
        with np.errstate(over="ignore"):
            try:
                xn[:] = np.array(rows, dtype=np.float32).reshape(n, len(numeric))
            except OverflowError:  # an integer beyond float64
                xn[:] = np.array(
                    [v if abs(v) < 1e300 else math.inf for v in flat], np.float32
                ).reshape(n, -1)
        finite = np.isfinite(xn)
        if not finite.all():
            i, j = np.argwhere(~finite)[0]
            value = instances[i][numeric[j]]
            raise RequestError(
                400,
                f"instances[{i}].{numeric[j]} must be a finite number, got {_short(value)} "
                "(NaN, infinity and values beyond float32 range are not accepted)",
            )
    xc = np.empty((n, len(categorical)), dtype=object)
    if categorical:
        rows = _rows(instances, categorical)
        flat = rows if len(categorical) == 1 else list(chain.from_iterable(rows))
        if set(map(type, flat)) != {str}:
            m = len(categorical)
            flat = [
                v if type(v) is str else _category_string(v, categorical[k % m], k // m)
                for k, v in enumerate(flat)
            ]
        xc.reshape(-1)[:] = flat
    return xn, xc


def instances_to_columns(
    instances: list[dict[str, Any]], plan: FeaturePlan
) -> dict[str, np.ndarray]:
    """Column arrays shaped (n, 1) by feature name, as ``features.model_inputs`` makes them.

    Raises:
        RequestError: as `instances_to_arrays`.
    """
    xn, xc = instances_to_arrays(instances, plan)
    out = {name: xn[:, j : j + 1] for j, name in enumerate(plan.numeric)}
    return out | {name: xc[:, j : j + 1] for j, name in enumerate(plan.categorical)}


def _rows(instances: list[dict[str, Any]], names: list[str]) -> list[Any]:
    # itemgetter over map runs in C: one tuple per instance (a bare value for one name).
    try:
        return list(map(itemgetter(*names), instances))
    except KeyError:
        for i, inst in enumerate(instances):
            for name in names:
                if name not in inst:
                    raise RequestError(400, f"instances[{i}] is missing feature {name!r}") from None
        raise


def _raise_first_non_number(instances: list[dict[str, Any]], names: list[str]) -> None:
    for i, inst in enumerate(instances):
        for name in names:
            if type(inst[name]) not in _NUMBER_TYPES:
                raise RequestError(
                    400, f"instances[{i}].{name} must be a number, got {_describe(inst[name])}"
                )


def _category_string(value: Any, name: str, i: int) -> str:
    if value is None:
        return ""
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is int:
        return str(value)
    if type(value) is float:
        if not math.isfinite(value):
            raise RequestError(400, f"instances[{i}].{name} must be a string, got {value}")
        return _arrow_float_string(value)
    raise RequestError(400, f"instances[{i}].{name} must be a string, got {_describe(value)}")


def _arrow_float_string(value: float) -> str:
    # The training data's categories come from Arrow's float-to-string cast ("3" for 3.0).
    import pyarrow as pa
    import pyarrow.compute as pc

    return str(pc.cast(pa.array([value], pa.float64()), pa.string())[0].as_py())


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def _describe(value: Any) -> str:
    return "null" if value is None else f"{_json_type(value)} {_short(value)}"


def _short(value: Any, limit: int = 40) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- forecasting: one series' recent history per instance -----------------------------------------


@dataclasses.dataclass(frozen=True)
class HistorySpec:
    """What a forecasting model's request instances carry, from its ``voltpipe_model.json``."""

    time_column: str
    label: str
    covariates: tuple[str, ...]
    group_column: str | None
    window: int
    horizon: int
    calendar: bool
    context: int = 0  # past rows one forecast needs (>= window); 0: the window

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> HistorySpec:
        from voltpipe.modelling.forecasting import context_length

        f = meta["forecasting"]
        return cls(
            time_column=str(f["time_column"]),
            label=str(meta["label"]),
            covariates=tuple(f["covariates"]),
            group_column=f.get("group_column"),
            window=int(f["window"]),
            horizon=int(f["horizon"]),
            calendar=bool(f["calendar"]),
            context=context_length(f),
        )

    @property
    def history_rows(self) -> int:
        """The fewest rows a request's history may have: the model's context (the window, or
        more for seasonal lags or a statistical model's history)."""
        return max(self.context, self.window)

    @property
    def history_setting(self) -> str:
        """What sets `history_rows`, as the config key a user recognises."""
        if self.history_rows == self.window:
            return "forecasting.window"
        return "the model's context: forecasting.window and its seasons"

    @property
    def values(self) -> tuple[str, ...]:
        """The numeric columns of a history row: the label, then the covariates."""
        return (self.label, *self.covariates)


@dataclasses.dataclass
class History:
    """One instance's history as a table ``forecasting.series_table`` reads.

    Attributes:
        table: the time column, the label and the covariates (no group column: one series).
        time_kind: how times were sent, and are answered: ``utc`` (ISO strings with an offset),
            ``local`` (ISO strings without one), ``date`` (``YYYY-MM-DD``) or ``number``.
        group: the series' group value, when the instance named it.
    """

    table: Any
    time_kind: str
    group: str | None


def parse_history(instance: dict[str, Any], i: int, spec: HistorySpec) -> History:
    """Checks one forecasting instance and returns its history as a table.

    The instance is ``{"history": ROWS | COLUMNS, GROUP_COLUMN: value?}``: ROWS a list of
    objects ``{time_column: t, label: y, covariate: x, ...}``, COLUMNS an object of equal-length
    lists by column name. Times are ISO 8601 strings (an offset such as ``Z`` is converted to
    UTC; mixing times with and without one is refused) or, when the model has no calendar
    features, numbers. Rows may come in any order; other fields are ignored.

    Raises:
        RequestError: 400 naming the field: no history, fewer than `spec.history_rows` rows, a missing
            or non-finite value, a bad time, or rows of more than one series.
    """
    import pyarrow as pa

    where = f"instances[{i}].history"
    history = instance.get("history")
    needed = (spec.time_column, *spec.values)
    if history is None:
        example = ", ".join(f'"{c}": ...' for c in needed)
        raise RequestError(
            400,
            f'instances[{i}] has no "history"; expected {{"history": [{{{example}}}, ...]}} '
            f"with the series' last {spec.history_rows} rows or more",
        )
    if type(history) is list:
        columns, cell, group_values = _history_rows(history, where, needed, spec.group_column)
    elif type(history) is dict:
        columns, cell, group_values = _history_columns(history, where, needed, spec.group_column)
    else:
        raise RequestError(
            400,
            f"{where} must be a list of rows (objects) or an object of columns (lists), "
            f"got {_json_type(history)}",
        )
    n = len(columns[spec.time_column])
    if n < spec.history_rows:
        raise RequestError(
            400,
            f"{where} has {n} row(s); the model forecasts from the last {spec.history_rows} "
            f"({spec.history_setting}): send at least {spec.history_rows}",
        )
    group = _history_group(instance, i, spec.group_column, group_values)
    times, time_kind = _history_times(columns[spec.time_column], spec, cell)
    data: dict[str, Any] = {spec.time_column: times}
    for name in spec.values:
        data[name] = pa.array(_finite_numbers(columns[name], name, cell), pa.float64())
    return History(pa.table(data), time_kind, group)


def _history_rows(
    rows: list[Any], where: str, needed: tuple[str, ...], group_column: str | None
) -> tuple[dict[str, list[Any]], Any, list[Any]]:
    if set(map(type, rows)) - {dict}:
        k = next(k for k, r in enumerate(rows) if type(r) is not dict)
        raise RequestError(
            400, f"{where}[{k}] must be an object of column values, got {_json_type(rows[k])}"
        )
    columns: dict[str, list[Any]] = {}
    for name in needed:
        try:
            columns[name] = list(map(itemgetter(name), rows))
        except KeyError:
            k = next(k for k, r in enumerate(rows) if name not in r)
            raise RequestError(400, f"{where}[{k}] is missing {name!r}") from None
    groups = [r[group_column] for r in rows if group_column in r] if group_column else []
    return columns, lambda name, k: f"{where}[{k}].{name}", groups


def _history_columns(
    history: dict[str, Any], where: str, needed: tuple[str, ...], group_column: str | None
) -> tuple[dict[str, list[Any]], Any, list[Any]]:
    columns: dict[str, list[Any]] = {}
    for name in (*needed, *([group_column] if group_column in history else [])):
        if name not in history:
            raise RequestError(400, f"{where} is missing column {name!r}")
        values = history[name]
        if type(values) is not list:
            raise RequestError(
                400, f"{where}.{name} must be a list of values, got {_json_type(values)}"
            )
        first = needed[0]
        if name != first and len(values) != len(columns[first]):
            raise RequestError(
                400,
                f"{where}.{name} has {len(values)} values but {where}.{first} has "
                f"{len(columns[first])}; columns must have the same length",
            )
        columns[name] = values
    groups = columns.pop(group_column) if group_column in columns else []
    return columns, lambda name, k: f"{where}.{name}[{k}]", groups


def _history_group(
    instance: dict[str, Any], i: int, group_column: str | None, in_history: list[Any]
) -> str | None:
    if group_column is None:
        return None
    values = {_group_string(v, f"instances[{i}].history's {group_column}") for v in in_history}
    if group_column in instance:
        values.add(_group_string(instance[group_column], f"instances[{i}].{group_column}"))
    if len(values) > 1:
        shown = ", ".join(repr(v) for v in sorted(values)[:5])
        raise RequestError(
            400,
            f"instances[{i}] holds rows of {len(values)} series ({group_column}: {shown}); "
            "send one series per instance",
        )
    return values.pop() if values else None


def _group_string(value: Any, where: str) -> str:
    if type(value) is str:
        return value
    if value is None:
        return ""
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is int:
        return str(value)
    if type(value) is float and math.isfinite(value):
        return _arrow_float_string(value)
    raise RequestError(400, f"{where} must be a string, got {_describe(value)}")


def _finite_numbers(values: list[Any], name: str, cell: Any) -> np.ndarray:
    if not set(map(type, values)) <= _NUMBER_TYPES:
        k = next(k for k, v in enumerate(values) if type(v) not in _NUMBER_TYPES)
        raise RequestError(400, f"{cell(name, k)} must be a number, got {_describe(values[k])}")
    with np.errstate(over="ignore"):
        try:
            out = np.array(values, dtype=np.float64)
        except OverflowError:  # an integer beyond float64
            out = np.array([v if abs(v) < 1e300 else math.inf for v in values], np.float64)
    finite = np.isfinite(out)
    if not finite.all():
        k = int(np.argmin(finite))
        raise RequestError(
            400,
            f"{cell(name, k)} must be a finite number, got {_short(values[k])} "
            "(NaN and infinity are not accepted: fill the gap first)",
        )
    return out


_EXAMPLE_TIME = '"2024-05-01T13:00:00Z"'


def _history_times(values: list[Any], spec: HistorySpec, cell: Any) -> tuple[Any, str]:
    """The time column as an Arrow array, and how the times were written."""
    import pyarrow as pa

    name = spec.time_column
    kinds = set(map(type, values))
    if kinds <= _NUMBER_TYPES:
        if spec.calendar:
            raise RequestError(
                400,
                f"{cell(name, 0)} must be an ISO 8601 time string such as {_EXAMPLE_TIME} "
                f"(the model uses the hour and weekday of {name}), got {_describe(values[0])}",
            )
        numbers = _finite_numbers(values, name, cell)
        if kinds == {int}:
            return pa.array(values, pa.int64()), "number"
        return pa.array(numbers, pa.float64()), "number"
    if kinds != {str}:
        numbers_first = not spec.calendar and type(values[0]) in _NUMBER_TYPES
        allowed = _NUMBER_TYPES if numbers_first else {str}
        k = next(k for k, v in enumerate(values) if type(v) not in allowed)
        raise RequestError(
            400,
            f"{cell(name, k)} must be "
            + (
                "a number, as the first time is"
                if numbers_first
                else f"an ISO 8601 time string such as {_EXAMPLE_TIME}"
            )
            + f", got {_describe(values[k])}",
        )
    parsed = []
    for k, text in enumerate(values):
        try:
            parsed.append(dt.datetime.fromisoformat(text))
        except ValueError:
            raise RequestError(
                400,
                f"{cell(name, k)} must be an ISO 8601 time such as {_EXAMPLE_TIME}, "
                f"got {_short(text)}",
            ) from None
    aware = [t.utcoffset() is not None for t in parsed]
    if any(aware) and not all(aware):
        k = aware.index(not aware[0])
        raise RequestError(
            400,
            f"{cell(name, k)} is {_short(values[k])} but {cell(name, 0)} is {_short(values[0])}: "
            "send every time with a UTC offset (such as Z) or none without",
        )
    if aware[0]:
        parsed = [t.astimezone(dt.UTC).replace(tzinfo=None) for t in parsed]
        kind = "utc"
    else:
        kind = "date" if all(len(text) == 10 for text in values) else "local"
    return pa.array(parsed, pa.timestamp("us")), kind
