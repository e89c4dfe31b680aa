"""Experiment tracking behind one small function; MLflow is imported only when used.

Tracking is never fatal to a model's lifecycle: `log_run_safely` logs a failure (credentials
redacted), keeps the run in a spool folder and retries it on the next call.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

from voltpipe.tracking.redact import redact

log = logging.getLogger("voltpipe.tracking")

# An unreachable tracking server must not hold a step for minutes (MLflow's defaults retry
# 7 times with backoff and wait 120 s per request).
_MLFLOW_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
}


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
    for key, value in _MLFLOW_HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
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


@dataclasses.dataclass
class TrackingResult:
    """What `log_run_safely` did: the run id, or the (redacted) error and what waits."""

    run_id: str | None = None
    error: str | None = None
    pending: int = 0
    retried: int = 0

    @property
    def logged(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "logged": self.logged,
            "run_id": self.run_id,
            "error": self.error,
            "pending": self.pending,
            "retried": self.retried,
        }


def log_run_safely(
    tracking_uri: str,
    experiment: str,
    *,
    spool_dir: str | os.PathLike[str] | None,
    run_name: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
) -> TrackingResult:
    """`log_run` that never raises: on failure the run is written to `spool_dir` (when given)
    and retried, with any older pending runs, by the next call.

    Returns:
        The run id, or the error (credentials redacted) and how many runs wait in the spool.
    """
    if not tracking_uri:
        return TrackingResult()
    spool = Path(spool_dir) if spool_dir else None
    result = TrackingResult()
    run = {
        "experiment": experiment,
        "run_name": run_name,
        "params": params,
        "metrics": metrics,
        "tags": tags,
    }
    try:
        result.run_id = log_run(tracking_uri, experiment, **_run_args(run))
    except Exception as exc:  # tracking is never fatal (see the module docstring)
        result.error = redact(f"{type(exc).__name__}: {exc}")[:2000]
        log.warning(
            "tracking at %s failed, the model's lifecycle goes on: %s",
            redact(tracking_uri),
            result.error,
        )
        if spool is not None and _spool(spool, run):
            log.warning("the run is kept in %s and retried by the next registration", spool)
    else:
        if spool is not None:
            result.retried = _retry_spooled(tracking_uri, spool)
    if spool is not None and spool.is_dir():
        result.pending = len(list(spool.glob("*.json")))
    return result


def _run_args(run: dict[str, Any]) -> dict[str, Any]:
    return {k: run[k] for k in ("run_name", "params", "metrics", "tags")}


def _spool(spool: Path, run: dict[str, Any]) -> bool:
    try:
        spool.mkdir(parents=True, exist_ok=True)
        path = spool / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(run, default=str))
        os.replace(tmp, path)
        return True
    except OSError as exc:
        log.warning("the run could not be kept for a retry (%s): it is not tracked", exc)
        return False


def _retry_spooled(tracking_uri: str, spool: Path) -> int:
    """Logs the runs waiting in `spool` (oldest first); stops at the first failure."""
    done = 0
    for path in sorted(spool.glob("*.json")):
        try:
            run = json.loads(path.read_text())
            log_run(tracking_uri, run["experiment"], **_run_args(run))
        except (OSError, ValueError, KeyError) as exc:
            log.warning("a pending tracked run %s is unreadable (%s): removed", path, exc)
            path.unlink(missing_ok=True)
            continue
        except Exception as exc:  # the server is still down: retry next time
            log.warning("retrying pending tracked runs failed: %s", redact(str(exc)))
            break
        path.unlink(missing_ok=True)
        done += 1
    return done
