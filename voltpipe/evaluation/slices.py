"""Slice metrics: the test metrics again for each value of a column (e.g. per turbine)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from voltpipe.errors import ConfigError

MAX_SLICE_VALUES = 50
NULL_VALUE = "(null)"


def _clean(value: float) -> float | None:
    """NaN/inf (e.g. auc of a one-class slice) as None, so the JSON stays valid."""
    return float(value) if math.isfinite(value) else None


def slice_metrics(
    table: pa.Table,
    columns: Sequence[str],
    metrics_of: Callable[[np.ndarray], dict[str, float]],
    *,
    max_values: int = MAX_SLICE_VALUES,
) -> dict[str, dict[str, Any]]:
    """The metrics of each value of each column in `columns` (the `max_values` most frequent).

    Args:
        table: the scored rows (same order as the outputs `metrics_of` reads).
        columns: the slice columns (``evaluation.slice_columns``).
        metrics_of: the metrics of the rows selected by a boolean mask.

    Returns:
        ``{column: {"distinct": n, "slices": [{"value", "rows", "metrics"}, ...]}}``, slices by
        row count (descending), then value.

    Raises:
        ConfigError: a slice column is not in the test data.
    """
    out: dict[str, dict[str, Any]] = {}
    for column in columns:
        if column not in table.column_names:
            raise ConfigError(
                f"evaluation.slice_columns: column {column!r} is not in the test data "
                f"(columns: {', '.join(table.column_names)})"
            )
        text = pc.fill_null(pc.cast(table.column(column), pa.string()), NULL_VALUE)
        values, inverse, counts = np.unique(
            np.asarray(text.to_numpy(zero_copy_only=False), dtype=object).astype(str),
            return_inverse=True,
            return_counts=True,
        )
        order = sorted(range(len(values)), key=lambda i: (-counts[i], values[i]))[:max_values]
        slices = []
        for i in order:
            scores = metrics_of(inverse == i)
            slices.append(
                {
                    "value": str(values[i]),
                    "rows": int(counts[i]),
                    "metrics": {k: _clean(v) for k, v in scores.items()},
                }
            )
        out[column] = {"distinct": len(values), "slices": slices}
    return out


def slices_markdown(slices: dict[str, dict[str, Any]]) -> str:
    """Slice metrics as one Markdown table per slice column."""
    parts = []
    for column, entry in slices.items():
        rows = entry["slices"]
        names = list(rows[0]["metrics"]) if rows else []
        shown = (
            f" (the {len(rows)} most frequent of {entry['distinct']} values)"
            if entry["distinct"] > len(rows)
            else ""
        )
        lines = [
            f"### Slices by `{column}`{shown}",
            "",
            "| " + " | ".join([column, "rows", *names]) + " |",
            "|" + "---|" * (2 + len(names)),
        ]
        for s in rows:
            cells = ["–" if s["metrics"][n] is None else f"{s['metrics'][n]:.4g}" for n in names]
            value = s["value"].replace("|", "\\|")
            lines.append("| " + " | ".join([value, f"{s['rows']:,}", *cells]) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + ("\n" if parts else "")
