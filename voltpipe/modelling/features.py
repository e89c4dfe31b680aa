"""Feature plans: which columns feed the model and how, derived from the training split.

No TensorFlow here: the plan is plain data, stored with the model, and turned into Keras
preprocessing layers by the model builders.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from voltpipe.errors import DataError

MAX_ONE_HOT = 32


def _arrow_kind(t: pa.DataType) -> str:
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "numeric"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t):
        return "string"
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "timestamp"
    return "other"


@dataclasses.dataclass
class FeaturePlan:
    """Numeric features with their training mean/variance; categorical ones with a vocabulary."""

    numeric: dict[str, dict[str, float]]
    categorical: dict[str, list[str]]
    skipped: dict[str, str]

    @property
    def names(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeaturePlan:
        return cls(numeric=d["numeric"], categorical=d["categorical"], skipped=d.get("skipped", {}))


def scale_variance(values: np.ndarray, axis: int | None = None) -> Any:
    """The variance to standardise by: the data's, or 1 where the column is constant.

    scikit-learn's rule (``StandardScaler``): a zero variance (up to float rounding) scales by 1,
    so a value never seen in training moves the input by its raw difference, not by 10^6.
    """
    v = np.asarray(values, dtype="float64")
    n = v.size if axis is None else v.shape[axis]
    var = v.var(axis=axis)
    # Rounding leaves a constant column a variance of about (n * eps * |mean|)^2, not 0.
    bound = (n * np.finfo("float64").eps * np.abs(v.mean(axis=axis))) ** 2
    out = np.where(var <= bound, 1.0, var)
    return float(out) if axis is None else out


def _chunked_stats(col: pa.ChunkedArray | pa.Array) -> tuple[int, float, float, int]:
    """Rows, mean, variance and non-finite count (nulls included) of a numeric column, one
    chunk (row group) at a time: no float64 copy of the whole column. Chunks are merged with
    Chan's update; one chunk gives exactly ``np.mean`` and ``np.var``."""
    n, mean, m2, nonfinite = 0, 0.0, 0.0, 0
    for chunk in col.chunks if isinstance(col, pa.ChunkedArray) else [col]:
        v = np.asarray(chunk.to_numpy(zero_copy_only=False), dtype="float64")
        finite = np.isfinite(v)
        if not finite.all():
            nonfinite += int((~finite).sum())
            continue  # the column is refused; its statistics are not used
        k = len(v)
        if not k:
            continue
        mu = float(v.mean())
        d = v - mu
        c2 = float(np.sum(d * d))
        if not n:
            n, mean, m2 = k, mu, c2
            continue
        total = n + k
        delta = mu - mean
        mean += delta * k / total
        m2 += c2 + delta * delta * n * k / total
        n = total
    return n, mean, (m2 / n if n else 0.0), nonfinite


def plan_features(
    table: pa.Table,
    *,
    label: str,
    features: list[str] | None = None,
    exclude: list[str] | None = None,
    max_categories: int = 10_000,
) -> FeaturePlan:
    """Chooses the model's inputs from the training table.

    Every column but the label (or exactly `features`) is used: numbers are normalised, strings
    and booleans looked up in a vocabulary. Timestamps and other types are skipped unless named
    in `features`, which is an error.

    Raises:
        DataError: a named feature is missing or has an unusable type, or no feature is left.
    """
    excluded = set(exclude or [])
    names = (
        features
        if features is not None
        else [c for c in table.column_names if c != label and c not in excluded]
    )
    numeric: dict[str, dict[str, float]] = {}
    categorical: dict[str, list[str]] = {}
    skipped: dict[str, str] = {}
    for name in names:
        if name not in table.column_names:
            raise DataError(
                f"feature column {name!r} is not in the data (columns: {', '.join(table.column_names)})"
            )
        col = table.column(name)
        kind = _arrow_kind(col.type)
        if kind == "numeric":
            n, mean, var, nonfinite = _chunked_stats(col)
            if col.null_count or nonfinite:
                bad = nonfinite - col.null_count
                raise DataError(
                    f"feature column {name!r} has {col.null_count} null and {max(bad, 0)} NaN/inf value(s) "
                    "in the training split; fill or filter them in the query (e.g. COALESCE)"
                )
            # as scale_variance: a variance within float rounding of 0 scales by 1
            bound = (n * np.finfo("float64").eps * abs(mean)) ** 2
            numeric[name] = {"mean": mean, "variance": 1.0 if var <= bound else var}
        elif kind in ("string", "boolean"):
            counts = pc.value_counts(pc.cast(col, pa.string()).drop_null())
            vocab = sorted(str(v["values"]) for v in counts.to_pylist())
            if len(vocab) > max_categories:
                raise DataError(
                    f"feature column {name!r} has {len(vocab)} distinct values (max {max_categories}); "
                    "it looks like an identifier: exclude it"
                )
            categorical[name] = vocab
        else:
            if features is not None:
                raise DataError(
                    f"feature column {name!r} has type {col.type}, which the model cannot take"
                )
            skipped[name] = f"type {col.type} is not a model input"
    if not numeric and not categorical:
        raise DataError(f"no usable feature columns besides the label {label!r}")
    return FeaturePlan(numeric=numeric, categorical=categorical, skipped=skipped)


