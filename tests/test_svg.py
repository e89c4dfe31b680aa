"""One SVG frame for every chart: evaluation plots, drift report and training curves."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from voltpipe import reports, svg
from voltpipe.evaluation import plots
from voltpipe.monitoring import report

rng = np.random.default_rng(0)
CHARTS = {
    "residuals": lambda: plots.residual_scatter_svg(rng.normal(size=300), rng.normal(size=300)),
    "roc": lambda: plots.roc_svg({"fpr": [0, 0.2, 1], "tpr": [0, 0.7, 1]}, auc=0.8),
    "overlay": lambda: report.histogram_overlay_svg(
        rng.normal(size=400), rng.normal(0.3, 1, 300), title="wind & <speed>"
    ),
    "curves": lambda: reports.line_chart_svg({"loss": [1.0, 0.5, 0.3]}, title="curves"),
}


@pytest.mark.parametrize("name", sorted(CHARTS))
def test_every_chart_is_well_formed_svg_in_the_shared_frame(name: str) -> None:
    text = CHARTS[name]()
    root = ET.fromstring(text)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert text.startswith(svg.svg_open(root.get("width"), root.get("height")))
    lines = root.findall("{http://www.w3.org/2000/svg}line")
    axes = [ln for ln in lines if ln.get("stroke") == "#444"]
    assert len(axes) >= 2  # the frame's x and y axes


def test_title_is_escaped_and_optionally_bold() -> None:
    assert (
        svg.title(8, 16, "a < b & c") == "<text x='8' y='16' font-size='13'>a &lt; b &amp; c</text>"
    )
    assert "font-weight='600'" in svg.title(8, 16, "t", bold=True)


def test_axes_span_the_plot_area() -> None:
    x_axis, y_axis = (ET.fromstring(s) for s in svg.axes(60, 30, 500, 250))
    assert (x_axis.get("x1"), x_axis.get("y1"), x_axis.get("x2"), x_axis.get("y2")) == (
        "60",
        "280",
        "560",
        "280",
    )
    assert (y_axis.get("x1"), y_axis.get("y1"), y_axis.get("y2")) == ("60", "30", "280")
