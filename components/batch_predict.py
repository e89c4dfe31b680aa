"""Batch predict: score a query's rows with a registered model into a warehouse table."""

from kfp import dsl

from voltpipe.config import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def batch_predict(
    warehouse: str,
    query: str,
    query_parameters: dict,
    registry_uri: str,
    model_name: str,
    destination_table: str,
    predictions: dsl.Output[dsl.Artifact],
    model: str = "champion",
    write_mode: str = "append",
    batch_size: int = 262144,
    warehouse_options: dict = {},  # noqa: B006 (KFP reads the default; never mutated)
    backend: str = "local",
    vertex_params: dict = {},  # noqa: B006 (KFP reads the default; never mutated)
):
    """Reads the rows of `query`, predicts them with `model_name`@`model` (an alias or a version
    number) and writes them to `destination_table` (`write_mode`: append or replace); with
    `backend` ``vertex``, a Vertex AI BatchPredictionJob does the scoring (`vertex_params`: its
    machine_type and replica counts). A
    forecasting model forecasts each series of the rows (its recent history) `horizon` steps
    ahead instead. The run's summary (rows, destination, model, seconds; series and horizon
    for a forecaster) is the `predictions` artifact."""
    from voltpipe.data.io import write_json_atomic
    from voltpipe.errors import exit_on_user_error
    from voltpipe.serving.batch import predict_batch, resolve_model

    with exit_on_user_error():
        if backend == "vertex":  # a Vertex AI BatchPredictionJob, BigQuery in and out
            from voltpipe.deploy.vertex_batch import predict_batch_vertex

            summary = predict_batch_vertex(
                warehouse=warehouse,
                sql=query,
                parameters=query_parameters,
                registry_uri=registry_uri,
                model_name=model_name,
                selector=model,
                destination=destination_table,
                mode=write_mode,
                warehouse_options=warehouse_options,
                vertex=vertex_params,
            )
            write_json_atomic(predictions.path, summary)
            predictions.metadata.update(
                {"rows": summary["rows"], "destination": destination_table, "backend": "vertex"}
            )
            print(
                f"voltpipe: Vertex AI job {summary['vertex_job']} wrote {summary['rows']:,} "
                f"predictions to {destination_table} in {summary['seconds']:.0f}s"
            )
            return
        version = resolve_model(registry_uri, model_name, model)
        summary = predict_batch(
            warehouse,
            query,
            query_parameters,
            version.uri,
            destination_table,
            mode=write_mode,
            batch_size=batch_size,
            warehouse_options=warehouse_options,
        )
    summary["model"] = {"name": version.name, "version": version.version, "uri": version.uri}
    write_json_atomic(predictions.path, summary)
    predictions.metadata.update(
        {
            "rows": summary["rows"],
            "destination": destination_table,
            "model_version": version.version,
        }
    )
    if "horizon" in summary:  # a forecaster: each series' next `horizon` steps
        print(
            f"voltpipe: wrote {summary['rows']:,} forecasts of {version.name} v{version.version} "
            f"({summary['series']:,} series x {summary['horizon']} steps) to {destination_table} "
            f"in {summary['seconds']:.2f}s"
        )
        return
    print(
        f"voltpipe: wrote {summary['rows']:,} predictions of {version.name} v{version.version} "
        f"to {destination_table} in {summary['seconds']:.2f}s ({summary['rows_per_second']:,} rows/s)"
    )
