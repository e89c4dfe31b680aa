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
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from voltpipe.config import VoltpipeConfig
from voltpipe.errors import ERROR_MARKER, DataError, PipelineError, VoltpipeError
from voltpipe.runners.preflight import (
    check_local_backends,
    check_query,
    ensure_embedded_warehouse,
)
from voltpipe.tracking.redact import redact

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
        self.log_error: OSError | None = None
        self._partial = ""

    def write(self, text: str) -> int:
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            # Credentials (URL passwords, tokens, webhook paths) never reach the log or screen.
            line = redact(line)
            self._log_line(line + "\n")
            if ERROR_MARKER in line:
                self.messages.append(line.split(ERROR_MARKER, 1)[1].strip())
            elif m := _EXCEPTION_LINE.match(line):
                self.last_exception = f"{m.group(1)}: {m.group(2)}"
            if self.debug or line.lstrip().startswith(_SHOWN_PREFIXES) or " loss: " in line:
                self.real.write(line + "\n")
        return len(text)

    def _log_line(self, text: str) -> None:
        if self.log_error is not None:
            return
        try:
            self.log.write(text)
        except OSError as exc:  # a full disk: the run goes on, the log says it stopped
            self.log_error = exc
            self.real.write(
                f"voltpipe: the run log stopped ({exc.strerror or exc}); the run goes on\n"
            )

    def flush(self) -> None:
        if self.log_error is not None:
            return
        try:
            self.log.flush()
        except OSError as exc:
            self.log_error = exc
        self.real.flush()


@contextlib.contextmanager
def _capture_steps(log_path: Path, debug: bool) -> Iterator[_StepOutput]:
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "x")  # noqa: SIM115 - closed in the finally below
    except OSError as exc:
        raise DataError(
            f"cannot write the run log {log_path} ({exc.strerror or exc}): the work dir must be "
            "writable with free space; set `workdir` in the config to another folder"
        ) from None
    tee = _StepOutput(sys.stdout, log, debug)
    old = sys.stdout
    sys.stdout = tee
    try:
        yield tee
    finally:
        sys.stdout = old
        if tee._partial:
            tee._log_line(redact(tee._partial))
        with contextlib.suppress(OSError):  # a full disk: reported by _log_line already
            log.close()


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
    _writable_workdir(workdir)
    check_local_backends(cfg)
    ensure_embedded_warehouse(cfg)
    check_query(cfg)
    from voltpipe.runners.sizing import warn_before_run

    warn_before_run(name, cfg, target="local")  # a step that may not fit this machine's memory
    champion_problem = None
    if name == "monitoring":
        _ensure_champion(cfg, cache=cache, debug=debug)
        champion_problem = _champion_problem(cfg)
    pipeline = build_pipeline(name, cfg)
    from voltpipe.registry import open_registry

    registry = open_registry(cfg.registry_uri)
    versions_before = {v.version for v in registry.versions(cfg.name)}
    champion_before = _champion_version(cfg)

    root = workdir / "pipeline-root"
    root.mkdir(parents=True, exist_ok=True)
    before = set(os.listdir(root))
    # Unique per run, even for runs started in the same second from several processes.
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S-%f")
    run_id = f"{cfg.name}-{name}-{stamp}-{uuid.uuid4().hex[:6]}"
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
    with (
        _capture_steps(log_path, debug) as steps,
        _recording_exit_codes() as exit_codes,
        warnings.catch_warnings(),
    ):
        warnings.filterwarnings("ignore", message=".*non-Python base image.*")
        try:
            outputs = pipeline()
        except RuntimeError as exc:
            kfp_message = _ANSI.sub("", str(exc)).split("\n")[0]
            failed = re.search(r"Inner task failed: '([^']+)'", kfp_message)
            step = f"step {failed.group(1)!r} failed: " if failed else ""
            detail = steps.messages[-1] if steps.messages else steps.last_exception
            killed = signal_name(exit_codes[-1]) if exit_codes else None
            if detail is None and failed:
                if killed:
                    step = ""  # the message names the step and the signal
                detail = _killed_step_message(failed.group(1), root, before, killed)
            raise PipelineError(f"{step}{detail or kfp_message} (full log: {log_path})") from exc
    created = set(os.listdir(root)) - before
    run_folder = _own_run_folder(root, created, outputs.outputs.values())
    if run_folder is not None:
        run_id = run_folder
    artifacts = {
        k: _read_json(v.path) for k, v in outputs.outputs.items() if Path(v.path).is_file()
    }
    if name == "training":
        summary = _training_summary(artifacts, cfg, champion_before, root / run_id)
    elif name == "prediction":
        summary = _prediction_summary(artifacts)
    else:
        summary = _monitoring_summary(artifacts, cfg, versions_before)
        if champion_problem:
            summary["champion_problem"] = champion_problem
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


