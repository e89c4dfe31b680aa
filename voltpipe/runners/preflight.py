"""Checks done once before a run starts: seed the embedded warehouse, probe the query."""

from __future__ import annotations

from pathlib import Path

from voltpipe.config import VoltpipeConfig
from voltpipe.data.warehouse import open_warehouse
from voltpipe.errors import ConfigError, DataError


def ensure_embedded_warehouse(cfg: VoltpipeConfig) -> None:
    """Creates and seeds the embedded DuckDB warehouse with the demo data on first use.

    A warehouse seeded by an older voltpipe (wind-farm table only) gains the smart-meter
    table once.
    """
    if not cfg.uses_embedded_warehouse:
        return
    from voltpipe.demo import seed_demo_warehouse

    path = Path(cfg.warehouse_uri[len("duckdb:///") :])
    if not path.exists():
        print(
            f"voltpipe: seeding the embedded warehouse {path} with the demo wind-farm and "
            "smart-meter data"
        )
    seeded = seed_demo_warehouse(path)
    added = [name for name, (_, written) in seeded.items() if written]
    if added and len(added) < len(seeded):
        print(f"voltpipe: adding the demo table(s) {', '.join(added)} to {path}")


def check_query(cfg: VoltpipeConfig) -> list[dict[str, str]]:
    """Probes the query's result columns (no full run) and checks the label and features.

    Catches a missing table, a syntax error, a missing parameter and a missing label or
    feature column in well under a second, before any pipeline step starts.

    Raises:
        DataError: naming the table, parameter or column at fault.
    """
    wh = open_warehouse(cfg.warehouse_uri, cfg.bigquery.model_dump(exclude_none=True))
    schema = wh.result_schema(cfg.sql, cfg.typed_parameters)
    if cfg.monitoring.current_query or cfg.monitoring.current_query_file:
        from voltpipe.data.params import normalize_parameters

        wh.result_schema(
            cfg.monitoring_sql, normalize_parameters(cfg.monitoring.current_query_parameters)
        )
    names = [c["name"] for c in schema]
    if cfg.label and cfg.label not in names:  # clustering and embedding may have no label
        raise DataError(
            f"label column {cfg.label!r} is not returned by the query (columns: {', '.join(names)})"
        )
    for feature in cfg.features or []:
        if feature not in names:
            raise DataError(
                f"feature column {feature!r} is not returned by the query (columns: {', '.join(names)})"
            )
    if cfg.split.column and cfg.split.column not in names:
        raise DataError(
            f"split.column {cfg.split.column!r} is not returned by the query (columns: {', '.join(names)})"
        )
    return schema


def check_local_backends(cfg: VoltpipeConfig) -> None:
    """Refuses ``training.backend``/``tuning.backend`` ``vertex`` on a kfp.local run: its
    artifacts stay on this machine, where a Vertex AI job cannot read them.

    Raises:
        ConfigError: naming the key.
    """
    for key, backend in (
        ("training.backend", cfg.training.backend),
        ("tuning.backend", cfg.tuning.backend if cfg.tuning.enabled else "local"),
    ):
        if backend == "vertex":
            raise ConfigError(
                f"{key} 'vertex' runs a Vertex AI job that reads the pipeline's artifacts from "
                "Cloud Storage, but a local run keeps them on this machine: use --target vertex, "
                f"or {key} local"
            )
