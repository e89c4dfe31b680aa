"""Deployment of a registered, promoted model version: a local server or a Vertex AI endpoint.

`deploy_registered` is what the ``deploy`` component calls: it deploys the version a
registration summary names (only if the gate promoted it) and, if the deployment fails, leaves
the previous champion as ``champion`` and serving.
"""

from __future__ import annotations

import logging
from typing import Any

from voltpipe.errors import ConfigError, DataError

log = logging.getLogger("voltpipe.deploy")

__all__ = ["TARGETS", "deploy_registered"]

TARGETS = ("local", "vertex")
# deploy_params keys deploy_vertex takes (the rest of the config's `deploy:` is ignored here).
_VERTEX_DEPLOY_KEYS = (
    "machine_type",
    "min_replicas",
    "max_replicas",
    "canary_percent",
    "keep_versions",
    "health_check",
    "health_check_attempts",
    "deploy_timeout_seconds",
)


def deploy_registered(
    registration: dict[str, Any],
    *,
    registry_uri: str,
    model_name: str,
    target: str = "local",
    deploy_params: dict[str, Any] | None = None,
    vertex_params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Deploys the version in `registration` (the register step's summary) to `target`.

    Args:
        registration: ``{version, champion, previous_champion, ...}``; nothing is deployed
            unless ``champion`` is true (the gate promoted the version).
        deploy_params: the config's ``deploy:`` section (endpoint, canary_percent, ...).
        vertex_params: ``project``, ``location`` and optionally ``api_endpoint``, ``labels``.

    Returns:
        The deployment summary, with ``deployed`` and ``target``.

    Raises:
        ConfigError: an unknown target, or Vertex settings missing.
        DataError: the deployment failed; the previous champion keeps serving.
    """
    if target not in TARGETS:
        raise ConfigError(f"deploy target {target!r}: expected one of {', '.join(TARGETS)}")
    version = str(registration.get("version") or "")
    if not version:
        raise ConfigError("the registration names no version to deploy")
    if not registration.get("champion"):
        return {
            "deployed": False,
            "target": target,
            "name": model_name,
            "version": version,
            "reason": f"the gate did not promote version {version}",
        }
    params = dict(deploy_params or {})
    previous = registration.get("previous_champion")
    if target == "local":
        from voltpipe.deploy.local import deploy_local

        return {
            "deployed": True,
            **deploy_local(registry_uri, model_name, version, previous_version=previous),
        }
    return {
        "deployed": True,
        **_deploy_registered_vertex(
            registry_uri, model_name, version, previous, params, dict(vertex_params or {})
        ),
    }


def _deploy_registered_vertex(
    registry_uri: str,
    model_name: str,
    version: str,
    previous: str | None,
    params: dict[str, Any],
    vertex: dict[str, Any],
) -> dict[str, Any]:
    from voltpipe.deploy.local import sample_instances
    from voltpipe.deploy.vertex import deploy_vertex
    from voltpipe.registry.base import CHAMPION, open_registry
    from voltpipe.registry.vertex import VertexRegistry

    registry = open_registry(registry_uri)
    if not isinstance(registry, VertexRegistry):
        raise ConfigError(
            f"deploy target vertex needs the model in the Vertex AI Model Registry; the registry "
            f"{registry_uri!r} is not vertex://PROJECT/LOCATION"
        )
    found = registry.get(model_name, version)
    if found is None:
        raise ConfigError(f"model {model_name!r} has no version {version} in {registry_uri}")
    mounted = registry.local_path(found.uri)
    instances = params.get("health_instances") or (
        sample_instances(mounted) if mounted is not None else None
    )
    summary = deploy_vertex(
        project=vertex.get("project") or registry.project,
        location=vertex.get("location") or registry.location,
        api_endpoint=vertex.get("api_endpoint") or registry.api_endpoint,
        labels=vertex.get("labels") or registry.labels,
        endpoint_name=params.get("endpoint") or f"{model_name}-endpoint",
        model=found.metadata["vertex_model"],
        version=version,
        health_instances=instances,
        **{k: params[k] for k in _VERTEX_DEPLOY_KEYS if params.get(k) is not None},
    )
    summary |= {"target": "vertex", "name": model_name, "version": version}
    if summary["rolled_back"]:
        current = registry.get(model_name, CHAMPION)
        if previous and current is not None and current.version == version:
            registry.set_alias(model_name, CHAMPION, previous)
        keeps = (
            f"the previous champion (version {previous}) keeps serving"
            if previous
            else "no previous model was serving"
        )
        raise DataError(
            f"deploying {model_name} version {version} to endpoint {summary['endpoint_name']} "
            f"failed and was rolled back (traffic {summary['traffic_after']}); {keeps}: "
            f"{summary['error']}"
        )
    return summary
