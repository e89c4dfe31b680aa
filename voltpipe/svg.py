"""The frame every voltpipe chart is drawn in (evaluation plots, drift report, training curves):
the ``<svg>`` element, its title and its two axes, as dependency-free SVG text."""

from __future__ import annotations

import html

__all__ = ["axes", "svg_open", "title"]


def svg_open(width: float, height: float) -> str:
    """The opening ``<svg>`` tag of a chart `width` x `height` pixels (sans-serif, 11 px)."""
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        "font-family='sans-serif' font-size='11'>"
    )


def title(x: float, y: float, text: str, *, bold: bool = False) -> str:
    """The chart's title (13 px, escaped) with its baseline at (`x`, `y`)."""
    weight = " font-weight='600'" if bold else ""
    return f"<text x='{x}' y='{y}' font-size='13'{weight}>{html.escape(text)}</text>"


def axes(left: float, top: float, width: float, height: float) -> list[str]:
    """The x axis (bottom) and y axis (left) of the plot area at (`left`, `top`)."""
    return [
        f"<line x1='{left}' y1='{top + height}' x2='{left + width}' y2='{top + height}' stroke='#444'/>",
        f"<line x1='{left}' y1='{top}' x2='{left}' y2='{top + height}' stroke='#444'/>",
    ]
