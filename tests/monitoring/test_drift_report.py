"""Tests of the HTML drift report (voltpipe.monitoring.report)."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa

from voltpipe.monitoring import compute_drift, render_drift_html
from voltpipe.monitoring.report import categorical_bars_svg, histogram_overlay_svg


def _tables(shift: float) -> tuple[pa.Table, pa.Table]:
    rng = np.random.default_rng(0)

    def make(n: int, s: float) -> pa.Table:
        return pa.table(
            {
                "wind_speed_ms": rng.weibull(2.0, n) * (7.5 + s),
                "<b>odd & name</b>": rng.normal(s, 1.0, n),
                "status": rng.choice(
                    ["ok", "curtailed", "fault"], n, p=[0.95 - s / 10, 0.03 + s / 10, 0.02]
                ),
                "ts": pa.array(np.arange(n), pa.timestamp("s")),
            }
        )

    return make(5000, 0.0), make(3000, shift)


def test_report_shows_every_feature_with_a_plot() -> None:
    reference, current = _tables(1.5)
    result = compute_drift(
        reference,
        current,
        reference_predictions=np.arange(100.0),
        current_predictions=np.arange(100.0) + 50,
    )
    page = render_drift_html(result, reference, current, title="Drift <test>")
    assert page.startswith("<!doctype html>") and page.endswith("</html>")
    assert "Drift detected in 3 of 3 features" in page
    for name in ("wind_speed_ms", "status"):
        assert name in page
    assert "&lt;b&gt;odd &amp; name&lt;/b&gt;" in page and "<b>odd" not in page  # escaped
    assert "Drift &lt;test&gt;" in page
    assert page.count("<svg") == 3  # one plot per feature; ts is listed as not compared
    assert "ts (timestamp[s])" in page
    assert "Predictions: <span class='fired'>drifted</span>" in page
    assert "DRIFT (psi, ks)" in page
    # Self-contained: no scripts, no external resources.
    assert "<script" not in page and not re.search(r"(src|href)=", page)


def test_report_without_drift() -> None:
    reference, current = _tables(0.0)
    page = render_drift_html(compute_drift(reference, current), reference, current)
    assert "No drift in 3 features" in page and "Drift detected" not in page


def test_histogram_svg_handles_constant_and_empty_samples() -> None:
    svg = histogram_overlay_svg(np.full(10, 3.0), np.full(5, 3.0), title="c")
    assert svg.startswith("<svg") and svg.count("<rect") >= 2
    assert "no values" in histogram_overlay_svg(np.array([]), np.array([1.0]))


def test_categorical_bars_show_shares_and_other() -> None:
    svg = categorical_bars_svg(["a", "b"], [50, 50], [10, 30], other=(0, 60), title="t")
    assert ">(other)<" in svg and "60.0%" in svg and "50.0%" in svg
