"""Embedded demo data: a generated, deterministic wind-farm SCADA table.

See :mod:`voltpipe.demo.windfarm` for the physical model behind the numbers.
"""

from voltpipe.demo.windfarm import (
    SCADA_SCHEMA,
    STATUSES,
    WindFarmSpec,
    generate_scada,
    power_curve,
    seed_duckdb,
)

__all__ = [
    "SCADA_SCHEMA",
    "STATUSES",
    "WindFarmSpec",
    "generate_scada",
    "power_curve",
    "seed_duckdb",
]
