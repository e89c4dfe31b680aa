"""Experiment tracking behind one small function; MLflow is imported only when used."""

from __future__ import annotations

import json
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


def log_comparison(tracking_uri: str, experiment: str, decision: dict[str, Any]) -> str | None:
    """Logs the gate's champion/challenger comparison as its own run; no-op without a URI.

    Metrics ``gate.challenger``, ``gate.champion``, ``gate.improvement``, ``gate.interval_low``
    and ``gate.interval_high``; tags for the verdict, versions and test data hash; the whole
    decision (with the slice table, cut at 5000 characters) as the ``voltpipe.gate.decision``
    tag. A tracking failure
    is printed, never raised: the gate's decision stands without it.
    """
    if not tracking_uri:
        return None
    try:
        import mlflow

        logging.getLogger("alembic").setLevel(logging.WARNING)
        client = mlflow.MlflowClient(tracking_uri=tracking_uri)
        exp = client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
        interval = decision.get("interval") or [None, None]
        values = {
            "gate.challenger": decision.get("challenger"),
            "gate.champion": decision.get("champion"),
            "gate.improvement": decision.get("improvement"),
            "gate.interval_low": interval[0],
            "gate.interval_high": interval[1],
        }
        tags = {
            "voltpipe.gate.verdict": decision.get("verdict"),
            "voltpipe.gate.metric": decision.get("metric"),
            "voltpipe.gate.method": decision.get("method"),
            "voltpipe.champion_version": decision.get("champion_version"),
            "voltpipe.test_data_hash": decision.get("test_data_hash"),
        }
        run = client.create_run(
            exp_id,
            run_name=f"{experiment}-gate",
            tags={k: str(v) for k, v in tags.items() if v is not None},
        )
        for key, value in values.items():
            if value is not None and value == value:
                client.log_metric(run.info.run_id, key, float(value))
        # A tag, not an artifact: the default artifact root of a sqlite store is ./mlruns in
        # whatever directory the step runs in. MLflow caps tag values (5000 characters here).
        client.set_tag(
            run.info.run_id, "voltpipe.gate.decision", json.dumps(decision, default=str)[:5000]
        )
        client.set_terminated(run.info.run_id)
        return str(run.info.run_id)
    except Exception as exc:
        print(f"voltpipe: could not log the gate comparison to MLflow ({exc})")
        return None
