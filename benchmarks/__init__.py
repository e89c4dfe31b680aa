"""voltpipe benchmarks: each module ``bench_*.py`` exposes ``run(quick: bool) -> list[Row]``.

A row states a figure, the value measured, the floor it is compared with (measured in the same
run), the ratio and the goal, so results read the same on any machine.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass
class Row:
    benchmark: str
    figure: str
    value: float
    unit: str
    floor: float
    floor_label: str
    goal: str  # e.g. "ratio <= 1.3" (operators <=, >=, <, >)
    ratio: float = dataclasses.field(init=False)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ratio = self.value / self.floor if self.floor else float("nan")

    @property
    def met(self) -> bool:
        op, _, target = self.goal.partition(" ")[2].partition(" ")
        bound = float(target)
        return {
            "<=": self.ratio <= bound,
            ">=": self.ratio >= bound,
            "<": self.ratio < bound,
            ">": self.ratio > bound,
        }[op]
