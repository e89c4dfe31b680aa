"""The Vertex AI Model Registry backend: one parent model per name, versions, aliases, lineage.

Opened by ``open_registry("vertex://PROJECT/LOCATION?image=IMAGE&...")`` (see `parse_vertex_uri`).
A version is a ``Model.upload`` under the parent model found by display name; its artifact URI is
the model folder on Cloud Storage (a ``/gcs/BUCKET/...`` path, as a KFP artifact has on Vertex,
maps to ``gs://BUCKET/...``), its container spec is voltpipe's prediction server. The full
lineage goes into ``metadata.json`` next to the model (when the folder is mounted), a compact
copy into the version's description, and a few fields into labels.

google-cloud-aiplatform is imported inside the functions.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

from voltpipe.errors import ConfigError, DataError
from voltpipe.model_dir import REGISTRY_METADATA_FILE as METADATA_FILE
from voltpipe.registry.base import CHAMPION, ModelVersion
from voltpipe.registry.uri import parse_vertex_uri as parse_vertex_uri  # re-exported
from voltpipe.registry.uri import vertex_registry_uri as vertex_registry_uri  # re-exported

log = logging.getLogger("voltpipe.registry")
DEFAULT_ALIAS = "default"  # Vertex's alias for the version a bare model name resolves to
PREDICT_ROUTE = "/predict"
HEALTH_ROUTE = "/health"
SERVING_PORT = 8080
# Keys copied into the version description (the full lineage, with statistics and schema, can
# be far larger than a description should be).
_EVALUATION_SCHEMAS = {
    task: f"gs://google-cloud-aiplatform/schema/modelevaluation/{task}_metrics_1.0.0.yaml"
    for task in ("regression", "classification", "forecasting")
}
_DESCRIPTION_KEYS = ("task", "label", "metrics", "decision", "source_model_uri", "query_parameters")
# voltpipe's metric names -> the field names of the task's Vertex metrics schema (the Model
# Registry shows only those); metrics the schema has no field for are not imported.
_ERROR_FIELDS = {
    "rmse": "rootMeanSquaredError",
    "mae": "meanAbsoluteError",
    "mape": "meanAbsolutePercentageError",
    "r2": "rSquared",
    "rmsle": "rootMeanSquaredLogError",
}
EVALUATION_FIELDS = {
    "regression": _ERROR_FIELDS,
    "forecasting": {
        **_ERROR_FIELDS,
        "wape": "weightedAbsolutePercentageError",
        "rmspe": "rootMeanSquaredPercentageError",
        "smape": "symmetricMeanAbsolutePercentageError",
    },
    "classification": {"auc": "auRoc", "pr_auc": "auPrc", "log_loss": "logLoss"},
}


def evaluation_metrics(task: str, metrics: dict[str, Any]) -> dict[str, float]:
    """The numeric `metrics` under the field names of `task`'s Vertex metrics schema (all of
    them, under their own names, for a task without a schema)."""
    numbers = {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    fields = EVALUATION_FIELDS.get(task)
    if fields is None:
        return numbers
    return {fields[k]: v for k, v in numbers.items() if k in fields}


def init_sdk(project: str, location: str, api_endpoint: str | None = None) -> Any:
    """Initialises and returns the aiplatform module for `project`/`location`.

    An ``http://`` `api_endpoint` is a local test server: REST transport, anonymous credentials
    (as `voltpipe.runners.vertex.init_aiplatform` does).
    """
    from google.cloud import aiplatform

    kwargs: dict[str, Any] = {"project": project, "location": location}
    if api_endpoint:
        kwargs["api_endpoint"] = api_endpoint
        if api_endpoint.startswith("http://"):
            from google.auth.credentials import AnonymousCredentials

            kwargs["credentials"] = AnonymousCredentials()
            kwargs["api_transport"] = "rest"
    aiplatform.init(**kwargs)
    return aiplatform


def label_value(text: str) -> str:
    """`text` as a Vertex label value: lowercase letters, digits, ``_`` and ``-``, <= 63 chars."""
    return re.sub(r"[^a-z0-9_-]", "-", str(text).lower())[:63]


class VertexRegistry:
    """`Registry` on the Vertex AI Model Registry.

    Args:
        project, location: where the models live.
        image: the serving container image (voltpipe's image: ``python -m voltpipe.serving``).
        api_endpoint: the Vertex API endpoint (``http://...``: a local test server).
        labels: labels on every version (e.g. the config's ``vertex.labels``).
        gcs_mount: the local folder where ``gs://`` buckets are mounted (Vertex: ``/gcs``).
        encryption_key: the Cloud KMS key (CMEK) every uploaded version is encrypted with.
    """

    def __init__(
        self,
        project: str,
        location: str,
        *,
        image: str | None = None,
        api_endpoint: str | None = None,
        labels: dict[str, str] | None = None,
        gcs_mount: str | Path = "/gcs",
        encryption_key: str | None = None,
    ) -> None:
        self.encryption_key = encryption_key or None
        self.project = project
        self.location = location
        self.image = image
        self.api_endpoint = api_endpoint
        self.labels = dict(labels or {})
        self.gcs_mount = Path(gcs_mount)

    # -- paths ----------------------------------------------------------------------------------

    def gcs_uri(self, model_dir: str | Path) -> str:
        """``gs://BUCKET/PATH`` for a ``gs://`` URI or a folder under the ``gs://`` mount.

        Raises:
            ConfigError: the folder is neither (Vertex cannot read a local folder).
        """
        text = str(model_dir)
        if text.startswith("gs://"):
            return text.rstrip("/")
        path = Path(text)
        try:
            rel = path.relative_to(self.gcs_mount)
        except ValueError:
            raise ConfigError(
                f"model folder {text!r} is not on Cloud Storage: the Vertex registry needs a "
                f"gs:// URI or a path under {self.gcs_mount}/ (run the pipeline on Vertex AI, "
                "or use a local registry)"
            ) from None
        if not rel.parts:
            raise ConfigError(f"model folder {text!r} names no bucket")
        return "gs://" + "/".join(rel.parts)

    def local_path(self, uri: str) -> Path | None:
        """The mounted folder for a ``gs://`` URI, if the mount has it."""
        if not uri.startswith("gs://"):
            return Path(uri) if Path(uri).exists() else None
        path = self.gcs_mount / uri.removeprefix("gs://")
        return path if path.exists() else None

    # -- SDK ------------------------------------------------------------------------------------

    def _sdk(self) -> ModuleType:  # google.cloud.aiplatform, initialised
        return init_sdk(self.project, self.location, self.api_endpoint)

    def parent_model(self, name: str) -> str | None:
        """The resource name of the model whose display name is `name` (the oldest, if several)."""
        if not name or '"' in name:
            raise ConfigError(f"invalid model name {name!r}")
        models = self._sdk().Model.list(filter=f'display_name="{name}"', order_by="create_time")
        return models[0].resource_name if models else None

    # -- Registry protocol ----------------------------------------------------------------------

    def register(
        self,
        name: str,
        model_dir: str | Path,
        metadata: dict[str, Any],
        extra_files: dict[str, Path] | None = None,
    ) -> ModelVersion:
        """Uploads `model_dir` as the next version of `name`.

        No alias moves here: deploy gives the ``champion`` alias (and the default version) to a
        promoted version after its checks pass. `extra_files` are copied into
        the mounted model folder (skipped, with a warning, when it is not mounted).

        Raises:
            ConfigError: no serving image, or the folder is not on Cloud Storage.
        """
        if not self.image:
            raise ConfigError(
                "the Vertex registry needs the serving image: add ?image=IMAGE to the registry "
                "URI (the config's `image:`)"
            )
        aiplatform = self._sdk()
        artifact_uri = self.gcs_uri(model_dir)
        mounted = self.local_path(artifact_uri)
        for target, source in (extra_files or {}).items():
            if mounted is None:
                log.warning(
                    "%s is not mounted: %s is not stored with the model", artifact_uri, target
                )
            else:
                shutil.copyfile(source, mounted / target)
        parent = self.parent_model(name)
        # The champion alias moves later, in deploy, after the smoke test (never at upload).
        promote = bool((metadata.get("decision") or {}).get("promote"))
        labels = {
            **self.labels,
            "voltpipe-model": label_value(name),
            "voltpipe-promoted": str(promote).lower(),
        }
        for key in ("task", "label"):
            if metadata.get(key):
                labels[f"voltpipe-{key}"] = label_value(metadata[key])
        summary = {k: metadata[k] for k in _DESCRIPTION_KEYS if k in metadata}
        from google.api_core import exceptions as gexc

        try:
            model = aiplatform.Model.upload(
                display_name=name,
                parent_model=parent,
                # The first version is necessarily the default; later ones become it with the
                # champion alias (`set_alias`), after deploy's checks.
                is_default_version=parent is None,
                version_aliases=None,
                version_description=str((metadata.get("decision") or {}).get("reason", ""))[:1000]
                or None,
                description=json.dumps(summary, sort_keys=True, default=str),
                artifact_uri=artifact_uri,
                serving_container_image_uri=self.image,
                serving_container_predict_route=PREDICT_ROUTE,
                serving_container_health_route=HEALTH_ROUTE,
                serving_container_ports=[SERVING_PORT],
                labels=labels,
                encryption_spec_key_name=self.encryption_key,
                sync=True,
            )
        except gexc.GoogleAPICallError as exc:  # e.g. an organisation policy (CMEK), labels
            raise DataError(
                f"the Vertex AI Model Registry refused a version of {name!r}: {exc.message or exc}"
            ) from None
        meta = {
            **metadata,
            "name": name,
            "version": model.version_id,
            "vertex_model": model.resource_name,
            "vertex_model_version": f"{model.resource_name}@{model.version_id}",
        }
        test_metrics = (metadata.get("metrics") or {}).get("test")
        if test_metrics:
            meta["vertex_evaluation"] = self._import_evaluation(
                model, name, test_metrics, str(metadata.get("task", ""))
            )
        if mounted is not None:
            (mounted / METADATA_FILE).write_text(
                json.dumps(meta, indent=2, sort_keys=True, default=str)
            )
        return ModelVersion(
            name=name,
            version=model.version_id,
            uri=artifact_uri,
            metadata=meta,
            aliases=tuple(model.version_aliases or ()),
        )

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Points `alias` at `version` (``champion`` also makes it the default version)."""
        parent = self._require_parent(name)
        aliases = [alias, DEFAULT_ALIAS] if alias == CHAMPION else [alias]
        self._sdk().models.ModelRegistry(parent).add_version_aliases(aliases, version=version)

    def compare_and_set_alias(
        self, name: str, alias: str, version: str, *, expected: str | None
    ) -> str | None:
        """Moves `alias` to `version` only if it still points at `expected` (None: unset).

        Vertex has no conditional alias update: this reads, compares and sets, which narrows
        the race to one request (runs on Vertex are serialised by their schedule).
        """
        found = self.get(name, alias)
        current = found.version if found is not None else None
        if current == version:
            return None
        if current != expected:
            return current or ""
        self.set_alias(name, alias, version)
        return None

    def remove_alias(self, name: str, alias: str, version: str | None = None) -> None:
        """Removes `alias` from `version` (default: the version it points at; the default alias
        cannot be removed on Vertex)."""
        parent = self._require_parent(name)
        if version is None:
            found = self.get(name, alias)
            if found is None:
                return
            version = found.version
        self._sdk().models.ModelRegistry(parent).remove_version_aliases([alias], version=version)

    def get(self, name: str, selector: str = CHAMPION) -> ModelVersion | None:
        from google.api_core import exceptions

        parent = self.parent_model(name)
        if parent is None:
            return None
        try:
            model = self._sdk().Model(parent, version=selector)
        except exceptions.NotFound:
            return None
        return self._version(name, model)

    def versions(self, name: str) -> list[ModelVersion]:
        parent = self.parent_model(name)
        if parent is None:
            return []
        aiplatform = self._sdk()
        infos = aiplatform.models.ModelRegistry(parent).list_versions()
        ordered = sorted(infos, key=lambda i: int(i.version_id))
        return [
            self._version(name, aiplatform.Model(parent, version=i.version_id)) for i in ordered
        ]

    def _import_evaluation(
        self, model: Any, name: str, metrics: dict[str, Any], task: str
    ) -> str | None:
        """Attaches the test metrics to the version as a Vertex model evaluation (best effort:
        the registration stands without it); returns the evaluation's resource name."""
        from google.protobuf import json_format, struct_pb2

        numbers = evaluation_metrics(task, metrics)
        if not numbers:
            return None
        value = struct_pb2.Value()
        json_format.ParseDict(numbers, value)
        evaluation: dict[str, Any] = {
            "display_name": f"{name}-v{model.version_id}-test",
            "metrics": value,
        }
        if task in _EVALUATION_SCHEMAS:
            evaluation["metrics_schema_uri"] = _EVALUATION_SCHEMAS[task]
        try:
            imported = model.api_client.import_model_evaluation(
                parent=model.versioned_resource_name, model_evaluation=evaluation
            )
        except Exception as exc:  # e.g. metric names the schema does not know
            log.warning("could not import the evaluation into Vertex AI: %s", exc)
            return None
        return str(imported.name)

    # -- helpers --------------------------------------------------------------------------------

    def _require_parent(self, name: str) -> str:
        parent = self.parent_model(name)
        if parent is None:
            raise ConfigError(
                f"model {name!r} is not in the Vertex AI Model Registry of "
                f"{self.project}/{self.location}"
            )
        return parent

    def _version(self, name: str, model: Any) -> ModelVersion:
        uri = str(model.uri or "")
        meta: dict[str, Any] = {}
        mounted = self.local_path(uri) if uri else None
        if mounted is not None and (mounted / METADATA_FILE).exists():
            meta = json.loads((mounted / METADATA_FILE).read_text())
        elif model.description:
            try:
                meta = json.loads(model.description)
            except ValueError:
                meta = {"description": model.description}
        meta |= {
            "name": name,
            "version": model.version_id,
            "vertex_model": model.resource_name,
            "vertex_model_version": f"{model.resource_name}@{model.version_id}",
        }
        return ModelVersion(
            name=name,
            version=str(model.version_id),
            uri=uri,
            metadata=meta,
            aliases=tuple(model.version_aliases or ()),
        )
