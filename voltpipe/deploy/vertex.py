"""Deploying a registered model version to a Vertex AI endpoint: canary split, pruning, rollback.

google-cloud-aiplatform is imported inside the functions (through `registry.vertex.init_sdk`).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from voltpipe.errors import ConfigError
from voltpipe.registry.vertex import init_sdk, label_value

log = logging.getLogger("voltpipe.deploy")

NEW = "0"  # the key of the model being deployed in a deployModel traffic split


def canary_split(previous: dict[str, int], kept: list[str], canary_percent: int) -> dict[str, int]:
    """The traffic split for a deployment: `canary_percent` to the new model (key ``"0"``),
    the rest shared among the `kept` previous deployed models in proportion to their `previous`
    share (equally if none had traffic). Percentages are whole and sum to 100. With no model
    kept (the first deployment) the new model gets everything.

    Raises:
        ConfigError: `canary_percent` is not 1..100.
    """
    if not 1 <= canary_percent <= 100:
        raise ConfigError(f"deploy.canary_percent {canary_percent}: expected 1..100")
    if not kept:
        return {NEW: 100}
    rest = 100 - canary_percent
    weights = {k: previous.get(k, 0) for k in kept}
    if not any(weights.values()):
        weights = dict.fromkeys(kept, 1)
    shares = _apportion(weights, rest) if rest else {}
    return {NEW: canary_percent, **{k: v for k, v in shares.items() if v > 0}}


def _apportion(weights: dict[str, int], total: int) -> dict[str, int]:
    """`total` split in proportion to `weights` (largest remainder; ties to the first key)."""
    whole = sum(weights.values())
    exact = {k: total * w / whole for k, w in weights.items()}
    shares = {k: int(v) for k, v in exact.items()}
    order = sorted(exact, key=lambda k: shares[k] - exact[k])
    for k in order[: total - sum(shares.values())]:
        shares[k] += 1
    return shares


def deploy_vertex(
    *,
    project: str,
    location: str,
    endpoint_name: str,
    model: str,
    version: str | None = None,
    machine_type: str = "n1-standard-2",
    min_replicas: int = 1,
    max_replicas: int = 1,
    canary_percent: int = 100,
    keep_versions: int = 2,
    health_check: bool = True,
    health_instances: list[dict[str, Any]] | None = None,
    health_check_attempts: int = 3,
    api_endpoint: str | None = None,
    labels: dict[str, str] | None = None,
    deploy_timeout_seconds: float | None = None,
    encryption_key: str | None = None,
) -> dict[str, Any]:
    """Deploys `model` (a Model resource name, optionally ``@VERSION``, or with `version`) to the
    endpoint with display name `endpoint_name` (created if missing).

    The new deployed model gets `canary_percent` of the traffic and the newest
    ``keep_versions - 1`` previous deployed models the rest, in proportion to their shares; older
    deployed models get none and are undeployed once the new one passed its health check (an
    `endpoint.predict` of `health_instances` until the new deployed model itself answered
    `health_check_attempts` times, see `_health_check`). If the deployment
    or the health check fails, the new deployed model is undeployed and the previous traffic
    split restored: the summary then has ``rolled_back: true`` and ``error``.

    Returns:
        ``{endpoint, endpoint_name, model, deployed_model_id, traffic_before, traffic_after,
        undeployed, rolled_back, error, health_check}``.

    Raises:
        ConfigError: bad replica counts, canary or keep_versions (before anything is changed).
    """
    if keep_versions < 1:
        raise ConfigError(f"deploy.keep_versions {keep_versions}: expected >= 1")
    if canary_percent < 100 and keep_versions < 2:
        raise ConfigError(
            f"deploy.canary_percent {canary_percent} needs the previous deployed model kept for "
            "the other traffic: set deploy.keep_versions >= 2, or canary_percent: 100"
        )
    if not 1 <= min_replicas <= max_replicas:
        raise ConfigError(
            f"deploy.min_replicas {min_replicas} / max_replicas {max_replicas}: "
            "expected 1 <= min_replicas <= max_replicas"
        )
    aiplatform = init_sdk(project, location, api_endpoint)
    base, _, at_version = model.partition("@")
    version = version or at_version or None
    target = aiplatform.Model(base, version=version) if version else aiplatform.Model(base)

    # A new endpoint gets the model's CMEK key (an organisation that mandates CMEK refuses one
    # without), or `encryption_key`.
    spec = target.encryption_spec
    key = encryption_key or (spec.kms_key_name if spec is not None else None) or None
    endpoint = _get_or_create_endpoint(aiplatform, endpoint_name, labels or {}, key)
    before = {k: int(v) for k, v in endpoint.traffic_split.items()}
    previous = sorted(endpoint.list_models(), key=_age_key, reverse=True)  # newest first
    previous_ids = [d.id for d in previous]
    kept = previous_ids[: keep_versions - 1]
    pruned = previous_ids[keep_versions - 1 :]
    split = canary_split(before, kept, canary_percent)
    summary: dict[str, Any] = {
        "endpoint": endpoint.resource_name,
        "endpoint_name": endpoint_name,
        "model": target.resource_name,
        "model_version": target.version_id,
        "deployed_model_id": None,
        "traffic_before": before,
        "traffic_after": before,
        "undeployed": [],
        "rolled_back": False,
        "error": None,
        "health_check": "skipped",
    }
    log.info("deploying %s@%s to %s with traffic %s", base, target.version_id, endpoint_name, split)
    try:
        endpoint.deploy(
            target,
            deployed_model_display_name=f"{target.display_name}-v{target.version_id}",
            traffic_split=split,
            machine_type=machine_type,
            min_replica_count=min_replicas,
            max_replica_count=max_replicas,
            deploy_request_timeout=deploy_timeout_seconds,
            sync=True,
        )
        new_ids = [d.id for d in _refresh(aiplatform, endpoint).list_models()]
        [new_id] = [i for i in new_ids if i not in previous_ids]
        summary["deployed_model_id"] = new_id
        if health_check:
            summary["health_check"] = _health_check(
                endpoint, health_instances, health_check_attempts, new_id, split[NEW]
            )
    except Exception as exc:
        log.error("deployment to %s failed, rolling back: %s", endpoint_name, exc)
        summary["error"] = f"{type(exc).__name__}: {exc}"
        summary["rolled_back"] = True
        summary["traffic_after"] = _roll_back(aiplatform, endpoint, before, previous_ids)
        return summary
    for old in reversed(pruned):  # oldest first; they carry no traffic any more
        endpoint.undeploy(old)
        summary["undeployed"].append(old)
    summary["traffic_after"] = {
        k: int(v) for k, v in _refresh(aiplatform, endpoint).traffic_split.items()
    }
    return summary


def _get_or_create_endpoint(
    aiplatform: Any, name: str, labels: dict[str, str], encryption_key: str | None = None
) -> Any:
    if not name or '"' in name:
        raise ConfigError(f"invalid endpoint display name {name!r}")
    found = aiplatform.Endpoint.list(filter=f'display_name="{name}"', order_by="create_time")
    if found:
        return aiplatform.Endpoint(found[0].resource_name)  # a full read, with deployed models
    clean = {label_value(k): label_value(v) for k, v in labels.items()}
    return aiplatform.Endpoint.create(
        display_name=name,
        labels=clean or None,
        encryption_spec_key_name=encryption_key,
        sync=True,
    )


def _refresh(aiplatform: Any, endpoint: Any) -> Any:
    endpoint._sync_gca_resource()
    return endpoint


def _age_key(deployed: Any) -> tuple[Any, int]:
    ts = deployed.create_time
    stamp = ts.timestamp() if hasattr(ts, "timestamp") else 0.0
    return stamp, int(deployed.id) if str(deployed.id).isdigit() else 0


# A canary health check keeps predicting until the new deployed model itself has answered
# `attempts` times; the request budget makes missing a healthy canary less likely than this.
MISS_PROBABILITY = 1e-6


def health_check_budget(attempts: int, share_percent: int) -> int:
    """Requests allowed for `attempts` answers from a deployed model with `share_percent` of the
    traffic: ``attempts`` times the requests after which a model with that share has been hit
    with probability ``1 - MISS_PROBABILITY`` (all requests at 100 %)."""
    attempts = max(1, attempts)
    if share_percent >= 100:
        return attempts
    per_hit = math.ceil(math.log(MISS_PROBABILITY) / math.log(1 - share_percent / 100))
    return attempts * per_hit


def _health_check(
    endpoint: Any,
    instances: list[dict[str, Any]] | None,
    attempts: int,
    new_id: str,
    share_percent: int,
) -> str:
    """Checks the newly deployed model itself: predicts `instances` until `attempts` answers
    came from deployed model `new_id` (each answer names the deployed model that served it);
    every answer must have one prediction per instance.

    Vertex routes each request at random by the traffic split, so at a 10 % canary a fixed few
    requests often never reach the new model; the budget (`health_check_budget`) keeps the
    chance of that below MISS_PROBABILITY for a healthy canary.

    Raises:
        RuntimeError: a bad answer, or the new model did not answer within the budget.
    """
    if not instances:
        log.warning("no sample instances: the post-deploy health check is skipped")
        return "skipped: no sample instances"
    budget = health_check_budget(attempts, share_percent)
    served = sent = 0
    while served < max(1, attempts) and sent < budget:
        response = endpoint.predict(instances=instances)
        sent += 1
        if len(response.predictions) != len(instances):
            raise RuntimeError(
                f"the endpoint answered {len(response.predictions)} predictions "
                f"for {len(instances)} instances (deployed model {response.deployed_model_id})"
            )
        if str(response.deployed_model_id) == str(new_id):
            served += 1
    if served < max(1, attempts):
        raise RuntimeError(
            f"the new deployed model {new_id} ({share_percent} % of the traffic) answered "
            f"{served} of {sent} health-check requests, fewer than {attempts}"
        )
    log.info("health check: %d of %d requests served by %s", served, sent, new_id)
    return "passed"


def _roll_back(
    aiplatform: Any, endpoint: Any, before: dict[str, int], previous_ids: list[str]
) -> dict[str, int]:
    """Undeploys what this deployment added and restores `before`; returns the split after."""
    endpoint = _refresh(aiplatform, endpoint)
    for deployed in endpoint.list_models():
        if deployed.id in previous_ids:
            continue
        # The restored split names only the previous models, so the new one has no traffic left.
        endpoint.undeploy(deployed.id, traffic_split=dict(before) if before else None)
    return {k: int(v) for k, v in _refresh(aiplatform, endpoint).traffic_split.items()}
