"""Deploy: the promoted version to a local server (champion alias) or a Vertex AI endpoint."""

from kfp import dsl

from voltpipe.config import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def deploy(
    registration: dsl.Input[dsl.Artifact],
    registry_uri: str,
    model_name: str,
    deployment: dsl.Output[dsl.Artifact],
    target: str = "local",
    deploy_params: dict = {},  # noqa: B006 - KFP parameter defaults must be literals
    vertex_params: dict = {},  # noqa: B006
):
    """Deploys the version `registration` names if the gate promoted it: ``local`` smoke-tests
    it; ``vertex`` deploys it to the endpoint with the configured canary split and rolls back
    if the health check fails. Then, last, ``champion`` moves to it (a hot-reloading server
    follows) as a compare-and-swap: if another run moved the champion since this run's
    evaluate, nothing moves and the summary says so. On a failed deployment the previous
    champion stays ``champion`` and serving, and the step fails. Never cached.
    `deploy_params` is the config's ``deploy:`` section; `vertex_params` holds project,
    location, api_endpoint and labels."""
    from voltpipe.data.io import read_json, write_json_atomic
    from voltpipe.deploy import deploy_registered
    from voltpipe.errors import exit_on_user_error

    with exit_on_user_error():
        summary = deploy_registered(
            read_json(registration.path),
            registry_uri=registry_uri,
            model_name=model_name,
            target=target,
            deploy_params=deploy_params,
            vertex_params=vertex_params,
        )
    write_json_atomic(deployment.path, summary)
    deployment.metadata.update(
        {k: v for k, v in summary.items() if isinstance(v, str | int | float | bool)}
    )
    print(
        f"voltpipe: {model_name} version {summary['version']} "
        + (
            f"deployed ({target}) and champion"
            if summary["deployed"]
            else f"not deployed: {summary['reason']}"
        )
    )
