"""Local servers for the Kubeflow Pipelines v2beta1 REST API and an Artifact Registry KFP repository.

`KfpTestServer` answers the real ``kfp.Client(host=srv.endpoint)``: health, experiments, runs
(whose state follows a script, one step per GET), pipelines and versions (multipart uploads)
and recurring runs. `RegistryTestServer` answers ``kfp.registry.RegistryClient(host=srv.host())``:
multipart upload returning ``NAME/sha256:DIGEST``, tags, versions, packages and downloads.
Both record every request (`srv.requests`, `srv.find(method, path_regex)`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import re
import uuid
from collections.abc import Sequence
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

import yaml

from voltpipe.testing._http import HttpError, RecordedRequest, RecordingServer, Response

_API = r"/apis/v2beta1"
RUN_TERMINAL = {"SUCCEEDED", "FAILED", "SKIPPED", "CANCELED"}


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_multipart(req: RecordedRequest) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    """Splits a multipart/form-data body into form fields and files ``{name: (filename, bytes)}``."""
    content_type = req.headers.get("content-type", "")
    if not content_type.startswith("multipart/"):
        raise HttpError(
            400, f"expected a multipart/form-data body, got {content_type or 'no content type'}"
        )
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + req.body
    )
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        filename = part.get_filename()
        decoded = part.get_payload(decode=True)
        payload = decoded if isinstance(decoded, bytes) else b""
        if filename is not None:
            files[str(name)] = (filename, payload)
        else:
            fields[str(name)] = payload.decode()
    return fields, files


def _load_spec(data: bytes) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(data.decode()) if d]
    if not docs or not isinstance(docs[0], dict):
        raise HttpError(400, "the uploaded package is not a pipeline spec YAML")
    return docs[0].get("pipelineSpec", docs[0])


def _matches(item: dict[str, Any], filter_json: str | None) -> bool:
    if not filter_json:
        return True
    for pred in json.loads(filter_json).get("predicates", []):
        value = next(
            (
                pred[k]
                for k in ("stringValue", "string_value", "intValue", "int_value")
                if k in pred
            ),
            None,
        )
        key = "display_name" if pred.get("key") == "name" else pred.get("key")
        if pred.get("operation") in ("EQUALS", 1) and str(item.get(key)) != str(value):
            return False
    return True


class KfpTestServer(RecordingServer):
    """Kubeflow Pipelines v2beta1 REST API, enough for `kfp.Client`.

    Args:
        run_states: states a run goes through, one per GET after its creation.
        multi_user: the cluster's mode, reported by ``/apis/v2beta1/healthz`` and enforced as
            KFP does: a multi-user cluster refuses an experiment (creation or listing) without
            a namespace, a single-user cluster one with a namespace.
    """

    def __init__(
        self,
        *,
        run_states: Sequence[str] = ("RUNNING", "SUCCEEDED"),
        multi_user: bool = False,
        failure_message: str = "step 'train' failed in the test server",
    ) -> None:
        super().__init__()
        self.run_states = list(run_states)
        self.multi_user = multi_user
        self.failure_message = failure_message
        self.experiments: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.pipelines: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, dict[str, Any]] = {}
        self.recurring_runs: dict[str, dict[str, Any]] = {}
        self._pending: dict[str, list[str]] = {}
        r = self.route
        r("GET", _API + r"/healthz", lambda q, m: {"multi_user": self.multi_user})
        r("POST", _API + r"/experiments", self._create_experiment)
        r("GET", _API + r"/experiments", self._list_experiments)
        r(
            "GET",
            _API + r"/experiments/(?P<id>[^/:]+)",
            lambda q, m: self._get(self.experiments, m["id"], "experiment"),
        )
        r("POST", _API + r"/runs", self._create_run)
        r("GET", _API + r"/runs", self._list_runs)
        r("GET", _API + r"/runs/(?P<id>[^/:]+)", self._get_run)
        r("POST", _API + r"/runs/(?P<id>[^/:]+):terminate", self._terminate_run)
        r("POST", _API + r"/pipelines/upload", self._upload_pipeline)
        r("POST", _API + r"/pipelines/upload_version", self._upload_version)
        r("GET", _API + r"/pipelines", lambda q, m: self._list(self.pipelines, "pipelines", q))
        r(
            "GET",
            _API + r"/pipelines/(?P<id>[^/:]+)",
            lambda q, m: self._get(self.pipelines, m["id"], "pipeline"),
        )
        r("GET", _API + r"/pipelines/(?P<id>[^/:]+)/versions", self._list_versions)
        r(
            "GET",
            _API + r"/pipelines/(?P<id>[^/:]+)/versions/(?P<vid>[^/:]+)",
            lambda q, m: self._get(self.versions, m["vid"], "pipeline version"),
        )
        r("POST", _API + r"/recurringruns", self._create_recurring_run)
        r(
            "GET",
            _API + r"/recurringruns",
            lambda q, m: self._list(self.recurring_runs, "recurringRuns", q),
        )
        rr = _API + r"/recurringruns/(?P<id>[^/:]+)"
        r("GET", rr, lambda q, m: self._get(self.recurring_runs, m["id"], "recurring run"))
        r("DELETE", rr, self._delete_recurring_run)
        r("POST", rr + ":enable", lambda q, m: self._set_mode(m["id"], "ENABLE"))
        r("POST", rr + ":disable", lambda q, m: self._set_mode(m["id"], "DISABLE"))

    @staticmethod
    def _get(store: dict[str, dict[str, Any]], key: str, kind: str) -> dict[str, Any]:
        if key not in store:
            raise HttpError(404, f"{kind} {key} not found")
        return store[key]

    @staticmethod
    def _list(store: dict[str, dict[str, Any]], key: str, req: RecordedRequest) -> dict[str, Any]:
        items = [i for i in store.values() if _matches(i, req.param("filter"))]
        experiment_id = req.param("experiment_id")
        if experiment_id:
            items = [i for i in items if i.get("experiment_id") == experiment_id]
        return {key: items, "total_size": len(items)} if items else {"total_size": 0}

    # ----- experiments and runs ------------------------------------------------------------

    def _check_namespace(self, namespace: str | None, what: str) -> None:
        """KFP's namespace rule for `what` in this cluster's mode (HTTP 400 as KFP answers)."""
        if self.multi_user and not namespace:
            raise HttpError(
                400,
                f"Invalid input error: In multi-user mode, {what} must specify a namespace",
            )
        if not self.multi_user and namespace:
            raise HttpError(
                400,
                f"Invalid input error: In single-user mode, {what} cannot have a namespace "
                f"(got {namespace!r})",
            )

    def _list_experiments(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        namespace = req.param("namespace")
        self._check_namespace(namespace, "ListExperiments")
        out = self._list(self.experiments, "experiments", req)
        if namespace and "experiments" in out:
            out["experiments"] = [e for e in out["experiments"] if e.get("namespace") == namespace]
            out["total_size"] = len(out["experiments"])
            if not out["experiments"]:
                out = {"total_size": 0}
        return out

    def _list_runs(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        if self.multi_user and not (req.param("namespace") or req.param("experiment_id")):
            raise HttpError(
                400,
                "Invalid input error: In multi-user mode, ListRuns must specify a namespace "
                "or an experiment",
            )
        return self._list(self.runs, "runs", req)

    def _create_experiment(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        body = req.json or {}
        self._check_namespace(body.get("namespace"), "CreateExperiment")
        exp = {
            **body,
            "experiment_id": str(uuid.uuid4()),
            "created_at": _now(),
            "storage_state": "AVAILABLE",
        }
        self.experiments[exp["experiment_id"]] = exp
        return exp

    def _create_run(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        body = req.json or {}
        if not body.get("pipeline_spec") and not body.get("pipeline_version_reference"):
            raise HttpError(400, "a run needs a pipeline_spec or a pipeline_version_reference")
        if self.multi_user and body.get("experiment_id") not in self.experiments:
            raise HttpError(
                400,
                "Invalid input error: In multi-user mode, a run must belong to an experiment "
                "of a namespace",
            )
        run = {
            **body,
            "run_id": str(uuid.uuid4()),
            "created_at": _now(),
            "state": "PENDING",
            "storage_state": "AVAILABLE",
        }
        self.runs[run["run_id"]] = run
        self._pending[run["run_id"]] = list(self.run_states)
        return run

    def _get_run(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        run = self._get(self.runs, m["id"], "run")
        steps = self._pending.get(m["id"])
        if steps:
            run["state"] = steps.pop(0)
            run.setdefault("state_history", []).append(
                {"update_time": _now(), "state": run["state"]}
            )
            if run["state"] in RUN_TERMINAL:
                run["finished_at"] = _now()
                if run["state"] == "FAILED":
                    run["error"] = {"code": 9, "message": self.failure_message}
        return run

    def _terminate_run(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        self._get(self.runs, m["id"], "run")["state"] = "CANCELING"
        self._pending[m["id"]] = ["CANCELED"]
        return {}

    # ----- pipelines ---------------------------------------------------------------------

    def _add_version(
        self, pipeline_id: str, name: str, description: str | None, data: bytes
    ) -> dict[str, Any]:
        version: dict[str, Any] = {
            "pipeline_id": pipeline_id,
            "pipeline_version_id": str(uuid.uuid4()),
            "display_name": name,
            "name": name,
            "description": description,
            "created_at": _now(),
            "pipeline_spec": _load_spec(data),
        }
        self.versions[version["pipeline_version_id"]] = version
        return version

    def _upload_pipeline(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        _, files = parse_multipart(req)
        if "uploadfile" not in files:
            raise HttpError(400, "missing the uploadfile part")
        name = req.param("display_name") or req.param("name") or files["uploadfile"][0]
        if any(p["display_name"] == name for p in self.pipelines.values()):
            raise HttpError(409, f"a pipeline named {name!r} already exists")
        pipeline: dict[str, Any] = {
            "pipeline_id": str(uuid.uuid4()),
            "display_name": name,
            "name": name,
            "description": req.param("description"),
            "created_at": _now(),
            "namespace": req.param("namespace"),
        }
        self.pipelines[pipeline["pipeline_id"]] = pipeline
        self._add_version(
            pipeline["pipeline_id"], name, req.param("description"), files["uploadfile"][1]
        )
        return pipeline

    def _upload_version(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        _, files = parse_multipart(req)
        pipeline_id = req.param("pipelineid") or ""
        self._get(self.pipelines, pipeline_id, "pipeline")
        name = req.param("display_name") or req.param("name") or files["uploadfile"][0]
        if any(
            v["display_name"] == name and v["pipeline_id"] == pipeline_id
            for v in self.versions.values()
        ):
            raise HttpError(409, f"pipeline {pipeline_id} already has a version named {name!r}")
        return self._add_version(
            pipeline_id, name, req.param("description"), files["uploadfile"][1]
        )

    def _list_versions(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        self._get(self.pipelines, m["id"], "pipeline")
        items = [v for v in self.versions.values() if v["pipeline_id"] == m["id"]]
        return {"pipeline_versions": items, "total_size": len(items)}

    # ----- recurring runs ----------------------------------------------------------------

    def _create_recurring_run(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        body = req.json or {}
        trigger = body.get("trigger") or {}
        cron = (trigger.get("cron_schedule") or {}).get("cron")
        if not cron and not trigger.get("periodic_schedule"):
            raise HttpError(400, "a recurring run needs a cron_schedule or a periodic_schedule")
        if cron and len(cron.split()) != 6:
            raise HttpError(400, f"cron {cron!r}: KFP expects 6 fields (seconds first)")
        rec = {
            **body,
            "recurring_run_id": str(uuid.uuid4()),
            "created_at": _now(),
            "updated_at": _now(),
            "status": "ENABLED" if body.get("mode", "ENABLE") == "ENABLE" else "DISABLED",
        }
        self.recurring_runs[rec["recurring_run_id"]] = rec
        return rec

    def _set_mode(self, rec_id: str, mode: str) -> dict[str, Any]:
        rec = self._get(self.recurring_runs, rec_id, "recurring run")
        rec["mode"] = mode
        rec["status"] = "ENABLED" if mode == "ENABLE" else "DISABLED"
        rec["updated_at"] = _now()
        return {}

    def _delete_recurring_run(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        self._get(self.recurring_runs, m["id"], "recurring run")
        del self.recurring_runs[m["id"]]
        return {}


class RegistryTestServer(RecordingServer):
    """An Artifact Registry KFP repository, enough for `kfp.registry.RegistryClient`.

    `host(project, repo)` is the URL to give the client (the client's default context for a
    host it does not know maps every call under that URL). The package name of an upload is
    the template's ``pipelineInfo.name``, as on Artifact Registry.
    """

    def __init__(self) -> None:
        super().__init__()
        self.blobs: dict[tuple[str, str, str], bytes] = {}  # (repo, package, version) -> template
        self.tags: dict[tuple[str, str, str], str] = {}  # (repo, package, tag) -> version
        self.created: dict[tuple[str, str, str], str] = {}
        self._seq = itertools.count(1)
        repo = r"(?P<repo>/[^/]+/[^/]+)"
        r = self.route
        r("POST", repo, self._upload)
        r("GET", repo + r"/packages", self._list_packages)
        r("GET", repo + r"/packages/(?P<pkg>[^/]+)", self._get_package)
        r("DELETE", repo + r"/packages/(?P<pkg>[^/]+)", self._delete_package)
        r("GET", repo + r"/packages/(?P<pkg>[^/]+)/versions", self._list_versions)
        r("GET", repo + r"/packages/(?P<pkg>[^/]+)/versions/(?P<version>[^/]+)", self._get_version)
        r(
            "DELETE",
            repo + r"/packages/(?P<pkg>[^/]+)/versions/(?P<version>[^/]+)",
            self._delete_version,
        )
        r("GET", repo + r"/packages/(?P<pkg>[^/]+)/tags", self._list_tags)
        r("POST", repo + r"/packages/(?P<pkg>[^/]+)/tags", self._create_tag)
        r("GET", repo + r"/packages/(?P<pkg>[^/]+)/tags/(?P<tag>[^/]+)", self._get_tag)
        r("PATCH", repo + r"/packages/(?P<pkg>[^/]+)/tags/(?P<tag>[^/]+)", self._update_tag)
        r("DELETE", repo + r"/packages/(?P<pkg>[^/]+)/tags/(?P<tag>[^/]+)", self._delete_tag)
        r("GET", repo + r"/(?P<pkg>(?!packages$)[^/]+)/(?P<ref>[^/]+)", self._download)

    def host(self, project: str = "my-proj", repo: str = "pipelines") -> str:
        """The repository URL for `RegistryClient(host=...)`."""
        return f"{self.endpoint}/{project}/{repo}"

    def _tag_json(self, repo: str, pkg: str, tag: str) -> dict[str, Any]:
        return {
            "name": f"packages/{pkg}/tags/{tag}",
            "version": f"packages/{pkg}/versions/{self.tags[(repo, pkg, tag)]}",
        }

    def _version_json(self, repo: str, pkg: str, version: str) -> dict[str, Any]:
        tags = [t for (r, p, t), v in self.tags.items() if (r, p) == (repo, pkg) and v == version]
        return {
            "name": f"packages/{pkg}/versions/{version}",
            "createTime": self.created[(repo, pkg, version)],
            "updateTime": self.created[(repo, pkg, version)],
            "relatedTags": [self._tag_json(repo, pkg, t) for t in tags],
        }

    def _versions_of(self, repo: str, pkg: str) -> list[str]:
        return [v for (r, p, v) in self.blobs if (r, p) == (repo, pkg)]

    def _upload(self, req: RecordedRequest, m: re.Match[str]) -> Response:
        fields, files = parse_multipart(req)
        if "content" not in files:
            raise HttpError(400, "missing the content part")
        data = files["content"][1]
        pkg = _load_spec(data).get("pipelineInfo", {}).get("name")
        if not pkg:
            raise HttpError(400, "the template has no pipelineInfo.name")
        version = "sha256:" + hashlib.sha256(data).hexdigest()
        repo = m["repo"]
        self.blobs[(repo, pkg, version)] = data
        # A tiny sequence keeps createTime strictly increasing within one second.
        self.created.setdefault((repo, pkg, version), f"{_now()[:-1]}.{next(self._seq):06d}Z")
        for tag in [t.strip() for t in fields.get("tags", "").split(",") if t.strip()]:
            if tag.startswith("sha256:"):
                raise HttpError(400, f"tag {tag!r} must not look like a version")
            self.tags[(repo, pkg, tag)] = version
        return Response(f"{pkg}/{version}")

    def _get_package(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        if not self._versions_of(m["repo"], m["pkg"]):
            raise HttpError(404, f"package {m['pkg']} not found")
        return {"name": f"packages/{m['pkg']}", "displayName": m["pkg"]}

    def _list_packages(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        names = sorted({p for (r, p, _) in self.blobs if r == m["repo"]})
        return {"packages": [{"name": f"packages/{p}", "displayName": p} for p in names]}

    def _delete_package(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        self._get_package(req, m)
        for key in [k for k in self.blobs if k[:2] == (m["repo"], m["pkg"])]:
            del self.blobs[key]
        for key in [k for k in self.tags if k[:2] == (m["repo"], m["pkg"])]:
            del self.tags[key]
        return {"done": True}

    def _list_versions(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        return {
            "versions": [
                self._version_json(m["repo"], m["pkg"], v)
                for v in self._versions_of(m["repo"], m["pkg"])
            ]
        }

    def _get_version(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        if (m["repo"], m["pkg"], m["version"]) not in self.blobs:
            raise HttpError(404, f"version {m['pkg']}/{m['version']} not found")
        return self._version_json(m["repo"], m["pkg"], m["version"])

    def _delete_version(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        self._get_version(req, m)
        del self.blobs[(m["repo"], m["pkg"], m["version"])]
        return {"done": True}

    def _list_tags(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        return {
            "tags": [
                self._tag_json(r, p, t)
                for (r, p, t) in self.tags
                if (r, p) == (m["repo"], m["pkg"])
            ]
        }

    def _get_tag(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        if (m["repo"], m["pkg"], m["tag"]) not in self.tags:
            raise HttpError(404, f"tag {m['pkg']}:{m['tag']} not found")
        return self._tag_json(m["repo"], m["pkg"], m["tag"])

    def _set_tag(
        self, repo: str, pkg: str, tag: str, body: dict[str, Any] | None
    ) -> dict[str, Any]:
        version = str((body or {}).get("version", "")).rsplit("/", 1)[-1]
        if (repo, pkg, version) not in self.blobs:
            raise HttpError(404, f"version {pkg}/{version} not found")
        self.tags[(repo, pkg, tag)] = version
        return self._tag_json(repo, pkg, tag)

    def _create_tag(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        tag = req.param("tagId") or ""
        if (m["repo"], m["pkg"], tag) in self.tags:
            raise HttpError(409, f"tag {tag} already exists")
        return self._set_tag(m["repo"], m["pkg"], tag, req.json)

    def _update_tag(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        self._get_tag(req, m)
        return self._set_tag(m["repo"], m["pkg"], m["tag"], req.json)

    def _delete_tag(self, req: RecordedRequest, m: re.Match[str]) -> dict[str, Any]:
        self._get_tag(req, m)
        del self.tags[(m["repo"], m["pkg"], m["tag"])]
        return {}

    def _download(self, req: RecordedRequest, m: re.Match[str]) -> Response:
        ref = m["ref"]
        version = ref if ref.startswith("sha256:") else self.tags.get((m["repo"], m["pkg"], ref))
        data = self.blobs.get((m["repo"], m["pkg"], version or ""))
        if data is None:
            raise HttpError(404, f"{m['pkg']}/{ref} not found")
        return Response(data, headers={"Content-Type": "application/x-yaml"})