def _champion_problem(cfg: VoltpipeConfig) -> str | None:
    """Why the champion being monitored could not be served (reported, not fatal: its stored
    reference sample still makes the drift comparison, and a retrain may replace it)."""
    from voltpipe.registry import open_registry
    from voltpipe.registry.health import usable_champion

    check = usable_champion(open_registry(cfg.registry_uri), cfg.name)
    if check.problem:
        print(f"voltpipe: warning: {check.problem}")
    return check.problem


def signal_name(exit_code: int) -> str | None:
    """The signal that ended a step's process: ``-9`` (killed directly) or ``137`` (its shell
    reporting 128 + 9) -> ``"SIGKILL"``; None for an ordinary exit code."""
    import signal

    number = -exit_code if exit_code < 0 else exit_code - 128 if exit_code > 128 else 0
    try:
        return signal.Signals(number).name if number else None
    except ValueError:
        return None


@contextlib.contextmanager
def _recording_exit_codes() -> Iterator[list[int]]:
    """The exit codes of the step processes kfp.local starts (it keeps only "FAILURE"), so a
    step killed by a signal can be reported with the signal's name."""
    try:
        from kfp.local import subprocess_task_handler as handler
    except ImportError:  # pragma: no cover - kfp without the subprocess runner
        yield []
        return
    original = getattr(handler, "run_local_subprocess", None)
    codes: list[int] = []
    if original is None:  # pragma: no cover - another kfp layout: the plain message
        yield codes
        return

    def recorded(*args: Any, **kwargs: Any) -> int:
        code = int(original(*args, **kwargs))
        codes.append(code)
        return code

    handler.run_local_subprocess = recorded
    try:
        yield codes
    finally:
        handler.run_local_subprocess = original


def _killed_step_message(step: str, root: Path, before: set[str], signal: str | None = None) -> str:
    """A step that failed without a message or traceback was killed from outside, most often
    by the kernel's out-of-memory killer: say so, with the signal and the size of the data."""
    sizes = [
        f.stat().st_size
        for folder in set(os.listdir(root)) - before
        for f in (root / folder).glob("extract/*/*.parquet")
    ]
    rows = _extracted_rows(root, before)
    data = f"{sum(sizes) / 1e6:.1f} MB of parquet" if sizes else ""
    if rows:
        data = f"{rows:,} rows, {data}" if data else f"{rows:,} rows"
    if signal:
        oom = " (out of memory?)" if signal == "SIGKILL" else ""
        shown = f"; this run's extracted data is {data}" if data else ""
        return (
            f"step {step!r} was killed by {signal}{oom}{shown}; train on fewer rows, or give "
            f"the step more memory (resources.{step.replace('-', '_')}.memory on Vertex)"
        )
    data = f"; this run's extracted data is {data}" if data else ""
    return (
        f"the step stopped without an error of its own: it was killed from outside (the usual "
        f"cause is running out of memory{data}; train on fewer rows, or give the step more "
        "memory)"
    )


def _extracted_rows(root: Path, before: set[str]) -> int:
    """Rows of this run's extracted splits (from the parquet footers; nothing is read)."""
    import pyarrow.parquet as pq

    total = 0
    for folder in set(os.listdir(root)) - before:
        for f in (root / folder).glob("extract/*/*.parquet"):
            with contextlib.suppress(OSError, ValueError, Exception):
                total += pq.read_metadata(f).num_rows
    return total


