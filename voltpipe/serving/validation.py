"""Request checks: a JSON body of ``{"instances": [...]}`` to model column arrays, or a 4xx.

Every check names the field (and the instance index) at fault. The happy path does one pass
per feature column at C speed (``map``/``set``/numpy); the per-value Python loops only run to
find the culprit once a check has failed.
"""

from __future__ import annotations

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
