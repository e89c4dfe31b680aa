"""The Runner protocol, what its implementations share (the poll loop, cron forms, the cloud run).

The map from a target name to its runner lives beside this module, in `voltpipe.runners`
(`RUNNERS`, `get_runner`), so that the implementations import this module and nothing imports
them back.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from voltpipe.config import VoltpipeConfig
from voltpipe.errors import ConfigError, PipelineError

Summary = dict[str, Any]
"""A run or schedule summary: JSON-able, with at least ``target`` (see the CLI's --summary-json)."""

_TZ_PREFIX = re.compile(r"^(?:CRON_TZ|TZ)=\S+\s+")
_CRON_FIELD = re.compile(r"^[\d*/,\-A-Za-z?LW#]+$")


class Runner(Protocol):
    """Where a pipeline runs: submit (and follow) runs, and manage the schedules that start them.

    Every schedule method returns ``{"id", "name", "display_name", "cron", "state" ("active" |
    "paused" | "deleted"), "target", ...}``; a cron is the usual 5 fields.
    """

    target: str

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
        """What `voltpipe run` does: prepare the config and template, submit, optionally wait."""
        ...

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
        """Submits a compiled template (or a registry `template_uri`); returns the run summary."""
        ...

    def wait(
        self,
        cfg: VoltpipeConfig,
        run_id: str,
        *,
        poll_seconds: float = 10.0,
        timeout_seconds: float | None = None,
        client_kwargs: dict[str, Any] | None = None,
    ) -> str:
        """Follows run `run_id` to its end and returns the final state; a failed run raises."""
        ...

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
    ) -> Summary: ...

    def list_schedules(
        self, cfg: VoltpipeConfig, *, client_kwargs: dict[str, Any] | None = None
    ) -> list[Summary]: ...

    def pause_schedule(
        self, cfg: VoltpipeConfig, schedule_id: str, *, client_kwargs: dict[str, Any] | None = None
    ) -> Summary: ...

    def resume_schedule(
        self, cfg: VoltpipeConfig, schedule_id: str, *, client_kwargs: dict[str, Any] | None = None
    ) -> Summary: ...

    def delete_schedule(
        self, cfg: VoltpipeConfig, schedule_id: str, *, client_kwargs: dict[str, Any] | None = None
    ) -> Summary: ...


# ----- the poll loop ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunState:
    """One read of a run: the service's state name and, for a failed run, its message."""

    state: str
    error: str = ""


def follow_run(
    read: Callable[[], RunState],
    *,
    what: str,
    url: str,
    terminal_states: Collection[str],
    failed_states: Collection[str],
    poll_seconds: float = 10.0,
    timeout_seconds: float | None = None,
) -> str:
    """Reads a run's state every `poll_seconds` until it is terminal and returns that state.

    Args:
        read: reads the run once (one GET).
        what: names the run in messages (``KFP run 123``).
        url: where a person follows the run.

    Raises:
        PipelineError: the run ended in one of `failed_states` (with the service's message),
            or `timeout_seconds` passed first.
    """
    started = time.monotonic()
    while True:
        current = read()
        if current.state in terminal_states:
            break
        if timeout_seconds is not None and time.monotonic() - started > timeout_seconds:
            raise PipelineError(
                f"{what} is still {current.state} after {timeout_seconds:.0f} s; follow it at {url}"
            )
        time.sleep(poll_seconds)
    if current.state in failed_states:
        detail = f": {current.error}" if current.error else ""
        raise PipelineError(f"{what} ended in state {current.state}{detail} (see {url})")
    return current.state


# ----- cron -------------------------------------------------------------------------------------


def compiled_caching(cache: bool) -> bool | None:
    """The run's ``enable_caching``: ``False`` turns caching off for every task; with caching on,
    ``None`` keeps the compiled per-task settings, so the steps with side effects (register,
    deploy, batch writes, alerts), compiled with caching off, are never served from a cache
    (a ``True`` here would override them on Vertex AI and KFP alike)."""
    return None if cache else False


def validate_cron(cron: str) -> str:
    """Returns `cron` normalised to single spaces after checking it has 5 fields.

    An optional ``TZ=Area/City`` or ``CRON_TZ=Area/City`` prefix is kept (Vertex AI honours it).

    Raises:
        ConfigError: naming the expression and the expected form.
    """
    text = " ".join(cron.split())
    prefix = _TZ_PREFIX.match(text)
    fields = text[prefix.end() :].split() if prefix else text.split()
    if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
        raise ConfigError(
            f"cron {cron!r}: expected 5 fields 'MINUTE HOUR DAY-OF-MONTH MONTH DAY-OF-WEEK', "
            "e.g. '0 6 * * 1' (Mondays 06:00), optionally prefixed with TZ=Europe/Berlin"
        )
    return text


def kfp_cron(cron: str) -> str:
    """Converts a 5-field cron to KFP's 6-field form (seconds first).

    Raises:
        ConfigError: a bad cron, or a time-zone prefix (KFP schedules in the cluster's zone).
    """
    text = validate_cron(cron)
    if _TZ_PREFIX.match(text):
        raise ConfigError(
            f"cron {cron!r}: Kubeflow Pipelines schedules do not take a TZ= prefix; "
            "write the time in the cluster's time zone"
        )
    return f"0 {text}"


# ----- the cloud run ----------------------------------------------------------------------------


class CloudRunner:
    """`Runner.run` for a target that runs compiled templates (Vertex AI, a KFP cluster).

    Subclasses give `target`, `check_config` (what must hold before compiling) and `submit`.
    """

    target = ""

    def cloud_config(self, cfg: VoltpipeConfig) -> VoltpipeConfig:
        """The config as a cluster run needs it: nothing may point at this laptop's files.

        MLflow tracking needs a server (`tracking.mlflow_uri`), so without one it is off rather
        than writing into a pod.
        """
        if cfg.tracking.enabled and not cfg.tracking.mlflow_uri:
            print(
                f"voltpipe: MLflow tracking is off on {self.target}: "
                "set tracking.mlflow_uri to a tracking server"
            )
            tracking = cfg.tracking.model_copy(update={"enabled": False})
            return cfg.model_copy(update={"tracking": tracking})
        return cfg

    def check_config(self, cfg: VoltpipeConfig) -> None:
        raise NotImplementedError

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
        raise NotImplementedError

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
        from voltpipe.runners.templates import compile_template, resolve_template

        cfg = self.cloud_config(cfg)
        template_path, template_uri = None, None
        if template_tag:
            host = cfg.vertex.template_repository
            if not host:
                raise ConfigError(
                    "vertex.template_repository is not set: needed to resolve --template-tag"
                )
            template_uri, _ = resolve_template(host, f"{cfg.name}-{pipeline_name}", template_tag)
        self.check_config(cfg)
        if template_uri is None:
            template_path = compile_template(
                pipeline_name, cfg, cfg.workdir / "templates" / f"{pipeline_name}.yaml"
            )
        return self.submit(
            cfg, pipeline_name, template_path, cache=cache, wait=wait, template_uri=template_uri
        )