def _writable_workdir(workdir: Path) -> None:
    """Creates the work dir's folders, or says in one line why it cannot."""
    try:
        for folder in (workdir, workdir / "logs", workdir / "pipeline-root"):
            folder.mkdir(parents=True, exist_ok=True)
            if not os.access(folder, os.W_OK | os.X_OK):
                raise PermissionError(13, "Permission denied", str(folder))
    except OSError as exc:
        raise DataError(
            f"the work dir {workdir} is not usable ({exc.strerror or exc}"
            f"{': ' + str(exc.filename) if exc.filename else ''}): make it writable, free some "
            "space, or set `workdir` in the config to another folder"
        ) from None


def _own_run_folder(root: Path, created: set[str], artifacts: Any) -> str | None:
    """The kfp.local run folder of this run: the one its never-cached outputs were written to
    (a cached output lives in an older run's folder; a concurrent run creates folders too)."""
    for artifact in artifacts:
        try:
            folder = Path(artifact.path).resolve().relative_to(root.resolve()).parts[0]
        except (ValueError, IndexError):
            continue
        if folder in created:
            return folder
    return None


def _champion_version(cfg: VoltpipeConfig) -> str | None:
    from voltpipe.registry import open_registry

    try:
        champion = open_registry(cfg.registry_uri).get(cfg.name)
    except VoltpipeError:
        return None
    return champion.version if champion is not None else None


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


def _training_summary(
    outputs: dict[str, Any],
    cfg: VoltpipeConfig,
    champion_before: str | None,
    run_folder: Path,
) -> dict[str, Any]:
    """The test metrics and the registry as it is after the run (not as a step remembers it).

    ``champion.promoted`` is true only when this run moved the alias to its version.
    """
    evaluation = outputs["evaluation"]
    registration = outputs["registration"]
    version = str(registration["version"])
    champion_after = _champion_version(cfg)
    gate_promoted = bool(evaluation["decision"]["promote"])
    reason = evaluation["decision"]["reason"]
    # This run's deploy step (never cached, so its file is this run's) says whether it moved
    # the alias; a concurrent run may have moved it again since.
    deployment_file = run_folder / "deploy" / "deployment"
    deployment = _read_json(str(deployment_file)) if deployment_file.is_file() else None
    if deployment is not None and "moved" in deployment:
        promoted = bool(deployment["moved"])
    else:
        promoted = champion_after == version and champion_before != version
    if not promoted and champion_after == version:
        reason = f"version {version} is already the champion (this run reproduced it); {reason}"
    elif gate_promoted and not promoted:
        reason = (deployment or {}).get("reason") or (
            f"the gate promoted version {version}, but it was not deployed; the champion is "
            f"{'version ' + champion_after if champion_after else 'unset'}"
        )
    fields = _model_fields(
        {
            **registration,
            "champion": promoted,
            "champion_version": champion_after,
            "previous_champion": champion_before,
        },
        reason,
    )
    fields["champion"]["gate_promoted"] = gate_promoted
    fields["champion"]["gate"] = _gate_summary(evaluation)
    tracking = registration.get("tracking")
    summary = {
        "metrics": {"test": evaluation["metrics"]},
        **fields,
        **_candidates(registration),
        **_training(registration),
    }
    if tracking is not None:
        summary["tracking"] = tracking
    return summary


def _gate_summary(evaluation: dict[str, Any]) -> dict[str, Any]:
    """``champion.gate`` of the summary: the gate's comparison, from the evaluation artifact."""
    d = evaluation.get("decision") or {}
    keys = (
        "verdict",
        "metric",
        "challenger",
        "champion",
        "improvement",
        "interval",
        "confidence",
        "method",
        "rows",
        "min_improvement",
        "test_data_hash",
        "champion_version",
    )
    gate = {k: d.get(k) for k in keys}
    gate["verdict"] = gate["verdict"] or ("promote" if d.get("promote") else "hold")
    gate["slices_regressed"] = [
        f"{s['column']}={s['value']}" for s in d.get("slices") or [] if s.get("regressed")
    ]
    return gate


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
