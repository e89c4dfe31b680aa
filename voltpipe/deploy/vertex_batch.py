"""Batch prediction on Vertex AI: a BatchPredictionJob scores BigQuery rows at fleet scale.

``prediction.backend: vertex``. The scoring query runs into a source table beside the
destination; a BatchPredictionJob (``aiplatform.BatchPredictionJob.create``, BigQuery in and
out) scores it with the registered Vertex model version (voltpipe's serving container, on
machines Vertex scales); its output table is copied into ``prediction.destination_table``
(append or replace, one copy job: all or nothing) and the scratch tables are dropped.

google-cloud-aiplatform is imported inside the functions.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from voltpipe.errors import ConfigError, DataError

TERMINAL_STATES = {
    "JOB_STATE_SUCCEEDED",
    "JOB_STATE_FAILED",
    "JOB_STATE_CANCELLED",
    "JOB_STATE_EXPIRED",
}


def predict_batch_vertex(
    *,
    warehouse: str,
    sql: str,
    parameters: dict[str, dict[str, Any]],
    registry_uri: str,
    model_name: str,
    selector: str,
    destination: str,
    mode: str = "append",
    warehouse_options: dict[str, Any] | None = None,
    vertex: dict[str, Any] | None = None,
    poll_seconds: float = 30.0,
    timeout_seconds: float | None = None,
) -> dict[str, Any]:
    """Scores `sql`'s rows with `model_name`@`selector` in a Vertex AI BatchPredictionJob.

    Args:
        warehouse: ``bigquery://PROJECT`` (the job reads and writes BigQuery).
        registry_uri: a ``vertex://`` registry: the version's Vertex model is what scores.
        destination: ``[PROJECT.]DATASET.TABLE`` receiving the predictions (`mode`: append or
            replace).
        vertex: ``machine_type``, ``starting_replica_count``, ``max_replica_count``, ``labels``
            (the config's ``prediction.vertex``).
        poll_seconds: between reads of the job's state.

    Returns:
        ``{rows, destination, mode, backend, model, vertex_job, source_rows, seconds}``.

    Raises:
        ConfigError: not a BigQuery warehouse or not a Vertex registry.
        DataError: the query, the job (with Vertex's message) or the copy failed.
    """
    from voltpipe.data.warehouse import open_warehouse, table_parts
    from voltpipe.registry import open_registry
    from voltpipe.registry.vertex import VertexRegistry, init_sdk
    from voltpipe.serving.batch import resolve_model

    started = time.perf_counter()
    if not warehouse.startswith("bigquery://"):
        raise ConfigError(
            "prediction.backend: vertex scores BigQuery rows into BigQuery: the warehouse "
            f"must be bigquery://PROJECT, not {warehouse!r}"
        )
    registry = open_registry(registry_uri)
    if not isinstance(registry, VertexRegistry):
        raise ConfigError(
            "prediction.backend: vertex needs the model in the Vertex AI Model Registry "
            "(deploy.target: vertex)"
        )
    version = resolve_model(registry_uri, model_name, selector)
    vertex_model = version.metadata.get("vertex_model_version")
    if not vertex_model:
        raise DataError(f"model {model_name} v{version.version} has no Vertex model version")
    wh: Any = open_warehouse(warehouse, warehouse_options)
    parts = table_parts(destination)
    project, dataset = (parts if len(parts) == 3 else [wh.project, *parts])[:2]
    source = f"{project}.{dataset}._voltpipe_bp_source_{uuid.uuid4().hex[:12]}"
    options = dict(vertex or {})
    output: str | None = None
    try:
        source_rows = wh.query_into(sql, parameters, source)
        if source_rows == 0:
            shown = ", ".join(f"@{k}={v['value']!r}" for k, v in parameters.items()) or "none"
            raise DataError(f"the scoring query returned no rows (parameters: {shown})")
        aiplatform = init_sdk(registry.project, registry.location, registry.api_endpoint)
        from google.api_core import exceptions as gexc

        try:
            job = aiplatform.BatchPredictionJob.create(
                job_display_name=f"{model_name}-batch-predict",
                model_name=vertex_model,
                instances_format="bigquery",
                predictions_format="bigquery",
                bigquery_source=f"bq://{source}",
                bigquery_destination_prefix=f"bq://{project}.{dataset}",
                machine_type=options.get("machine_type", "n1-standard-4"),
                starting_replica_count=int(options.get("starting_replica_count", 1)),
                max_replica_count=int(options.get("max_replica_count", 10)),
                labels=options.get("labels") or None,
                encryption_spec_key_name=registry.encryption_key,
                sync=False,
            )
            job.wait_for_resource_creation()
        except gexc.GoogleAPICallError as exc:
            raise DataError(
                f"Vertex AI refused the batch prediction job: {exc.message or exc}"
            ) from None
        state = _wait(job, poll_seconds, timeout_seconds)
        if state != "JOB_STATE_SUCCEEDED":
            error = job.gca_resource.error
            message = error.message if error is not None and error.message else state
            raise DataError(
                f"the Vertex AI batch prediction job {job.resource_name} ended {state}: {message}"
            )
        info = job.output_info
        out_dataset = str(info.bigquery_output_dataset).removeprefix("bq://")
        output = f"{out_dataset}.{info.bigquery_output_table}"
        wh.copy_table(output, destination, mode=mode)
        stats = job.gca_resource.completion_stats
        rows = int(stats.successful_count) if stats is not None else source_rows
    finally:
        wh.drop_table(source)
        if output is not None:
            wh.drop_table(output)
    seconds = time.perf_counter() - started
    return {
        "rows": rows,
        "destination": destination,
        "mode": mode,
        "backend": "vertex",
        "model": {"name": version.name, "version": version.version, "uri": version.uri},
        "vertex_job": job.resource_name,
        "source_rows": source_rows,
        "seconds": round(seconds, 3),
        "rows_per_second": round(rows / seconds) if seconds > 0 else None,
    }


def _wait(job: Any, poll_seconds: float, timeout_seconds: float | None) -> str:
    """Polls the job's state until it is terminal; returns the state's name."""
    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
    while True:
        job._sync_gca_resource()
        state = getattr(job.gca_resource.state, "name", str(job.gca_resource.state))
        if state in TERMINAL_STATES:
            return state
        if deadline is not None and time.monotonic() > deadline:
            raise DataError(
                f"the Vertex AI batch prediction job {job.resource_name} did not finish in "
                f"{timeout_seconds:.0f} s (state {state})"
            )
        time.sleep(poll_seconds)
