"""Deployment of a registered, promoted model version: a local server or a Vertex AI endpoint.

`deploy_registered` is what the ``deploy`` component calls: it deploys the version a
registration summary names (only if the gate promoted it) and, if the deployment fails, leaves
the previous champion as ``champion`` and serving.
"""

from __future__ import annotations

import logging
from typing import Any

from voltpipe.deploy.expected import ANY_CHAMPION
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
    """Deploys the version in `registration` (the register step's summary) to `target`, then
    makes it the champion: the alias moves exactly once, last, as a compare-and-swap.

    Args:
        registration: ``{version, promote, gated_against, ...}``; nothing is deployed unless
            the gate promoted the version (``promote``; older summaries: ``champion``).
            ``gated_against`` is the champion the gate compared with: if the champion moved
            since, the version is not promoted (``deployed`` false, ``champion_moved`` true).
        deploy_params: the config's ``deploy:`` section (endpoint, canary_percent, ...).
        vertex_params: ``project``, ``location`` and optionally ``api_endpoint``, ``labels``.

    Returns:
        The deployment summary, with ``deployed``, ``target`` and ``reason``.

    Raises:
        ConfigError: an unknown target, or Vertex settings missing.
        DataError: the deployment failed; the previous champion keeps serving.
    """
    if target not in TARGETS:
        raise ConfigError(f"deploy target {target!r}: expected one of {', '.join(TARGETS)}")
    version = str(registration.get("version") or "")
    if not version:
        raise ConfigError("the registration names no version to deploy")
    promote = registration.get("promote", registration.get("champion"))
    if not promote:
        return {
            "deployed": False,
            "target": target,
            "name": model_name,
            "version": version,
            "reason": f"the gate did not promote version {version}",
        }
    params = dict(deploy_params or {})
    expected = _expected_champion(registration)
    if target == "local":
        from voltpipe.deploy.local import deploy_local

        summary = deploy_local(
            registry_uri,
            model_name,
            version,
            previous_version=registration.get("previous_champion"),
            expected_champion=expected,
        )
        return {"deployed": not summary["champion_moved"], **summary}
    summary = _deploy_registered_vertex(
        registry_uri, model_name, version, expected, params, dict(vertex_params or {})
    )
    return {"deployed": not summary.get("champion_moved", False), **summary}


def _expected_champion(registration: dict[str, Any]) -> Any:
    """The champion the gate compared with (None: there was none); `ANY_CHAMPION` for a summary
    written before registrations recorded it."""
    if "gated_against" not in registration:
        return ANY_CHAMPION
    value = registration["gated_against"]
    return str(value) if value not in (None, "") else None


def _deploy_registered_vertex(
    registry_uri: str,
    model_name: str,
    version: str,
    expected: Any,
    params: dict[str, Any],
    vertex: dict[str, Any],
) -> dict[str, Any]:
    from voltpipe.deploy.local import champion_moved_message, sample_instances
    from voltpipe.deploy.vertex import deploy_vertex
    from voltpipe.registry import open_registry
    from voltpipe.registry.base import CHAMPION
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
    current = registry.get(model_name, CHAMPION)
    previous = current.version if current is not None and current.version != version else None
    already = current is not None and current.version == version
    if expected is not ANY_CHAMPION and not already and previous != expected:
        # Checked before traffic moves too: a version gated against an old champion is not
        # deployed at all.
        reason = champion_moved_message(model_name, version, expected, previous or "")
        log.warning("%s", reason)
        return {
            "target": "vertex",
            "name": model_name,
            "version": version,
            "champion": previous,
            "moved": False,
            "champion_moved": True,
            "reason": reason,
            "deployed_to_endpoint": False,
        }
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
        # The alias never moved: it moves only after a healthy deployment.
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
    # The champion moves last, and only if no other run moved it since this run's evaluate.
    if expected is ANY_CHAMPION:
        registry.set_alias(model_name, CHAMPION, version)
        moved_to = None
    else:
        moved_to = registry.compare_and_set_alias(model_name, CHAMPION, version, expected=expected)
    if moved_to is not None:
        reason = champion_moved_message(model_name, version, expected, moved_to)
        log.warning("%s", reason)
        return summary | {
            "champion": moved_to or None,
            "moved": False,
            "champion_moved": True,
            "reason": reason,
        }
    return summary | {
        "champion": version,
        "previous_champion": previous,
        "moved": not already,
        "champion_moved": False,
        "reason": f"version {version} passed its health check and is the champion",
    }
