"""A local Vertex AI v1 REST server for the real google-cloud-aiplatform SDK (REST transport).

Point the SDK at it with::

    from google.auth.credentials import AnonymousCredentials
    with VertexTestServer() as srv:
        aiplatform.init(project="p", location="europe-west1", credentials=AnonymousCredentials(),
                        api_endpoint=srv.endpoint, api_transport="rest")
        ...
        body = srv.find("POST", r"/pipelineJobs$")[0].json

It serves pipeline jobs, schedules, models (upload as a long-running operation, versions,
aliases, imported evaluations), endpoints (create, deploy, undeploy, predict), custom and hyperparameter tuning
jobs, batch prediction jobs (BigQuery to BigQuery: with `bigquery`, a ``BigQueryTestServer``, they
really run: the source table is scored with the model's serving code and the output table
written, as ``outputInfo`` names it), operations, the metadata contexts behind Vertex AI Experiments, and the few Cloud
Storage JSON calls `PipelineJob.submit` makes (bucket get/create): set the environment variable
``STORAGE_EMULATOR_HOST`` to `srv.endpoint` so google-cloud-storage talks to this server.

Job states are scripted: every GET of a job advances it one step through `pipeline_states`
(pipeline jobs) or `job_states` (custom and tuning jobs) and it then stays in the last state.
With `gcs_root`, custom jobs really run instead: the chief pool's container command runs here as
a subprocess (this environment stands in for the image), with ``gs://BUCKET/PATH`` in its
arguments and AIP_* variables mapped to ``gcs_root/BUCKET/PATH`` (as Vertex mounts Cloud Storage
under /gcs); the job is RUNNING until the process exits, then SUCCEEDED or FAILED with the
error Vertex writes: ``The replica workerpool0-0 exited with a non-zero status of N. Termination
reason: Error.``, the tail of the container's log and a link to the logs. Hyperparameter tuning
jobs run the same way: each trial runs the trial job's chief command with its parameters added
as ``--NAME VALUE`` (as Vertex's tuning guide shows), CLOUD_ML_TRIAL_ID and
CLOUD_ML_HP_METRIC_FILE set, and its final measurement read back from the last line of the
cloudml-hypertune metrics file (parameters sampled at random, seeded by `seed`).

Validation the services do is done here too: labels (keys and values of lowercase letters,
digits, ``_`` and ``-``, keys starting with a letter, at most 63 characters, at most 64 labels),
CMEK in the `cmek_projects` (an organisation policy refuses a job, model, endpoint, schedule or
bucket created there without an encryption key), and the metric names of an imported evaluation
against its metrics schema. An endpoint routes each predict to one deployed model at random by
the traffic split (seeded), as the service does.
Long-running operations are done at once. The SDK's REST transport sends enums as integers
(``$alt=json;enum-encoding=int``), so a recorded request body holds e.g. ``"goal": 2``; the
server answers with enum names, which the SDK accepts too.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import os
import random
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from voltpipe.testing._http import HttpError, RecordedRequest, RecordingServer

_V = r"/v1(?:beta1)?/"
_LOC = _V + r"(?P<parent>projects/[^/]+/locations/[^/]+)"
_TYPE = "type.googleapis.com/google.cloud.aiplatform.v1."
PIPELINE_TERMINAL = {
    "PIPELINE_STATE_SUCCEEDED",
    "PIPELINE_STATE_FAILED",
    "PIPELINE_STATE_CANCELLED",
}
JOB_TERMINAL = {
    "JOB_STATE_SUCCEEDED",
    "JOB_STATE_FAILED",
    "JOB_STATE_CANCELLED",
    "JOB_STATE_EXPIRED",
}


_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
MAX_LABELS = 64
# The metric names of Vertex's model evaluation schemas (the fields of their YAML definitions).
EVALUATION_SCHEMA_FIELDS = {
    "regression": {
        "rootMeanSquaredError",
        "meanAbsoluteError",
        "meanAbsolutePercentageError",
        "rSquared",
        "rootMeanSquaredLogError",
    },
    "forecasting": {
        "rootMeanSquaredError",
        "meanAbsoluteError",
        "meanAbsolutePercentageError",
        "rSquared",
        "rootMeanSquaredLogError",
        "weightedAbsolutePercentageError",
        "rootMeanSquaredPercentageError",
        "symmetricMeanAbsolutePercentageError",
        "quantileMetrics",
    },
    "classification": {
        "auPrc",
        "auRoc",
        "logLoss",
        "confidenceMetrics",
        "confusionMatrix",
    },
}


def check_labels(labels: Any, what: str) -> None:
    """Refuses labels the service refuses (HTTP 400 naming the label)."""
    if not labels:
        return
    if len(labels) > MAX_LABELS:
        raise HttpError(400, f"{what}: at most {MAX_LABELS} labels, got {len(labels)}")
    for key, value in labels.items():
        if not _LABEL_KEY.fullmatch(str(key)):
            raise HttpError(
                400,
                f"{what}: invalid label key {key!r}: keys have 1-63 lowercase letters, digits, "
                "'_' or '-' and start with a lowercase letter",
            )
        if not _LABEL_VALUE.fullmatch(str(value)):
            raise HttpError(
                400,
                f"{what}: invalid label value {value!r} of {key!r}: values have at most 63 "
                "lowercase letters, digits, '_' or '-'",
            )


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _default_predict(instances: list[Any]) -> list[Any]:
    return [0.0 for _ in instances]


class VertexTestServer(RecordingServer):
    """Vertex AI v1 REST (plus the Cloud Storage bucket calls of `PipelineJob.submit`).

    Args:
        pipeline_states: states a pipeline job goes through, one per GET after its creation.
        job_states: the same for custom jobs and hyperparameter tuning jobs.
        failure_message: the `error.message` of a job that ends in a FAILED state.
        trials: the `trials` a hyperparameter tuning job reports once it has succeeded.
        predict: maps an endpoint's `instances` to its `predictions`.
        gcs_root: run custom jobs and tuning trials for real, with this folder standing in for
            Cloud Storage.
        seed: seeds the traffic routing of predicts and the parameters of tuning trials.
        cmek_projects: projects whose organisation policy requires a CMEK key on every resource.
        failing_models: model resource names (``.../models/ID`` or ``.../models/ID@VERSION``)
            whose deployed containers fail every predict (HTTP 500), e.g. a broken canary.
    """

    def __init__(
        self,
        *,
        pipeline_states: Sequence[str] = ("PIPELINE_STATE_RUNNING", "PIPELINE_STATE_SUCCEEDED"),
        job_states: Sequence[str] = ("JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED"),
        failure_message: str = "step 'train' failed: the job failed in the test server",
        trials: list[dict[str, Any]] | None = None,
        predict: Callable[[list[Any]], list[Any]] = _default_predict,
        gcs_root: str | os.PathLike[str] | None = None,
        seed: int = 0,
        cmek_projects: Iterable[str] = (),
        failing_models: Iterable[str] = (),
        bigquery: Any = None,
    ) -> None:
        super().__init__()
        # A BigQueryTestServer: batch prediction jobs read their source and write their output
        # there (without one they only move through `job_states`).
        self.bigquery = bigquery
        self.batch_prediction_jobs: dict[str, dict[str, Any]] = {}
        self.random = random.Random(seed)
        self.cmek_projects = set(cmek_projects)
        self.failing_models = set(failing_models)
        self.tuning_runs: dict[str, _TuningRun] = {}  # tuning jobs run for real (gcs_root)
        self.pipeline_states = list(pipeline_states)
        self.job_states = list(job_states)
        self.failure_message = failure_message
        self.trials = trials or []
        self.predict = predict
        self.gcs_root = Path(gcs_root) if gcs_root is not None else None
        self.job_runs: dict[str, _JobRun] = {}  # custom jobs run for real (gcs_root)
        self.pipeline_jobs: dict[str, dict[str, Any]] = {}
        self.schedules: dict[str, dict[str, Any]] = {}
        self.models: dict[str, dict[str, Any]] = {}  # "models/ID@VERSION" name -> model version
        self.evaluations: dict[str, dict[str, Any]] = {}  # ".../models/ID@V/evaluations/N"
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.custom_jobs: dict[str, dict[str, Any]] = {}
        self.tuning_jobs: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.contexts: dict[str, dict[str, Any]] = {}
        self.metadata_stores: dict[str, dict[str, Any]] = {}
        self.buckets: dict[str, dict[str, Any]] = {}
        self._pending: dict[str, list[str]] = {}
        self._ids = itertools.count(1000)
        self._routes_vertex()

    def stop(self) -> None:
        for run in self.job_runs.values():
            run.kill()
        for tuning in self.tuning_runs.values():
            tuning.kill()
        super().stop()

    # ----- helpers -----------------------------------------------------------------------

    def _next_id(self) -> str:
        return str(next(self._ids))

    def _operation(
        self,
        parent: str,
        response: dict[str, Any] | None,
        type_name: str,
        metadata_type: str = "GenericOperationMetadata",
    ) -> dict[str, Any]:
        name = f"{parent}/operations/{self._next_id()}"
        op: dict[str, Any] = {
            "name": name,
            "done": True,
            "metadata": {"@type": _TYPE + metadata_type, "genericMetadata": {"createTime": _now()}},
            "response": {
                "@type": type_name if "/" in type_name else _TYPE + type_name,
                **(response or {}),
            },
        }
        if metadata_type == "GenericOperationMetadata":
            op["metadata"] = {"@type": _TYPE + metadata_type, "createTime": _now()}
        self.operations[name] = op
        return op

    def _check_cmek(self, parent: str, spec: Any, kind: str) -> None:
        """Refuses a resource without ``encryptionSpec.kmsKeyName`` in a CMEK-only project."""
        project = parent.split("/")[1] if parent.startswith("projects/") else parent
        if project in self.cmek_projects and not (spec or {}).get("kmsKeyName"):
            raise HttpError(
                400,
                f"Constraint constraints/gcp.restrictNonCmekServices violated for "
                f"projects/{project}: a {kind} must be created with a customer-managed "
                "encryption key (encryptionSpec.kmsKeyName)",
            )

    @staticmethod
    def _get(store: dict[str, dict[str, Any]], name: str, kind: str) -> dict[str, Any]:
        if name not in store:
            raise HttpError(404, f"{kind} {name} not found")
        return store[name]

    def _advance(self, name: str, resource: dict[str, Any], terminal: set[str]) -> None:
        steps = self._pending.get(name)
        if steps:
            resource["state"] = steps.pop(0)
            resource["updateTime"] = _now()
            if resource["state"] in terminal:
                resource["endTime"] = _now()
                if resource["state"].endswith("FAILED"):
                    resource["error"] = {"code": 9, "message": self.failure_message}

    @staticmethod
    def _list(
        store: dict[str, dict[str, Any]], prefix: str, key: str, req: RecordedRequest
    ) -> dict[str, Any]:
        items = [v for k, v in store.items() if k.startswith(prefix)]
        flt = req.param("filter") or ""
        for field, value in re.findall(r'(\w+)\s*=\s*"([^"]*)"', flt):
            camel = re.sub(r"_(\w)", lambda m: m.group(1).upper(), field)
            items = [i for i in items if str(i.get(camel, i.get(field))) == value]
        return {key: items}

    # ----- routes ------------------------------------------------------------------------

    def _routes_vertex(self) -> None:
        r = self.route
        # pipeline jobs
        r("POST", _LOC + r"/pipelineJobs", self._create_pipeline_job)
        r(
            "GET",
            _LOC + r"/pipelineJobs",
            lambda q, m: self._list(
                self.pipeline_jobs, m["parent"] + "/pipelineJobs/", "pipelineJobs", q
            ),
        )
        r(
            "GET",
            _V + r"(?P<name>projects/[^/]+/locations/[^/]+/pipelineJobs/[^/:]+)",
            self._get_pipeline_job,
        )
        r(
            "POST",
            _V + r"(?P<name>projects/[^/]+/locations/[^/]+/pipelineJobs/[^/:]+):cancel",
            self._cancel_pipeline_job,
        )
        # schedules
        r("POST", _LOC + r"/schedules", self._create_schedule)
        r(
            "GET",
            _LOC + r"/schedules",
            lambda q, m: self._list(self.schedules, m["parent"] + "/schedules/", "schedules", q),
        )
        sched = _V + r"(?P<name>projects/[^/]+/locations/[^/]+/schedules/[^/:]+)"
        r("GET", sched, lambda q, m: self._get(self.schedules, m["name"], "Schedule"))
        r("PATCH", sched, self._update_schedule)
        r("POST", sched + ":pause", lambda q, m: self._set_schedule_state(m["name"], "PAUSED"))
        r("POST", sched + ":resume", lambda q, m: self._set_schedule_state(m["name"], "ACTIVE"))
        r("DELETE", sched, self._delete_schedule)
        # models
        r("POST", _LOC + r"/models:upload", self._upload_model)
        r("GET", _LOC + r"/models", self._list_models)
        model = (
            _V + r"(?P<name>projects/[^/]+/locations/[^/]+/models/[^/:@]+)(?:@(?P<version>[^/:]+))?"
        )
        r("GET", model, self._get_model)
        r("GET", model + ":listVersions", self._list_model_versions)
        r("POST", model + ":mergeVersionAliases", self._merge_aliases)
        r("POST", model + "/evaluations:import", self._import_evaluation)
        r("DELETE", model, self._delete_model)
        # endpoints
        r("POST", _LOC + r"/endpoints", self._create_endpoint)
        r(
            "GET",
            _LOC + r"/endpoints",
            lambda q, m: self._list(self.endpoints, m["parent"] + "/endpoints/", "endpoints", q),
        )
        endpoint = _V + r"(?P<name>projects/[^/]+/locations/[^/]+/endpoints/[^/:]+)"
        r("GET", endpoint, lambda q, m: self._get(self.endpoints, m["name"], "Endpoint"))
        r("DELETE", endpoint, self._delete_endpoint)
        r("POST", endpoint + ":deployModel", self._deploy_model)
        r("POST", endpoint + ":undeployModel", self._undeploy_model)
        r("POST", endpoint + ":predict", self._predict)
        # custom and tuning jobs
        for noun, store in (
            ("customJobs", self.custom_jobs),
            ("hyperparameterTuningJobs", self.tuning_jobs),
        ):
            r("POST", _LOC + rf"/{noun}", self._job_creator(noun, store))
            r("GET", _LOC + rf"/{noun}", self._job_lister(noun, store))
            job = _V + rf"(?P<name>projects/[^/]+/locations/[^/]+/{noun}/[^/:]+)"
            r("GET", job, self._job_getter(store))
            r("POST", job + ":cancel", self._job_canceller(store))
        # batch prediction jobs (BigQuery -> BigQuery, run for real with `bigquery`)
        bpj = "batchPredictionJobs"
        r("POST", _LOC + rf"/{bpj}", self._create_batch_prediction_job)
        r(
            "GET",
            _LOC + rf"/{bpj}",
            lambda q, m: {
                bpj: [
                    _without_private(j)
                    for j in self._list(
                        self.batch_prediction_jobs, f"{m['parent']}/{bpj}/", bpj, q
                    )[bpj]
                ]
            },
        )
        job = _V + rf"(?P<name>projects/[^/]+/locations/[^/]+/{bpj}/[^/:]+)"
        r("GET", job, self._get_batch_prediction_job)
        r("POST", job + ":cancel", self._job_canceller(self.batch_prediction_jobs))
        # operations (any resource's)
        r(
            "GET",
            _V + r"(?P<name>projects/.+/operations/[^/:]+)",
            lambda q, m: self._get(self.operations, m["name"], "Operation"),
        )
        # metadata (Vertex AI Experiments)
        metadata_store = _V + r"(?P<name>projects/[^/]+/locations/[^/]+/metadataStores/[^/:]+)"
        r("GET", metadata_store, self._get_metadata_store)
        r("POST", _LOC + r"/metadataStores", self._create_metadata_store)
        r("POST", metadata_store + r"/contexts", self._create_context)
        r(
            "GET",
            metadata_store + r"/contexts",
            lambda q, m: self._list(self.contexts, m["name"] + "/contexts/", "contexts", q),
        )
        context = (
            _V + r"(?P<name>projects/[^/]+/locations/[^/]+/metadataStores/[^/]+/contexts/[^/:]+)"
        )
        r("GET", context, lambda q, m: self._get(self.contexts, m["name"], "Context"))
        r("PATCH", context, self._update_context)
        r("POST", context + ":addContextChildren", self._add_context_children)
        # Cloud Storage JSON API (STORAGE_EMULATOR_HOST)
        r("GET", r"/storage/v1/b/(?P<bucket>[^/]+)", self._get_bucket)
        r("POST", r"/storage/v1/b", self._create_bucket)
        r("GET", r"/storage/v1/b/(?P<bucket>[^/]+)/iam", self._get_bucket_iam)
        r("PUT", r"/storage/v1/b/(?P<bucket>[^/]+)/iam", self._set_bucket_iam)

    # ----- pipeline jobs -----------------------------------------------------------------

    def _create_pipeline_job(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        parent = m["parent"]
        job_id = req.param("pipelineJobId") or f"pipeline-job-{self._next_id()}"
        name = f"{parent}/pipelineJobs/{job_id}"
        body = req.json or {}
        check_labels(body.get("labels"), "PipelineJob")
        self._check_cmek(parent, body.get("encryptionSpec"), "PipelineJob")
        if name in self.pipeline_jobs:
            raise HttpError(409, f"PipelineJob {name} already exists")
        store = f"{parent}/metadataStores/default"
        run_context = {
            "name": f"{store}/contexts/{job_id}",
            "displayName": job_id,
            "schemaTitle": "system.PipelineRun",
        }
        self.contexts[run_context["name"]] = run_context
        job = {
            **(req.json or {}),
            "name": name,
            "state": "PIPELINE_STATE_PENDING",
            "createTime": _now(),
            "updateTime": _now(),
            "jobDetail": {
                "pipelineRunContext": run_context,
                "pipelineContext": {
                    "name": f"{store}/contexts/pipeline",
                    "schemaTitle": "system.Pipeline",
                },
            },
        }
        self.pipeline_jobs[name] = job
        self._pending[name] = list(self.pipeline_states)
        return job

    def _get_pipeline_job(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        job = self._get(self.pipeline_jobs, m["name"], "PipelineJob")
        self._advance(m["name"], job, PIPELINE_TERMINAL)
        return job

    def _cancel_pipeline_job(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        job = self._get(self.pipeline_jobs, m["name"], "PipelineJob")
        self._pending[m["name"]] = ["PIPELINE_STATE_CANCELLED"]
        job["state"] = "PIPELINE_STATE_CANCELLING"
        return {}

    # ----- schedules ---------------------------------------------------------------------

    def _create_schedule(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        job = ((req.json or {}).get("createPipelineJobRequest") or {}).get("pipelineJob") or {}
        check_labels(job.get("labels"), "Schedule's PipelineJob")
        self._check_cmek(m["parent"], job.get("encryptionSpec"), "Schedule's PipelineJob")
        name = f"{m['parent']}/schedules/{self._next_id()}"
        schedule = {
            **(req.json or {}),
            "name": name,
            "state": "ACTIVE",
            "createTime": _now(),
            "updateTime": _now(),
            "startedRunCount": "0",
        }
        self.schedules[name] = schedule
        return schedule

    def _update_schedule(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        schedule = self._get(self.schedules, m["name"], "Schedule")
        schedule.update({k: v for k, v in (req.json or {}).items() if k != "name"})
        schedule["updateTime"] = _now()
        return schedule

    def _set_schedule_state(self, name: str, state: str) -> dict[str, Any]:
        schedule = self._get(self.schedules, name, "Schedule")
        schedule["state"] = state
        schedule["updateTime"] = _now()
        return {}

    def _delete_schedule(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        self._get(self.schedules, m["name"], "Schedule")
        del self.schedules[m["name"]]
        return self._operation(
            m["name"], None, "type.googleapis.com/google.protobuf.Empty", "DeleteOperationMetadata"
        )

    # ----- models ------------------------------------------------------------------------

    def _versions(self, model_name: str) -> list[dict[str, Any]]:
        return [v for k, v in self.models.items() if k.split("@")[0] == model_name]

    def _upload_model(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        body = req.json or {}
        check_labels(body.get("model", {}).get("labels"), "Model")
        self._check_cmek(m["parent"], body.get("model", {}).get("encryptionSpec"), "Model")
        parent_model = body.get("parentModel")
        if parent_model:
            base = parent_model.split("@")[0]
            if not self._versions(base):
                raise HttpError(404, f"parent model {parent_model} not found")
            existing = self._versions(base)
            version = str(max(int(v["versionId"]) for v in existing) + 1)
        else:
            base = f"{m['parent']}/models/{body.get('modelId') or self._next_id()}"
            if self._versions(base):
                raise HttpError(409, f"Model {base} already exists")
            version = "1"
        aliases = list(body.get("model", {}).get("versionAliases", []))
        if version == "1" and "default" not in aliases:
            aliases.insert(0, "default")
        for other in self._versions(base):  # an alias names one version at a time
            other["versionAliases"] = [
                a for a in other.get("versionAliases", []) if a not in aliases
            ]
        model: dict[str, Any] = (
            {"supportedDeploymentResourcesTypes": ["DEDICATED_RESOURCES"]}
            if body.get("model", {}).get("containerSpec")
            else {}
        )
        model = {
            **model,
            **body.get("model", {}),
            "name": base,
            "versionId": version,
            "versionAliases": aliases,
            "createTime": _now(),
            "updateTime": _now(),
            "versionCreateTime": _now(),
            "versionUpdateTime": _now(),
        }
        self.models[f"{base}@{version}"] = model
        return self._operation(
            base,
            {"model": base, "modelVersionId": version},
            "UploadModelResponse",
            "UploadModelOperationMetadata",
        )

    def _resolve_version(self, name: str, version: str | None) -> dict[str, Any]:
        versions = self._versions(name)
        if not versions:
            raise HttpError(404, f"Model {name} not found")
        if version is None:
            version = "default"
        for v in versions:
            if v["versionId"] == version or version in v.get("versionAliases", []):
                return v
        raise HttpError(404, f"Model {name}@{version} not found")

    def _get_model(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        return self._resolve_version(m["name"], m["version"])

    def _list_models(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        defaults = {}
        for key, v in self.models.items():
            base = key.split("@")[0]
            if base.startswith(m["parent"] + "/models/") and (
                "default" in v.get("versionAliases", []) or base not in defaults
            ):
                defaults[base] = v
        return self._list(defaults, "", "models", req)

    def _list_model_versions(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        versions = self._versions(m["name"])
        if not versions:
            raise HttpError(404, f"Model {m['name']} not found")
        return {"models": sorted(versions, key=lambda v: int(v["versionId"]))}

    def _merge_aliases(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        target = self._resolve_version(m["name"], m["version"])
        for alias in (req.json or {}).get("versionAliases", []):
            if alias.startswith("-"):
                target["versionAliases"] = [
                    a for a in target.get("versionAliases", []) if a != alias[1:]
                ]
                continue
            for other in self._versions(m["name"]):
                other["versionAliases"] = [a for a in other.get("versionAliases", []) if a != alias]
            target.setdefault("versionAliases", []).append(alias)
        return target

    def _import_evaluation(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        target = self._resolve_version(m["name"], m["version"])
        name = f"{m['name']}@{target['versionId']}/evaluations/{self._next_id()}"
        body = (req.json or {}).get("modelEvaluation", {})
        schema = str(body.get("metricsSchemaUri", ""))
        kind = re.search(r"/modelevaluation/(\w+)_metrics_", schema)
        if kind and kind.group(1) in EVALUATION_SCHEMA_FIELDS:
            known = EVALUATION_SCHEMA_FIELDS[kind.group(1)]
            unknown = sorted(set(body.get("metrics") or {}) - known)
            if unknown:
                raise HttpError(
                    400,
                    f"metrics {unknown} are not fields of the metrics schema {schema} "
                    f"(fields: {sorted(known)})",
                )
        evaluation = {**body, "name": name}
        evaluation["createTime"] = _now()
        self.evaluations[name] = evaluation
        return evaluation

    def _delete_model(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        if m["version"]:
            target = self._resolve_version(m["name"], m["version"])
            del self.models[f"{m['name']}@{target['versionId']}"]
        else:
            for key in [k for k in self.models if k.split("@")[0] == m["name"]]:
                del self.models[key]
        return self._operation(
            m["name"], None, "type.googleapis.com/google.protobuf.Empty", "DeleteOperationMetadata"
        )

    # ----- endpoints ---------------------------------------------------------------------

    def _create_endpoint(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        name = f"{m['parent']}/endpoints/{req.param('endpointId') or self._next_id()}"
        check_labels((req.json or {}).get("labels"), "Endpoint")
        self._check_cmek(m["parent"], (req.json or {}).get("encryptionSpec"), "Endpoint")
        endpoint = {
            **(req.json or {}),
            "name": name,
            "createTime": _now(),
            "updateTime": _now(),
            "deployedModels": [],
            "trafficSplit": {},
        }
        self.endpoints[name] = endpoint
        return self._operation(name, endpoint, "Endpoint", "CreateEndpointOperationMetadata")

    def _delete_endpoint(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        endpoint = self._get(self.endpoints, m["name"], "Endpoint")
        if endpoint.get("deployedModels"):
            raise HttpError(400, f"Endpoint {m['name']} still has deployed models")
        del self.endpoints[m["name"]]
        return self._operation(
            m["name"], None, "type.googleapis.com/google.protobuf.Empty", "DeleteOperationMetadata"
        )

    def _deploy_model(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        endpoint = self._get(self.endpoints, m["name"], "Endpoint")
        body = req.json or {}
        deployed = {**body.get("deployedModel", {}), "id": self._next_id(), "createTime": _now()}
        model = deployed.get("model", "")
        base, _, version = model.partition("@")
        deployed["modelVersionId"] = self._resolve_version(base, version or None)["versionId"]
        endpoint["deployedModels"].append(deployed)
        split = dict(body.get("trafficSplit") or {"0": 100})
        if "0" in split:
            split[deployed["id"]] = split.pop("0")
        endpoint["trafficSplit"] = {k: int(v) for k, v in split.items() if int(v) > 0}
        endpoint["updateTime"] = _now()
        return self._operation(
            m["name"],
            {"deployedModel": deployed},
            "DeployModelResponse",
            "DeployModelOperationMetadata",
        )

    def _undeploy_model(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        endpoint = self._get(self.endpoints, m["name"], "Endpoint")
        body = req.json or {}
        model_id = body.get("deployedModelId")
        if not any(d["id"] == model_id for d in endpoint["deployedModels"]):
            raise HttpError(404, f"deployed model {model_id} not found on {m['name']}")
        endpoint["deployedModels"] = [d for d in endpoint["deployedModels"] if d["id"] != model_id]
        split = body.get("trafficSplit") or {
            k: v for k, v in endpoint["trafficSplit"].items() if k != model_id
        }
        endpoint["trafficSplit"] = {k: int(v) for k, v in split.items() if int(v) > 0}
        return self._operation(
            m["name"], {}, "UndeployModelResponse", "UndeployModelOperationMetadata"
        )

    def _predict(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        endpoint = self._get(self.endpoints, m["name"], "Endpoint")
        if not endpoint["deployedModels"]:
            raise HttpError(400, f"Endpoint {m['name']} has no deployed model")
        split = {k: v for k, v in endpoint["trafficSplit"].items() if v > 0}
        if not split:
            raise HttpError(400, f"Endpoint {m['name']} has no deployed model with traffic")
        # Each request goes to one deployed model, at random by traffic share.
        target = self.random.choices(list(split), weights=list(split.values()))[0]
        deployed = next(d for d in endpoint["deployedModels"] if d["id"] == target)
        model = deployed.get("model", "")
        if {model, f"{model.split('@')[0]}@{deployed.get('modelVersionId')}"} & self.failing_models:
            raise HttpError(500, f"Prediction failed: deployed model {target} returned an error")
        instances = (req.json or {}).get("instances", [])
        return {
            "predictions": self.predict(instances),
            "deployedModelId": target,
            "model": deployed.get("model", "").split("@")[0],
            "modelVersionId": deployed.get("modelVersionId", ""),
        }

    # ----- custom and tuning jobs --------------------------------------------------------

    def _job_creator(self, noun: str, store: dict[str, dict[str, Any]]) -> Callable[..., Any]:
        def create(req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
            body = req.json or {}
            kind = "CustomJob" if noun == "customJobs" else "HyperparameterTuningJob"
            check_labels(body.get("labels"), kind)
            self._check_cmek(m["parent"], body.get("encryptionSpec"), kind)
            if noun == "hyperparameterTuningJobs":
                trial = body.get("trialJobSpec") or {}
                self._check_cmek(m["parent"], body.get("encryptionSpec"), "trial CustomJob")
                if not trial.get("workerPoolSpecs"):
                    raise HttpError(400, "trialJobSpec.workerPoolSpecs is required")
            name = f"{m['parent']}/{noun}/{self._next_id()}"
            job = {
                **(req.json or {}),
                "name": name,
                "state": "JOB_STATE_PENDING",
                "createTime": _now(),
                "updateTime": _now(),
            }
            store[name] = job
            if store is self.custom_jobs and self.gcs_root is not None:
                self.job_runs[name] = _JobRun(job["jobSpec"], name, self.gcs_root)
                job["state"] = "JOB_STATE_RUNNING"
            elif store is self.tuning_jobs and self.gcs_root is not None:
                self.tuning_runs[name] = _TuningRun(job, self.gcs_root, self.random)
                job["state"] = "JOB_STATE_RUNNING"
            else:
                self._pending[name] = list(self.job_states)
            return job

        return create

    def _job_lister(self, noun: str, store: dict[str, dict[str, Any]]) -> Callable[..., Any]:
        return lambda req, m: self._list(store, f"{m['parent']}/{noun}/", noun, req)

    def _job_getter(self, store: dict[str, dict[str, Any]]) -> Callable[..., Any]:
        def get(req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
            job = self._get(store, m["name"], "Job")
            run = self.job_runs.get(m["name"])
            if run is not None:
                run.update(job)
            tuning = self.tuning_runs.get(m["name"])
            if tuning is not None:
                tuning.update(job)
            self._advance(m["name"], job, JOB_TERMINAL)
            if store is self.tuning_jobs and job["state"] == "JOB_STATE_SUCCEEDED" and self.trials:
                job["trials"] = self.trials
            return job

        return get

    def _job_canceller(self, store: dict[str, dict[str, Any]]) -> Callable[..., Any]:
        def cancel(req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
            job = self._get(store, m["name"], "Job")
            if m["name"] in self.job_runs:
                self.job_runs.pop(m["name"]).kill()
            if m["name"] in self.tuning_runs:
                self.tuning_runs.pop(m["name"]).kill()
            job["state"] = "JOB_STATE_CANCELLING"
            self._pending[m["name"]] = ["JOB_STATE_CANCELLED"]
            return {}

        return cancel

    # ----- batch prediction jobs ---------------------------------------------------------

    def _create_batch_prediction_job(
        self, req: RecordedRequest, m: re.Match[str]
    ) -> dict[str, Any]:
        """Validates as the service does: a display name, an existing model (version), a
        ``bq://PROJECT.DATASET.TABLE`` source, a ``bq://PROJECT[.DATASET]`` destination whose
        output table does not exist yet; then the job is PENDING."""
        body = req.json or {}
        check_labels(body.get("labels"), "BatchPredictionJob")
        self._check_cmek(m["parent"], body.get("encryptionSpec"), "BatchPredictionJob")
        if not body.get("displayName"):
            raise HttpError(400, "BatchPredictionJob.display_name is required")
        model = str(body.get("model") or "")
        if not model:
            raise HttpError(400, "BatchPredictionJob.model is required")
        base, _, version = model.partition("@")
        self._resolve_version(base, version or None)  # 404 "Model ... not found"
        source = body.get("inputConfig") or {}
        if source.get("instancesFormat") != "bigquery":
            raise HttpError(
                400, "This test server runs BigQuery batch prediction only (instancesFormat)"
            )
        uri = (source.get("bigquerySource") or {}).get("inputUri", "")
        if not _BQ_TABLE.fullmatch(uri):
            raise HttpError(
                400,
                f"Invalid BigQuery source URI {uri!r}: expected bq://PROJECT.DATASET.TABLE",
            )
        out = body.get("outputConfig") or {}
        dest = (out.get("bigqueryDestination") or {}).get("outputUri", "")
        if out.get("predictionsFormat") != "bigquery" or not _BQ_PREFIX.fullmatch(dest):
            raise HttpError(
                400,
                f"Invalid BigQuery destination URI {dest!r}: expected bq://PROJECT or "
                "bq://PROJECT.DATASET",
            )
        name = f"{m['parent']}/batchPredictionJobs/{self._next_id()}"
        project, _, dataset = dest.removeprefix("bq://").partition(".")
        stamp = dt.datetime.now(dt.UTC).strftime("%Y_%m_%dT%H_%M_%S_%fZ")
        display = re.sub(
            r"\W", "_", self._resolve_version(base, version or None).get("displayName", "model")
        )
        # As Vertex names them: without a dataset, a new one per job holding table
        # "predictions"; in a given dataset, a new table "predictions_<time>".
        table = f"predictions_{stamp}" if dataset else "predictions"
        dataset = dataset or f"prediction_{display}_{stamp}"
        if self.bigquery is not None and dataset:
            try:
                self.bigquery.engine.resolve(project, dataset, table)
            except Exception:
                pass
            else:
                raise HttpError(
                    400,
                    f"The BigQuery table {project}.{dataset}.{table} already exists: the output "
                    "of a batch prediction job must be a new table",
                )
        job = {
            **body,
            "name": name,
            "state": "JOB_STATE_PENDING",
            "createTime": _now(),
            "updateTime": _now(),
            "_output": (project, dataset, table),
        }
        self.batch_prediction_jobs[name] = job
        self._pending[name] = (
            ["JOB_STATE_RUNNING", "_RUN"] if self.bigquery is not None else list(self.job_states)
        )
        return _without_private(job)

    def _get_batch_prediction_job(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        job = self._get(self.batch_prediction_jobs, m["name"], "BatchPredictionJob")
        steps = self._pending.get(m["name"])
        if steps and steps[0] == "_RUN":
            steps.pop(0)
            self._run_batch_prediction(job)
        else:
            self._advance(m["name"], job, JOB_TERMINAL)
        return _without_private(job)

    def _run_batch_prediction(self, job: dict[str, Any]) -> None:
        """Reads the source table, scores it with the model's serving code (voltpipe's
        predictor, on the model's artifact folder) and writes the output table."""
        import pyarrow as pa

        from voltpipe.serving.batch import passthrough_columns, score_batch
        from voltpipe.serving.predictor import Predictor

        base, _, version = job["model"].partition("@")
        model = self._resolve_version(base, version or None)
        try:
            src = job["inputConfig"]["bigquerySource"]["inputUri"].removeprefix("bq://")
            s_project, s_dataset, s_table = src.split(".")
            rows = self.bigquery.engine.read_table(s_project, s_dataset, s_table)
            folder = self._artifact_folder(str(model.get("artifactUri", "")))
            predictor = Predictor.from_dir(folder, warmup_batch_sizes=())
            keep = passthrough_columns(rows.schema, predictor)
            scored = (
                score_batch(predictor, rows, keep, 65_536)
                if rows.num_rows
                else pa.table({name: rows.column(name) for name in keep})
            )
            project, dataset, table = job["_output"]
            self.bigquery.engine.write_table(dataset, table, scored, "WRITE_EMPTY", project)
        except Exception as exc:
            job.update(state="JOB_STATE_FAILED", endTime=_now(), updateTime=_now())
            job["error"] = {"code": 3, "message": f"Batch prediction failed: {exc}"}
            return
        job.update(state="JOB_STATE_SUCCEEDED", endTime=_now(), updateTime=_now())
        job["outputInfo"] = {
            "bigqueryOutputDataset": f"bq://{project}.{dataset}",
            "bigqueryOutputTable": table,
        }
        job["completionStats"] = {"successfulCount": str(scored.num_rows)}

    def _artifact_folder(self, uri: str) -> Path:
        if uri.startswith("gs://"):
            if self.gcs_root is None:
                raise RuntimeError(f"model artifacts {uri} are on Cloud Storage: set gcs_root")
            return self.gcs_root / uri.removeprefix("gs://")
        return Path(uri)

    # ----- metadata ----------------------------------------------------------------------

    def _get_metadata_store(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        name = m["name"]
        if name not in self.metadata_stores and name.endswith("/metadataStores/default"):
            self.metadata_stores[name] = {"name": name, "createTime": _now()}
        return self._get(self.metadata_stores, name, "MetadataStore")

    def _create_metadata_store(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        name = f"{m['parent']}/metadataStores/{req.param('metadataStoreId') or 'default'}"
        self.metadata_stores[name] = {**(req.json or {}), "name": name, "createTime": _now()}
        return self._operation(
            name,
            self.metadata_stores[name],
            "MetadataStore",
            "CreateMetadataStoreOperationMetadata",
        )

    def _create_context(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        name = f"{m['name']}/contexts/{req.param('contextId') or self._next_id()}"
        if name in self.contexts:
            raise HttpError(409, f"Context {name} already exists")
        self.contexts[name] = {
            **(req.json or {}),
            "name": name,
            "createTime": _now(),
            "updateTime": _now(),
        }
        return self.contexts[name]

    def _update_context(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        ctx = self._get(self.contexts, m["name"], "Context")
        ctx.update({k: v for k, v in (req.json or {}).items() if k != "name"})
        return ctx

    def _add_context_children(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        self._get(self.contexts, m["name"], "Context")
        for child in (req.json or {}).get("childContexts", []):
            if child in self.contexts:
                parents = self.contexts[child].setdefault("parentContexts", [])
                if m["name"] not in parents:
                    parents.append(m["name"])
        return {}

    # ----- Cloud Storage -----------------------------------------------------------------

    # A bucket the server has not seen does not exist: `PipelineJob.submit` then creates it and
    # grants the run-as service account access, instead of verifying the owner's project number
    # through Cloud Resource Manager (gRPC, which cannot be pointed at this server).

    def _get_bucket(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        return self._get(self.buckets, m["bucket"], "Bucket")

    def _create_bucket(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        body = req.json or {}
        project = req.param("project") or ""
        check_labels(body.get("labels"), "Bucket")
        if project in self.cmek_projects and not (body.get("encryption") or {}).get(
            "defaultKmsKeyName"
        ):
            raise HttpError(
                400,
                f"Constraint constraints/gcp.restrictNonCmekServices violated for "
                f"projects/{project}: a bucket needs encryption.defaultKmsKeyName",
            )
        self.buckets[body["name"]] = {
            "kind": "storage#bucket",
            "id": body["name"],
            "projectNumber": "123456789",
            "iam": {"kind": "storage#policy", "bindings": [], "etag": "CAE="},
            **body,
        }
        return self.buckets[body["name"]]

    def _get_bucket_iam(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        return self._get(self.buckets, m["bucket"], "Bucket")["iam"]

    def _set_bucket_iam(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        bucket = self._get(self.buckets, m["bucket"], "Bucket")
        bucket["iam"] = {**(req.json or {}), "kind": "storage#policy", "etag": "CAI="}
        return bucket["iam"]


LOG_TAIL_LINES = 20


_BQ_TABLE = re.compile(r"bq://[\w-]+\.\w+\.\w+")
_BQ_PREFIX = re.compile(r"bq://[\w-]+(\.\w+)?")


def _without_private(job: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in job.items() if not k.startswith("_")}


def replica_failure_message(job_name: str, returncode: int, stderr: str) -> str:
    """A failed replica's error as Vertex AI writes it: the exit status, the log's tail and a
    link to the job's logs."""
    project = job_name.split("/")[1] if job_name.startswith("projects/") else ""
    job_id = job_name.rsplit("/", 1)[-1]
    tail = [ln for ln in stderr.rstrip().splitlines() if ln.strip()][-LOG_TAIL_LINES:]
    return (
        f"The replica workerpool0-0 exited with a non-zero status of {returncode}. "
        "Termination reason: Error. \n"
        + "".join(f"{ln}\n" for ln in tail)
        + "\nTo find out more about why your job exited please check the logs: "
        f"https://console.cloud.google.com/logs/viewer?project={project}"
        f"&resource=ml_job%2Fjob_id%2F{job_id}"
        f"&advancedFilter=resource.type%3D%22ml_job%22%0Aresource.labels.job_id%3D%22{job_id}%22"
    )


class _JobRun:
    """One custom job's (or tuning trial's) chief container command, as a local subprocess."""

    def __init__(
        self,
        spec: dict[str, Any],
        job_name: str,
        gcs_root: Path,
        *,
        extra_args: Sequence[str] = (),
        extra_env: dict[str, str] | None = None,
    ) -> None:
        container = spec["workerPoolSpecs"][0]["containerSpec"]
        self.gcs_root = gcs_root
        self.job_name = job_name
        command = [self.local(a) for a in container.get("command", [])]
        if command and command[0] in ("python", "python3"):
            command[0] = sys.executable  # the image's python is this environment's
        argv = command + [self.local(a) for a in container.get("args", [])] + list(extra_args)
        env = {**os.environ}
        base = spec.get("baseOutputDirectory", {}).get("outputUriPrefix", "")
        if base:
            env["AIP_MODEL_DIR"] = self.local(f"{base.rstrip('/')}/model")
            env["AIP_CHECKPOINT_DIR"] = self.local(f"{base.rstrip('/')}/checkpoints")
        env["CLOUD_ML_JOB_ID"] = job_name.rsplit("/", 1)[-1]
        env["CLOUD_ML_HP_METRIC_FILE"] = str(gcs_root / ".hypertune" / env["CLOUD_ML_JOB_ID"])
        env.update(extra_env or {})
        for e in container.get("env", []):
            env[e["name"]] = self.local(e.get("value", ""))
        self.metric_file = Path(env["CLOUD_ML_HP_METRIC_FILE"])
        self.metric_file.parent.mkdir(parents=True, exist_ok=True)
        self.argv = argv
        self.returncode: int | None = None
        self.stderr = ""
        self._proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self._thread = threading.Thread(target=self._wait, daemon=True)
        self._thread.start()

    def local(self, value: str) -> str:
        """``gs://b/p`` anywhere in `value` (e.g. ``--output-dir=gs://b/p``) -> ``gcs_root/b/p``."""
        return value.replace("gs://", f"{self.gcs_root}/")

    def _wait(self) -> None:
        _, err = self._proc.communicate()
        self.stderr = err or ""
        self.returncode = self._proc.returncode

    def wait(self) -> int:
        self._thread.join()
        return int(self.returncode if self.returncode is not None else -1)

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._thread.join(timeout=10)

    def error_message(self) -> str:
        return replica_failure_message(self.job_name, int(self.returncode or 0), self.stderr)

    def update(self, job: dict[str, Any]) -> None:
        if self.returncode is None or job["state"] in JOB_TERMINAL:
            return
        job["updateTime"] = job["endTime"] = _now()
        if self.returncode == 0:
            job["state"] = "JOB_STATE_SUCCEEDED"
        else:
            job["state"] = "JOB_STATE_FAILED"
            job["error"] = {"code": 3, "message": self.error_message()}


def sample_parameters(study: dict[str, Any], rng: random.Random) -> list[dict[str, Any]]:
    """One trial's parameters drawn from a StudySpec's parameter specs (random search)."""
    out = []
    for spec in study.get("parameters", []):
        log = spec.get("scaleType") in (2, "UNIT_LOG_SCALE")
        if "doubleValueSpec" in spec:
            lo, hi = (
                float(spec["doubleValueSpec"]["minValue"]),
                float(spec["doubleValueSpec"]["maxValue"]),
            )
            value: Any = (
                math.exp(rng.uniform(math.log(lo), math.log(hi))) if log else rng.uniform(lo, hi)
            )
        elif "integerValueSpec" in spec:
            lo, hi = (
                int(spec["integerValueSpec"]["minValue"]),
                int(spec["integerValueSpec"]["maxValue"]),
            )
            value = rng.randint(lo, hi)
        elif "discreteValueSpec" in spec:
            value = rng.choice(spec["discreteValueSpec"]["values"])
        elif "categoricalValueSpec" in spec:
            value = rng.choice(spec["categoricalValueSpec"]["values"])
        else:
            raise HttpError(400, f"parameter {spec.get('parameterId')!r} has no value spec")
        out.append({"parameterId": spec["parameterId"], "value": value})
    return out


def _argument(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class _TuningRun:
    """A hyperparameter tuning job's trials, run one after another as local subprocesses.

    Each trial runs the trial job spec's chief command with ``--NAME VALUE`` per parameter; its
    final measurement is the last line of its cloudml-hypertune metrics file (the metric of the
    study spec, and ``global_step`` as the step count). A trial whose process fails, or that
    reports no metric, is INFEASIBLE; the job fails when no trial succeeded.
    """

    def __init__(self, job: dict[str, Any], gcs_root: Path, rng: random.Random) -> None:
        self.job_name = job["name"]
        self.spec = job["trialJobSpec"]
        self.study = job.get("studySpec") or {}
        self.metric = (self.study.get("metrics") or [{}])[0].get("metricId", "")
        self.count = int(job.get("maxTrialCount") or 1)
        self.gcs_root = gcs_root
        self.trials: list[dict[str, Any]] = []
        self.params = [sample_parameters(self.study, rng) for _ in range(self.count)]
        self.done = False
        self.error = ""
        self._current: _JobRun | None = None
        self._killed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run_all, daemon=True)
        self._thread.start()

    def _run_all(self) -> None:
        for i, params in enumerate(self.params, start=1):
            if self._killed:
                return
            trial: dict[str, Any] = {
                "id": str(i),
                "state": "ACTIVE",
                "parameters": params,
                "startTime": _now(),
            }
            with self._lock:
                self.trials.append(trial)
            metric_file = self.gcs_root / ".hypertune" / f"{self.job_name.rsplit('/', 1)[-1]}-{i}"
            args = [a for p in params for a in (f"--{p['parameterId']}", _argument(p["value"]))]
            env = {"CLOUD_ML_TRIAL_ID": str(i), "CLOUD_ML_HP_METRIC_FILE": str(metric_file)}
            base = self.spec.get("baseOutputDirectory", {}).get("outputUriPrefix", "")
            if base:  # each trial writes under its own folder of the job's output directory
                env["AIP_MODEL_DIR"] = f"{self.gcs_root}/{base[5:].rstrip('/')}/{i}/model"
            run = _JobRun(
                self.spec,
                f"{self.job_name}/trials/{i}",
                self.gcs_root,
                extra_args=args,
                extra_env={
                    "CLOUD_ML_TRIAL_ID": str(i),
                    "CLOUD_ML_HP_METRIC_FILE": str(metric_file),
                },
            )
            self._current = run
            code = run.wait()
            measurement = self._measurement(metric_file) if code == 0 else None
            with self._lock:
                trial["endTime"] = _now()
                if measurement is not None:
                    trial["state"] = "SUCCEEDED"
                    trial["finalMeasurement"] = measurement
                else:
                    trial["state"] = "INFEASIBLE"
                    trial["infeasibleReason"] = (
                        run.error_message()
                        if code != 0
                        else f"the trial reported no {self.metric!r} in its metrics file"
                    )
                    self.error = trial["infeasibleReason"]
        self.done = True

    def _measurement(self, path: Path) -> dict[str, Any] | None:
        lines = path.read_text().splitlines() if path.exists() else []
        if not lines:
            return None
        last = json.loads(lines[-1])
        if self.metric not in last:
            return None
        return {
            "stepCount": str(int(last.get("global_step", 0))),
            "metrics": [{"metricId": self.metric, "value": float(last[self.metric])}],
        }

    def kill(self) -> None:
        self._killed = True
        if self._current is not None:
            self._current.kill()
        self._thread.join(timeout=10)

    def update(self, job: dict[str, Any]) -> None:
        with self._lock:
            job["trials"] = [dict(t) for t in self.trials]
        if not self.done or job["state"] in JOB_TERMINAL:
            return
        job["updateTime"] = job["endTime"] = _now()
        if any(t["state"] == "SUCCEEDED" for t in job["trials"]):
            job["state"] = "JOB_STATE_SUCCEEDED"
        else:
            job["state"] = "JOB_STATE_FAILED"
            job["error"] = {"code": 3, "message": self.error or "all trials failed"}
