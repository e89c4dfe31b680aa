"""Nested MLflow runs: a parent run (a tuning study) with one child run per trial.

Uses ``MlflowClient`` only (no fluent API, so no global active-run state); a no-op without a
tracking URI.
"""

from __future__ import annotations

import logging
import time
from typing import Any


class NestedRuns:
    """A parent run; ``child`` logs one finished child run under it.

    Args:
        tracking_uri: MLflow tracking URI; empty: every method is a no-op.
        experiment: the experiment name (created when missing).
        run_name: the parent run's name.
        params, tags: logged on the parent run.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        run_name: str,
        *,
        params: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        self.client: Any = None
        self.parent_id: str | None = None
        if not tracking_uri:
            return
        import mlflow

        logging.getLogger("alembic").setLevel(logging.WARNING)
        self.client = mlflow.MlflowClient(tracking_uri=tracking_uri)
        exp = self.client.get_experiment_by_name(experiment)
        self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(experiment)
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags or {})
        self.parent_id = str(run.info.run_id)
        self._log(self.parent_id, params or {}, {}, {})

    def _log(
        self, run_id: str, params: dict[str, Any], metrics: dict[str, float], tags: dict[str, str]
    ) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items() if v == v],
            params=[Param(k, str(v)[:6000]) for k, v in params.items()],
            tags=[RunTag(k, str(v)) for k, v in tags.items()],
        )

    def child(
        self,
        run_name: str,
        *,
        params: dict[str, Any],
        metrics: dict[str, float],
        tags: dict[str, str] | None = None,
        status: str = "FINISHED",
    ) -> str | None:
        """Logs one finished child run (status FINISHED, FAILED or KILLED) and returns its id."""
        if self.client is None:
            return None
        run = self.client.create_run(
            self.experiment_id,
            run_name=run_name,
            tags={"mlflow.parentRunId": str(self.parent_id), **(tags or {})},
        )
        run_id = str(run.info.run_id)
        self._log(run_id, params, metrics, {})
        self.client.set_terminated(run_id, status=status)
        return run_id

    def finish(
        self,
        *,
        params: dict[str, Any] | None = None,
        metrics: dict[str, float] | None = None,
        status: str = "FINISHED",
    ) -> str | None:
        """Logs the study's results on the parent run and ends it; returns the parent's id."""
        if self.client is None or self.parent_id is None:
            return None
        self._log(self.parent_id, params or {}, metrics or {}, {})
        self.client.set_terminated(self.parent_id, status=status)
        return self.parent_id
