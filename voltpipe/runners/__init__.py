"""Runners: where a pipeline runs — kfp.local, Vertex AI Pipelines or a Kubeflow cluster."""

from __future__ import annotations

from typing import Any

from voltpipe.config import VoltpipeConfig
from voltpipe.errors import ConfigError, VoltpipeError

TARGETS = ("local", "vertex", "kfp")


def run_pipeline(
    name: str,
    cfg: VoltpipeConfig,
    *,
    target: str = "local",
    cache: bool = True,
    debug: bool = False,
    wait: bool = False,
    template_tag: str | None = None,
) -> dict[str, Any]:
    """Runs pipeline `name` on `target` and returns the run summary.

    Locally the run always completes before this returns; on Vertex AI and Kubeflow it is
    submitted, and followed to the end when `wait` is set. `template_tag` runs a template
    published to `vertex.template_repository` (resolved to its immutable digest) instead of
    compiling one.
    """
    if target not in TARGETS:
        raise ConfigError(f"unknown target {target!r}; valid: {', '.join(TARGETS)}")
    if target == "local":
        if template_tag:
            raise ConfigError(
                "--template-tag runs a published template on vertex or kfp, not locally"
            )
        from voltpipe.runners.local import run_local

        try:
            return run_local(name, cfg, cache=cache, debug=debug)
        except VoltpipeError as exc:
            _alert_failure(cfg, name, exc)
            raise
    from voltpipe.runners.templates import compile_template, resolve_template

    cfg = for_cloud(cfg, target)

    template_path, template_uri = None, None
    if template_tag:
        host = cfg.vertex.template_repository
        if not host:
            raise ConfigError(
                "vertex.template_repository is not set: needed to resolve --template-tag"
            )
        template_uri, _ = resolve_template(host, f"{cfg.name}-{name}", template_tag)
    if target == "vertex":
        from voltpipe.runners.vertex import check_vertex_config, submit_vertex

        check_vertex_config(cfg)
        if template_uri is None:
            template_path = compile_template(name, cfg, cfg.workdir / "templates" / f"{name}.yaml")
        return submit_vertex(
            cfg, name, template_path, cache=cache, wait=wait, template_uri=template_uri
        )
    from voltpipe.runners.kfp import submit_kfp
    from voltpipe.runners.vertex import require_remote_warehouse

    require_remote_warehouse(cfg, "Kubeflow")
    if template_uri is None:
        template_path = compile_template(name, cfg, cfg.workdir / "templates" / f"{name}.yaml")
    return submit_kfp(cfg, name, template_path, cache=cache, wait=wait, template_uri=template_uri)


def _alert_failure(cfg: VoltpipeConfig, name: str, exc: Exception) -> None:
    """A structured log line and, when configured, a webhook post for a failed run."""
    alerts = cfg.monitoring.alerts
    if "failure" not in alerts.on:
        return
    from voltpipe.monitoring.alerts import notify, structured_log_line

    event = {"model": cfg.name, "pipeline": name, "error": str(exc)}
    structured_log_line("run_failed", event)
    notify(alerts.webhook_url, event="run_failed", summary=event)


def for_cloud(cfg: VoltpipeConfig, target: str) -> VoltpipeConfig:
    """The config as a cluster run needs it: nothing may point at this laptop's files.

    On Vertex AI the registry (and deployment) is Vertex's own; MLflow tracking needs a
    server (`tracking.mlflow_uri`), so without one it is off rather than writing into a pod.
    """
    update: dict[str, Any] = {}
    if target == "vertex" and cfg.deploy.target == "local":
        print(
            "voltpipe: on Vertex AI the model registry and deployment are Vertex's (deploy.target: vertex)"
        )
        update["deploy"] = cfg.deploy.model_copy(update={"target": "vertex"})
    if cfg.tracking.enabled and not cfg.tracking.mlflow_uri:
        print(
            f"voltpipe: MLflow tracking is off on {target}: set tracking.mlflow_uri to a tracking server"
        )
        update["tracking"] = cfg.tracking.model_copy(update={"enabled": False})
    return cfg.model_copy(update=update) if update else cfg
