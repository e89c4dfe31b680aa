"""Compiled pipeline templates: load and repair them, publish them to and resolve them from a KFP registry.

A registry is an Artifact Registry KFP repository (``https://REGION-kfp.pkg.dev/PROJECT/REPO``)
or any host speaking its protocol. A tag is mutable; `resolve_template` turns it into the
immutable version (``sha256:...``) so that a run or schedule always names exactly what it runs.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from voltpipe.errors import ConfigError, PipelineError

if TYPE_CHECKING:
    from kfp.registry import RegistryClient

    from voltpipe.config import VoltpipeConfig

# Top-level keys of a compiled PipelineSpec; the YAML body starts at the first of them.
_SPEC_KEYS = re.compile(
    r"^(components|defaultPipelineRoot|deploymentSpec|pipelineInfo|platforms|root|schemaVersion|sdkVersion)\s*:"
)
_VERSION_PREFIX = "sha256:"


def repair_template_text(text: str) -> str:
    """Returns compiled-template text whose ``# PIPELINE DEFINITION`` header is all comments.

    KFP 2.17 writes a multi-line string default (a SQL query, say) into that header without the
    ``#`` on its continuation lines, which makes the file invalid YAML for every reader (Vertex
    AI, ``kfp.Client``, Artifact Registry). The body below the header is always valid.
    """
    lines = text.split("\n")
    if not lines or not lines[0].startswith("# PIPELINE DEFINITION"):
        return text
    end = next((i for i, line in enumerate(lines) if _SPEC_KEYS.match(line)), len(lines))
    header = [line if line.startswith("#") else f"#    {line}" for line in lines[:end]]
    return "\n".join(header + lines[end:])


def load_template(path: str | Path) -> dict[str, Any]:
    """Reads a compiled pipeline template (the PipelineSpec document) from a local file.

    Raises:
        ConfigError: the file is missing or is not a compiled pipeline.
    """
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"pipeline template {p}: {exc.strerror}") from exc
    try:
        docs = [d for d in yaml.safe_load_all(repair_template_text(text)) if d]
    except yaml.YAMLError as exc:
        raise ConfigError(f"pipeline template {p}: not valid YAML: {exc}") from exc
    spec = docs[0] if docs and isinstance(docs[0], dict) else {}
    spec = spec.get("pipelineSpec", spec)
    if "pipelineInfo" not in spec or "root" not in spec:
        raise ConfigError(
            f"pipeline template {p}: not a compiled KFP pipeline (no pipelineInfo/root); "
            "compile one with `voltpipe compile PIPELINE -o FILE`"
        )
    return spec


def loadable_template(path: str | Path, out_dir: Path) -> Path:
    """Returns `path`, or a repaired copy of it in `out_dir` when its header is not valid YAML."""
    p = Path(path)
    load_template(p)  # validates, naming the file
    text = p.read_text()
    fixed = repair_template_text(text)
    if fixed == text:
        return p
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / p.name
    target.write_text(fixed)
    return target


def compile_template(pipeline_name: str, cfg: VoltpipeConfig, path: str | Path) -> Path:
    """Compiles pipeline `pipeline_name` for `cfg` to `path` as loadable KFP IR YAML."""
    from kfp import compiler

    from voltpipe.pipelines import build_pipeline

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        func = build_pipeline(pipeline_name, cfg)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    compiler.Compiler().compile(func, str(p))
    p.write_text(repair_template_text(p.read_text()))
    return p


# ----- registry -------------------------------------------------------------------------------


def registry_client(host: str, auth: Any = None) -> RegistryClient:
    """A `RegistryClient` for `host`.

    An Artifact Registry host uses Application Default Credentials unless `auth` (a
    ``requests.auth.AuthBase`` or google credentials) is given; another host (a local test
    registry on ``http://``) is called without credentials.
    """
    from kfp.registry import RegistryClient

    if not re.match(r"^https?://", host):
        raise ConfigError(
            f"registry host {host!r}: expected https://REGION-kfp.pkg.dev/PROJECT/REPOSITORY"
        )
    return RegistryClient(host=host, auth=auth)


def _registry_call(what: str, host: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    import requests

    try:
        return fn(*args, **kwargs)
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        raise PipelineError(
            f"{what} on {host} failed: HTTP {status} {_error_text(exc.response)}"
        ) from exc
    except requests.ConnectionError as exc:
        raise PipelineError(f"{what}: cannot reach {host}: {exc}") from exc


def _error_text(response: Any) -> str:
    if response is None:
        return ""
    try:
        return str(response.json().get("error", {}).get("message", "")) or response.text[:200]
    except ValueError:
        return response.text[:200]


def publish_template(
    template_path: str | Path,
    *,
    host: str,
    tags: list[str],
    description: str | None = None,
    auth: Any = None,
) -> dict[str, Any]:
    """Uploads a compiled template to a KFP registry with `tags` and returns where it landed.

    `description` becomes the template's ``pipelineInfo.description`` (the registry's upload has
    no description field of its own), so it is part of the version's digest.

    Returns:
        ``{"host", "package", "version", "tags", "template_uri"}``; `template_uri` names the
        immutable version (``HOST/PACKAGE/sha256:...``), ready for `submit_vertex(template_uri=...)`.

    Raises:
        ConfigError: a bad tag or template file. PipelineError: the registry refused the upload.
    """
    for tag in tags:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", tag) or tag.startswith(
            _VERSION_PREFIX
        ):
            raise ConfigError(
                f"tag {tag!r}: use letters, digits, '.', '_' and '-' (not a sha256: version)"
            )
    spec = load_template(template_path)
    text = repair_template_text(Path(template_path).read_text())
    with tempfile.TemporaryDirectory() as tmp:
        upload = Path(tmp) / Path(template_path).name
        if description is not None:
            spec["pipelineInfo"]["description"] = description
            text = yaml.safe_dump(spec, sort_keys=True)
        upload.write_text(text)
        client = registry_client(host, auth)
        package, version = _registry_call(
            "uploading the template",
            host,
            client.upload_pipeline,
            file_name=str(upload),
            tags=list(tags) or None,
        )
    return {
        "host": host.rstrip("/"),
        "package": package,
        "version": version,
        "tags": list(tags),
        "template_uri": f"{host.rstrip('/')}/{package}/{version}",
    }


def resolve_template(
    host: str, package_name: str, tag: str, *, auth: Any = None
) -> tuple[str, str]:
    """Resolves `tag` (or a ``sha256:`` version) of `package_name` to its immutable version.

    Returns:
        ``(template_uri, version)`` with ``template_uri = HOST/PACKAGE/sha256:...``.

    Raises:
        PipelineError: the package, tag or version does not exist.
    """
    client = registry_client(host, auth)
    if tag.startswith(_VERSION_PREFIX):
        _registry_call(
            f"looking up {package_name}@{tag}", host, client.get_version, package_name, tag
        )
        version = tag
    else:
        found = _registry_call(
            f"resolving tag {package_name}:{tag}", host, client.get_tag, package_name, tag
        )
        version = str(found.get("version", "")).rsplit("/", 1)[-1]
        if not version.startswith(_VERSION_PREFIX):
            raise PipelineError(
                f"tag {package_name}:{tag} on {host} points at no version ({found})"
            )
    return f"{host.rstrip('/')}/{package_name}/{version}", version


def split_template_uri(template_uri: str) -> tuple[str, str, str]:
    """Splits ``HOST/PACKAGE/VERSION_OR_TAG`` into its three parts."""
    host, _, rest = template_uri.rstrip("/").rpartition("/")
    host, _, package = host.rpartition("/")
    if not host or not package or not rest:
        raise ConfigError(
            f"template URI {template_uri!r}: expected HOST/PACKAGE/sha256:DIGEST or HOST/PACKAGE/TAG"
        )
    return host, package, rest


def download_template(template_uri: str, out_dir: Path, *, auth: Any = None) -> Path:
    """Downloads ``HOST/PACKAGE/VERSION_OR_TAG`` into `out_dir` and returns the local file."""
    host, package, ref = split_template_uri(template_uri)
    client = registry_client(host, auth)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = ref[len(_VERSION_PREFIX) :][:12] if ref.startswith(_VERSION_PREFIX) else ref
    target = out_dir / f"{package}-{name}.yaml"
    kwargs = {"version": ref} if ref.startswith(_VERSION_PREFIX) else {"tag": ref}
    _registry_call(
        f"downloading {package}/{ref}",
        host,
        client.download_pipeline,
        package,
        file_name=str(target),
        **kwargs,
    )
    return loadable_template(target, out_dir)


def local_template(
    template_path: str | Path | None, template_uri: str | None, out_dir: Path
) -> Path:
    """The loadable local file to run: `template_uri` downloaded, else `template_path` repaired.

    Raises:
        ConfigError: neither is given.
    """
    if template_uri:
        return download_template(template_uri, out_dir)
    if template_path is None:
        raise ConfigError("give a compiled template_path or a template_uri")
    return loadable_template(template_path, out_dir)
