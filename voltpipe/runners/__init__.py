"""Runners: where a pipeline runs — kfp.local, Vertex AI Pipelines or a Kubeflow cluster.

Each target is a `Runner` (`voltpipe.runners.base`), picked from `RUNNERS` by `get_runner`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from voltpipe.config import VoltpipeConfig
from voltpipe.errors import ConfigError, VoltpipeError
from voltpipe.runners.base import Runner, Summary
from voltpipe.runners.kfp import KfpRunner
from voltpipe.runners.vertex import VertexRunner

__all__ = ["RUNNERS", "TARGETS", "LocalRunner", "Runner", "get_runner", "run_pipeline"]


class LocalRunner:
    """kfp.local in this Python environment (`voltpipe.runners.local.run_local`).

    A local run compiles nothing and ends before `run` returns; it has no schedules.
    """

    target = "local"

    def run(
        self,
        pipeline_name: str,
        cfg: VoltpipeConfig,
        *,
        cache: bool,
        debug: bool,
        wait: bool,
        template_tag: str | None,
    ) -> Summary:
        if template_tag:
            raise ConfigError(
                "--template-tag runs a published template on vertex or kfp, not locally"
            )
        from voltpipe.runners.local import run_local

        try:
            return run_local(pipeline_name, cfg, cache=cache, debug=debug)
        except VoltpipeError as exc:
            _alert_failure(cfg, pipeline_name, exc)
            raise

    def submit(
        self,
        cfg: VoltpipeConfig,
        pipeline_name: str,
        template_path: str | Path | None,
        *,
        cache: bool,
        wait: bool,
        parameter_values: dict[str, Any] | None = None,
        template_uri: str | None = None,
        poll_seconds: float = 10.0,
        timeout_seconds: float | None = None,
    ) -> Summary:
        """Runs `pipeline_name` from the config (locally the pipeline is built, not loaded)."""
        if template_path is not None or template_uri or parameter_values:
            raise ConfigError(
                "a local run builds its pipeline from the config: set values with --set, "
                "and run templates on vertex or kfp"
            )
        return self.run(pipeline_name, cfg, cache=cache, debug=False, wait=wait, template_tag=None)

    def wait(
        self,
        cfg: VoltpipeConfig,
        run_id: str,
        *,
        poll_seconds: float = 10.0,
        timeout_seconds: float | None = None,
        client_kwargs: dict[str, Any] | None = None,
    ) -> str:
        raise ConfigError(
            f"run {run_id}: a local run has ended when it returns; nothing to wait for"
        )

    def _no_schedules(self) -> ConfigError:
        return ConfigError("local runs are not scheduled; schedules run on: vertex, kfp")

    def create_schedule(
        self,
        cfg: VoltpipeConfig,
        pipeline_name: str,
        template_path: str | Path | None,
        *,
        cron: str,
        display_name: str,
        parameter_values: dict[str, Any] | None = None,
        cache: bool = True,
        template_uri: str | None = None,
        client_kwargs: dict[str, Any] | None = None,
    ) -> Summary:
        raise self._no_schedules()

    def list_schedules(
        self, cfg: VoltpipeConfig, *, client_kwargs: dict[str, Any] | None = None
    ) -> list[Summary]:
        raise self._no_schedules()

    def pause_schedule(
        self, cfg: VoltpipeConfig, schedule_id: str, *, client_kwargs: dict[str, Any] | None = None
    ) -> Summary:
        raise self._no_schedules()

    def resume_schedule(
        self, cfg: VoltpipeConfig, schedule_id: str, *, client_kwargs: dict[str, Any] | None = None
    ) -> Summary:
        raise self._no_schedules()

    def delete_schedule(
        self, cfg: VoltpipeConfig, schedule_id: str, *, client_kwargs: dict[str, Any] | None = None
    ) -> Summary:
        raise self._no_schedules()


RUNNERS: dict[str, Runner] = {"local": LocalRunner(), "vertex": VertexRunner(), "kfp": KfpRunner()}
TARGETS = tuple(RUNNERS)


def get_runner(target: str) -> Runner:
    """The runner of `target`.

    Raises:
        ConfigError: an unknown target, naming the valid ones.
    """
    try:
        return RUNNERS[target]
    except KeyError:
        raise ConfigError(f"unknown target {target!r}; valid: {', '.join(TARGETS)}") from None


def run_pipeline(
    name: str,
    cfg: VoltpipeConfig,
    *,
    target: str = "local",
    cache: bool = True,
    debug: bool = False,
    wait: bool = False,
    template_tag: str | None = None,
) -> Summary:
    """Runs pipeline `name` on `target` and returns the run summary.

    Locally the run always completes before this returns; on Vertex AI and Kubeflow it is
    submitted, and followed to the end when `wait` is set. `template_tag` runs a template
    published to `vertex.template_repository` (resolved to its immutable digest) instead of
    compiling one.
    """
    return get_runner(target).run(
        name, cfg, cache=cache, debug=debug, wait=wait, template_tag=template_tag
    )


def _alert_failure(cfg: VoltpipeConfig, name: str, exc: Exception) -> None:
    """A structured log line and, when configured, a webhook post for a failed run."""
    alerts = cfg.monitoring.alerts
    if "failure" not in alerts.on:
        return
    from voltpipe.monitoring.alerts import notify, structured_log_line

    event = {"model": cfg.name, "pipeline": name, "error": str(exc)}
    structured_log_line("run_failed", event)
    notify(alerts.webhook_url, event="run_failed", summary=event)
