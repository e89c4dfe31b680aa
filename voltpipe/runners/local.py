"""The local runner: kfp.local with the SubprocessRunner, in this Python environment."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import re
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from voltpipe.config import VoltpipeConfig
from voltpipe.errors import ERROR_MARKER, DataError, PipelineError
from voltpipe.runners.preflight import (
    check_local_backends,
    check_query,
    ensure_embedded_warehouse,
)

# Lines of a step's own output shown without --debug: voltpipe's messages and Keras progress.
_SHOWN_PREFIXES = ("voltpipe", "Epoch ")
_EXCEPTION_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception)): (.*)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class _StepOutput(io.TextIOBase):
    """Stands in for stdout while kfp.local runs: logs everything, shows the useful lines,
    and remembers the steps' error messages."""

    def __init__(self, real: TextIO, log: TextIO, debug: bool) -> None:
        self.real, self.log, self.debug = real, log, debug
        self.messages: list[str] = []
        self.last_exception: str | None = None
        self._partial = ""

    def write(self, text: str) -> int:
        self.log.write(text)
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            if ERROR_MARKER in line:
                self.messages.append(line.split(ERROR_MARKER, 1)[1].strip())
            elif m := _EXCEPTION_LINE.match(line):
                self.last_exception = f"{m.group(1)}: {m.group(2)}"
            if self.debug or line.lstrip().startswith(_SHOWN_PREFIXES) or " loss: " in line:
                self.real.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self.log.flush()
        self.real.flush()


@contextlib.contextmanager
def _capture_steps(log_path: Path, debug: bool) -> Iterator[_StepOutput]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log:
        tee = _StepOutput(sys.stdout, log, debug)
        old = sys.stdout
        sys.stdout = tee
        try:
            yield tee
        finally:
            sys.stdout = old


def _read_json(path: str) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def _ensure_champion(cfg: VoltpipeConfig, *, cache: bool, debug: bool) -> None:
    """On the embedded demo warehouse, trains a first champion when there is none to monitor."""
    from voltpipe.registry import open_registry

    if open_registry(cfg.registry_uri).get(cfg.name) is not None:
        return
    if not cfg.uses_embedded_warehouse:
        raise DataError(
            f"model {cfg.name!r} has no champion to monitor: run `voltpipe run training` first"
        )
    print(f"voltpipe: no {cfg.name} champion yet; training one on the demo data first")
    run_local("training", cfg, cache=cache, debug=debug)


def run_local(
    name: str, cfg: VoltpipeConfig, *, cache: bool = True, debug: bool = False
) -> dict[str, Any]:
    """Runs pipeline `name` with kfp.local and returns the run summary.

    Raises:
        VoltpipeError: a bad config, query or data (the failing step's own message).
    """
    from kfp import local

    from voltpipe.pipelines import build_pipeline

    started = time.perf_counter()
    workdir = cfg.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    check_local_backends(cfg)
    ensure_embedded_warehouse(cfg)
    check_query(cfg)
    if name == "monitoring":
        _ensure_champion(cfg, cache=cache, debug=debug)
    pipeline = build_pipeline(name, cfg)
    from voltpipe.registry import open_registry

    registry = open_registry(cfg.registry_uri)
    versions_before = {v.version for v in registry.versions(cfg.name)}

    root = workdir / "pipeline-root"
    root.mkdir(parents=True, exist_ok=True)
    before = set(os.listdir(root))
    run_id = f"{cfg.name}-{name}-{dt.datetime.now(dt.UTC).strftime('%Y%m%d-%H%M%S')}"
    log_path = workdir / "logs" / f"{run_id}.log"
    # Steps run as child processes of this interpreter; keep TensorFlow's C++ logging quiet.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(root),
        raise_on_error=True,
        enable_caching=cache,
        cache_root=str(workdir / "cache"),
    )
    with _capture_steps(log_path, debug) as steps, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*non-Python base image.*")
        try:
            outputs = pipeline()
        except RuntimeError as exc:
            kfp_message = _ANSI.sub("", str(exc)).split("\n")[0]
            failed = re.search(r"Inner task failed: '([^']+)'", kfp_message)
            step = f"step {failed.group(1)!r} failed: " if failed else ""
            detail = steps.messages[-1] if steps.messages else (steps.last_exception or kfp_message)
            raise PipelineError(f"{step}{detail} (full log: {log_path})") from exc
    created = sorted(set(os.listdir(root)) - before)
    if created:
        run_id = created[-1]
    artifacts = {
        k: _read_json(v.path) for k, v in outputs.outputs.items() if Path(v.path).is_file()
    }
    if name == "training":
        summary = _training_summary(artifacts)
    elif name == "prediction":
        summary = _prediction_summary(artifacts)
    else:
        summary = _monitoring_summary(artifacts, cfg, versions_before)
    return {
        "pipeline": name,
        "status": "succeeded",
        "target": "local",
        "run_id": run_id,
        **summary,
        "workdir": str(workdir),
        "log": str(log_path),
        "seconds": round(time.perf_counter() - started, 2),
    }


