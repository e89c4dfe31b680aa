"""Drift monitoring: drift statistics, the HTML drift report and alerts."""

from voltpipe.monitoring.alerts import notify, structured_log_line
from voltpipe.monitoring.drift import (
    DriftResult,
    FeatureDrift,
    PerformanceDecay,
    PredictionDrift,
    chi_square,
    compute_drift,
    js_distance,
    ks_2samp,
    performance_decay,
    prediction_drift,
    psi,
    reference_sample,
)
from voltpipe.monitoring.report import render_drift_html

__all__ = [
    "DriftResult",
    "FeatureDrift",
    "PerformanceDecay",
    "PredictionDrift",
    "chi_square",
    "compute_drift",
    "js_distance",
    "ks_2samp",
    "notify",
    "performance_decay",
    "prediction_drift",
    "psi",
    "reference_sample",
    "render_drift_html",
    "structured_log_line",
]
