"""The champion a deployment expects to replace, when the registration does not say."""

from __future__ import annotations

from typing import Any

__all__ = ["ANY_CHAMPION"]

# The expected champion of a registration written before registrations recorded it: the
# alias then moves unconditionally (as it did then).
ANY_CHAMPION: Any = object()