def model_inputs(table: pa.Table, plan: FeaturePlan) -> dict[str, np.ndarray]:
    """Column arrays shaped (n, 1) for the model: float32 numbers, strings for categories.

    Raises:
        DataError: a feature column is missing, holds nulls/NaN, or text in a numeric column.
    """
    out: dict[str, np.ndarray] = {}
    for name in plan.numeric:
        if name not in table.column_names:
            raise DataError(f"feature column {name!r} is missing")
        col = table.column(name)
        if _arrow_kind(col.type) != "numeric":
            raise DataError(f"feature column {name!r} should be numeric but is {col.type}")
        values = col.to_numpy(zero_copy_only=False).astype("float32")
        if col.null_count or not np.all(np.isfinite(values)):
            raise DataError(f"feature column {name!r} holds null, NaN or infinite values")
        out[name] = values.reshape(-1, 1)
    for name in plan.categorical:
        if name not in table.column_names:
            raise DataError(f"feature column {name!r} is missing")
        col = pc.fill_null(pc.cast(table.column(name), pa.string()), "")
        out[name] = np.asarray(col.to_numpy(zero_copy_only=False), dtype=object).reshape(-1, 1)
    return out


@dataclasses.dataclass
class CompactRows:
    """Feature rows in the training layout: one float32 matrix of the numeric features and one
    int32 matrix of category codes (the index in the plan's vocabulary, -1 when the value is
    not in it). About 4 bytes a feature a row, against ~50 for the Python strings of
    ``model_inputs``; the Keras model still takes raw strings (``inputs`` decodes the codes per
    batch), so serving and the NumPy replay are unchanged."""

    numeric: np.ndarray  # (n, len(plan.numeric)) float32, columns in plan order
    codes: np.ndarray  # (n, len(plan.categorical)) int32, columns in plan order

    def __len__(self) -> int:
        return int(self.numeric.shape[0])

    def take(self, rows: np.ndarray) -> CompactRows:
        return CompactRows(self.numeric[rows], self.codes[rows])

    @classmethod
    def concat(cls, parts: list[CompactRows], plan: FeaturePlan) -> CompactRows:
        if not parts:
            return cls(
                np.empty((0, len(plan.numeric)), "float32"),
                np.empty((0, len(plan.categorical)), "int32"),
            )
        return cls(
            np.concatenate([p.numeric for p in parts]), np.concatenate([p.codes for p in parts])
        )


def category_codes(col: pa.ChunkedArray | pa.Array, vocab: list[str]) -> np.ndarray:
    """int32 index of each value in `vocab` (nulls read as ""), -1 for a value not in it."""
    as_str = pc.fill_null(pc.cast(col, pa.string()), "")
    idx = pc.index_in(as_str, value_set=pa.array(vocab, pa.string()))
    return np.asarray(pc.fill_null(idx, -1).to_numpy(zero_copy_only=False), dtype="int32")


def compact_inputs(table: Any, plan: FeaturePlan) -> CompactRows:
    """The feature columns of `table` as `CompactRows`, filled column by column into
    preallocated arrays (the peak is the result plus one Arrow column).

    `table` is a ``pa.Table`` or anything with its ``column_names``, ``num_rows`` and
    ``column(name)`` (``inputs.ParquetSplit`` reads one column at a time).

    Raises:
        DataError: a feature column is missing, holds nulls/NaN, or text in a numeric column.
    """
    n = table.num_rows
    numeric = np.empty((n, len(plan.numeric)), "float32")
    codes = np.empty((n, len(plan.categorical)), "int32")
    for j, name in enumerate(plan.numeric):
        if name not in table.column_names:
            raise DataError(f"feature column {name!r} is missing")
        col = table.column(name)
        if _arrow_kind(col.type) != "numeric":
            raise DataError(f"feature column {name!r} should be numeric but is {col.type}")
        if col.null_count:
            raise DataError(f"feature column {name!r} holds null, NaN or infinite values")
        start = 0
        for chunk in col.chunks if isinstance(col, pa.ChunkedArray) else [col]:
            values = chunk.to_numpy(zero_copy_only=False)
            numeric[start : start + len(values), j] = values
            start += len(values)
        del col
        if not np.all(np.isfinite(numeric[:, j])):
            raise DataError(f"feature column {name!r} holds null, NaN or infinite values")
    for j, (name, vocab) in enumerate(plan.categorical.items()):
        if name not in table.column_names:
            raise DataError(f"feature column {name!r} is missing")
        codes[:, j] = category_codes(table.column(name), vocab)
    return CompactRows(numeric, codes)
