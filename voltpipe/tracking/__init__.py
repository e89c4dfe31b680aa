"""Experiment tracking behind one small function; MLflow is imported only when used."""

from __future__ import annotations

import logging
import time
from typing import Any


def log_run(
    tracking_uri: str,
    experiment: str,
    *,
    run_name: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
) -> str | None:
    """Logs one run (parameters, metrics, tags) and returns its id; no-op without a URI."""
    if not tracking_uri:
        return None
    import mlflow

    logging.getLogger("alembic").setLevel(logging.WARNING)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    run = client.create_run(exp_id, run_name=run_name, tags=tags)
    flat = {k: str(v)[:6000] for k, v in params.items()}
    from mlflow.entities import Metric, Param, RunTag

    now_ms = int(time.time() * 1000)
    client.log_batch(
        run.info.run_id,
        metrics=[Metric(k, float(v), now_ms, 0) for k, v in metrics.items() if v == v],
        params=[Param(k, v) for k, v in flat.items()],
        tags=[RunTag(k, str(v)) for k, v in tags.items()],
    )
    client.set_terminated(run.info.run_id)
    return str(run.info.run_id)
