"""The results of a drift comparison: per feature, of the predictions, of a metric once labels
arrived, and of the whole table; each JSON-safe through ``to_dict``."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

import numpy as np

__all__ = [
    "MAX_REPORTED_CATEGORIES",
    "DriftResult",
    "FeatureDrift",
    "Kind",
    "PerformanceDecay",
    "PredictionDrift",
]

#: Most categories kept per feature in the result (the rest are summed as "other").
MAX_REPORTED_CATEGORIES = 20

Kind = Literal["numeric", "categorical"]


@dataclasses.dataclass
class FeatureDrift:
    """The drift statistics and verdict of one feature.

    Attributes:
        name: The column.
        kind: ``numeric`` (PSI, KS) or ``categorical`` (JS distance, chi-square).
        drifted: Whether the thresholds fired.
        fired: The tests that fired: ``psi``, ``ks`` or ``js``.
        reference_count: Non-null values in the reference sample.
        current_count: Non-null values in the current window.
        null_rate_reference: Null (or NaN/inf) share of the reference rows.
        null_rate_current: Same for the current window.
        psi, ks_statistic, ks_pvalue: Numeric statistics (None for categories).
        js_distance, chi2_statistic, chi2_pvalue, chi2_dof: Categorical statistics.
        bin_edges: The PSI bins' interior edges (numbers).
        reference_bin_fractions, current_bin_fractions: Share of each PSI bin (numbers).
        categories: The categories (most frequent first; at most
            :data:`MAX_REPORTED_CATEGORIES`, the rest summed as ``other_*``).
        reference_category_counts, current_category_counts: Their counts.
        other_reference_count, other_current_count: Counts of the categories left out.
    """

    name: str
    kind: Kind
    drifted: bool
    fired: list[str]
    reference_count: int
    current_count: int
    null_rate_reference: float
    null_rate_current: float
    psi: float | None = None
    ks_statistic: float | None = None
    ks_pvalue: float | None = None
    js_distance: float | None = None
    chi2_statistic: float | None = None
    chi2_pvalue: float | None = None
    chi2_dof: int | None = None
    bin_edges: list[float] = dataclasses.field(default_factory=list)
    reference_bin_fractions: list[float] = dataclasses.field(default_factory=list)
    current_bin_fractions: list[float] = dataclasses.field(default_factory=list)
    categories: list[str] = dataclasses.field(default_factory=list)
    reference_category_counts: list[int] = dataclasses.field(default_factory=list)
    current_category_counts: list[int] = dataclasses.field(default_factory=list)
    other_reference_count: int = 0
    other_current_count: int = 0

    @property
    def null_rate_change(self) -> float:
        """Current minus reference null rate."""
        return self.null_rate_current - self.null_rate_reference

    def to_dict(self) -> dict[str, Any]:
        out = {k: _json_safe(v) for k, v in dataclasses.asdict(self).items()}
        out["null_rate_change"] = _json_safe(self.null_rate_change)
        return out


@dataclasses.dataclass
class PredictionDrift:
    """PSI (and KS, for information) of the champion's predictions, reference vs current."""

    psi: float
    ks_statistic: float
    ks_pvalue: float
    threshold: float
    drifted: bool
    reference_count: int
    current_count: int

    def to_dict(self) -> dict[str, Any]:
        return {k: _json_safe(v) for k, v in dataclasses.asdict(self).items()}


@dataclasses.dataclass
class PerformanceDecay:
    """A model's metric on the reference period against the current one, once labels arrived.

    ``change`` is current minus reference; ``relative_change`` divides it by the reference
    value; ``degraded`` is true when the metric got worse (rmse up, accuracy down) by more
    than ``tolerance`` relative to the reference.
    """

    metric: str
    reference: float
    current: float
    change: float
    relative_change: float
    tolerance: float
    degraded: bool
    reference_count: int
    current_count: int

    def to_dict(self) -> dict[str, Any]:
        return {k: _json_safe(v) for k, v in dataclasses.asdict(self).items()}


@dataclasses.dataclass
class DriftResult:
    """The drift of every compared feature, reference sample vs current window.

    Attributes:
        features: Per-feature results, in the order compared.
        thresholds: The thresholds applied (``DriftThresholds`` fields).
        reference_rows: Rows of the reference sample.
        current_rows: Rows of the current window.
        skipped: Columns left out because their type has no drift test (timestamps, lists...),
            mapped to that type.
        prediction: Prediction drift, when predictions were given.
    """

    features: dict[str, FeatureDrift]
    thresholds: dict[str, float]
    reference_rows: int
    current_rows: int
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    prediction: PredictionDrift | None = None

    @property
    def drifted_features(self) -> list[str]:
        return [name for name, f in self.features.items() if f.drifted]

    @property
    def drift_detected(self) -> bool:
        """True when a feature drifted or the predictions did."""
        return bool(self.drifted_features) or bool(self.prediction and self.prediction.drifted)

    def summary(self) -> dict[str, Any]:
        """A small JSON-safe summary for alerts and logs."""
        return {
            "drift_detected": self.drift_detected,
            "drifted_features": self.drifted_features,
            "features_compared": len(self.features),
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "prediction_drift": None if self.prediction is None else self.prediction.drifted,
            "prediction_psi": None if self.prediction is None else _json_safe(self.prediction.psi),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "drift_detected": self.drift_detected,
            "drifted_features": self.drifted_features,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "thresholds": dict(self.thresholds),
            "skipped": dict(self.skipped),
            "features": {name: f.to_dict() for name, f in self.features.items()},
            "prediction": None if self.prediction is None else self.prediction.to_dict(),
        }


def _json_safe(value: Any) -> Any:
    """Floats that JSON cannot hold (nan, inf) become None; numpy scalars become Python ones."""
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