def _model_fields(registration: dict[str, Any], reason: str) -> dict[str, Any]:
    return {
        "model": {
            "name": registration["name"],
            "version": registration["version"],
            "uri": registration["uri"],
        },
        "champion": {
            "promoted": registration["champion"],
            "version": registration["champion_version"],
            "previous_version": registration["previous_champion"],
            "reason": reason,
        },
        "mlflow_run_id": registration.get("mlflow_run_id"),
    }


def _training_summary(outputs: dict[str, Any]) -> dict[str, Any]:
    evaluation = outputs["evaluation"]
    return {
        "metrics": {"test": evaluation["metrics"]},
        **_model_fields(outputs["registration"], evaluation["decision"]["reason"]),
        **_candidates(outputs["registration"]),
        **_training(outputs["registration"]),
    }


def _training(registration: dict[str, Any]) -> dict[str, Any]:
    """How the fit went: ``{epochs_run, best_epoch, stopped_by, warnings}`` (``stopped_by``:
    early_stopping, epoch_cap or time_budget; a warning when the best epoch was the last)."""
    training = registration.get("training")
    return {"training": training} if training else {}


def _candidates(registration: dict[str, Any]) -> dict[str, Any]:
    """The family trained and, for ``model.family: auto``, every candidate's validation
    score and fit time (``{family, metric, score, fit_seconds, chosen, ...}``)."""
    if not registration.get("family"):
        return {}
    return {"family": registration["family"], "candidates": registration.get("candidates") or []}


def _prediction_summary(outputs: dict[str, Any]) -> dict[str, Any]:
    """Rows written, where, by which model version, and how long the step took."""
    p = outputs["predictions"]
    return {
        "predictions": {
            "rows": p["rows"],
            "destination": p["destination"],
            "model": p["model"],
            "seconds": p["seconds"],
        }
    }


def _monitoring_summary(
    outputs: dict[str, Any], cfg: VoltpipeConfig, versions_before: set[str]
) -> dict[str, Any]:
    """Drift verdict plus, when this run retrained, the new version from the registry."""
    from voltpipe.registry import open_registry

    details = outputs["details"]
    registry = open_registry(cfg.registry_uri)
    new = [v for v in registry.versions(cfg.name) if v.version not in versions_before]
    champion = registry.get(cfg.name)
    summary: dict[str, Any] = {
        "drift_detected": bool(details["drift_detected"]),
        "retrained": bool(new),
        "drifted_features": list(details.get("drifted_features", [])),
        "metrics": {},
    }
    if new:
        meta = new[-1].metadata
        summary["metrics"] = {"test": meta["metrics"]["test"]}
        summary.update(
            _model_fields(
                {
                    "name": cfg.name,
                    "version": new[-1].version,
                    "uri": new[-1].uri,
                    "champion": champion is not None and champion.version == new[-1].version,
                    "champion_version": champion.version if champion else None,
                    "previous_champion": details.get("champion_version"),
                },
                meta["decision"]["reason"],
            )
        )
    else:
        reason = (
            "no drift detected: the champion stays"
            if not details["drift_detected"]
            else "drift detected; retraining is off (monitoring.retrain_on_drift)"
        )
        summary.update(
            _model_fields(
                {
                    "name": cfg.name,
                    "version": champion.version if champion else None,
                    "uri": champion.uri if champion else None,
                    "champion": False,
                    "champion_version": champion.version if champion else None,
                    "previous_champion": champion.version if champion else None,
                },
                reason,
            )
        )
    return summary
