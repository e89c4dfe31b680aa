"""Embedded demo data: a generated wind-farm SCADA table and a generated smart-meter table.

See :mod:`voltpipe.demo.windfarm` and :mod:`voltpipe.demo.meters` for the models behind the
numbers.
"""

from voltpipe.demo.meters import (
    CUSTOMER_TYPES,
    METERS_SCHEMA,
    MeterSpec,
    generate_meters,
    seed_demo_warehouse,
    seed_meters,
)
from voltpipe.demo.windfarm import (
    SCADA_SCHEMA,
    STATUSES,
    WindFarmSpec,
    generate_scada,
    power_curve,
    seed_duckdb,
    seed_tables,
)

__all__ = [
    "CUSTOMER_TYPES",
    "METERS_SCHEMA",
    "SCADA_SCHEMA",
    "STATUSES",
    "MeterSpec",
    "WindFarmSpec",
    "generate_meters",
    "generate_scada",
    "power_curve",
    "seed_demo_warehouse",
    "seed_duckdb",
    "seed_meters",
    "seed_tables",
]
