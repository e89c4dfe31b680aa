"""Register: a new model version with lineage and the gate's decision; no alias moves here."""

from kfp import dsl

from voltpipe.config import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def register(
    model: dsl.Input[dsl.Model],
    evaluation: dsl.Input[dsl.Artifact],
    statistics: dsl.Input[dsl.Artifact],
    schema: dsl.Input[dsl.Artifact],
    registry_uri: str,
    model_name: str,
    query: str,
    query_parameters: dict,
    registration: dsl.Output[dsl.Artifact],
    train_data: dsl.Input[dsl.Dataset] = None,
    tracking_uri: str = "",
    reference_rows: int = 100000,
):
    """Registers the model as a new version (lineage: query, parameters, data statistics,
    metrics, gate decision); the same model registered before is reused, not copied again.
    The ``champion`` alias is moved by deploy, after its smoke test. A sample of `train_data`
    (`reference_rows` rows) is kept with the version as the drift monitoring reference. Logs
    the run to MLflow when `tracking_uri` is set; a tracking failure is reported, never fatal.
    Never cached: it writes to the registry."""
    from voltpipe.errors import exit_on_user_error
    from voltpipe.registry.promote import register_and_promote

    with exit_on_user_error():
        info = register_and_promote(
            model_dir=model.path,
            evaluation_path=evaluation.path,
            statistics_path=statistics.path,
            schema_path=schema.path,
            registry_uri=registry_uri,
            model_name=model_name,
            query=query,
            query_parameters=query_parameters,
            tracking_uri=tracking_uri,
            out_path=registration.path,
            reference_path=train_data.path if train_data is not None else None,
            reference_rows=reference_rows,
        )
    registration.metadata.update(
        {k: v for k, v in info.items() if isinstance(v, str | int | float | bool)}
    )
    print(
        f"voltpipe: registered {info['name']} version {info['version']} "
        f"(gate: {'promote' if info['promote'] else 'hold'})"
    )
    if not info["tracking"]["logged"]:
        print(f"voltpipe: tracking failed, not fatal: {info['tracking']['error']}")
