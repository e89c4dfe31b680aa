"""Publishing templates to a KFP registry and resolving tags to immutable versions."""

from __future__ import annotations

import hashlib

import pytest
import yaml

from voltpipe.errors import ConfigError, PipelineError
from voltpipe.runners.templates import (
    compile_template,
    load_template,
    publish_template,
    repair_template_text,
    resolve_template,
    split_template_uri,
)


def test_repair_comments_out_the_broken_header_lines():
    broken = (
        "# PIPELINE DEFINITION\n# Name: p\n# Inputs:\n#    q: str [Default: 'SELECT 1\nFROM t']\n"
        "components: {}\npipelineInfo:\n  name: p\nroot: {}\n"
    )
    fixed = repair_template_text(broken)
    assert yaml.safe_load(fixed)["pipelineInfo"]["name"] == "p"
    assert "#    FROM t']" in fixed
    assert repair_template_text(fixed) == fixed


def test_load_template_names_a_bad_file(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("a: 1\n")
    with pytest.raises(ConfigError, match="not a compiled KFP pipeline"):
        load_template(path)
    with pytest.raises(ConfigError, match="No such file"):
        load_template(tmp_path / "missing.yaml")


def test_compile_template_writes_loadable_yaml(make_config, tmp_path):
    path = compile_template("training", make_config(), tmp_path / "out" / "t.yaml")
    assert yaml.safe_load(path.read_text())["pipelineInfo"]["name"] == "wind-power-training"
    with pytest.raises(ConfigError, match="unknown pipeline 'nope'"):
        compile_template("nope", make_config(), tmp_path / "n.yaml")


def test_split_template_uri():
    assert split_template_uri("https://europe-west1-kfp.pkg.dev/p/r/pkg/sha256:ab") == (
        "https://europe-west1-kfp.pkg.dev/p/r",
        "pkg",
        "sha256:ab",
    )
    with pytest.raises(ConfigError):
        split_template_uri("pkg")


@pytest.mark.integration
def test_publish_then_resolve_tag_to_digest(registry_server, training_template):
    host = registry_server.host("my-proj", "pipelines")
    published = publish_template(training_template, host=host, tags=["v1", "latest"])
    # what is uploaded (and so digested) is the template with its header repaired: the demo
    # query spans lines, which kfp writes into the header uncommented
    uploaded = repair_template_text(training_template.read_text()).encode()
    assert uploaded != training_template.read_bytes()
    digest = "sha256:" + hashlib.sha256(uploaded).hexdigest()
    assert published == {
        "host": host,
        "package": "wind-power-training",
        "version": digest,
        "tags": ["v1", "latest"],
        "template_uri": f"{host}/wind-power-training/{digest}",
    }
    [upload] = registry_server.find("POST", r"^/my-proj/pipelines$")
    assert upload.headers["content-type"].startswith("multipart/form-data")
    assert b'name="tags"' in upload.body and b"v1,latest" in upload.body

    uri, version = resolve_template(host, "wind-power-training", "latest")
    assert (uri, version) == (published["template_uri"], digest)
    assert registry_server.find("GET", r"/packages/wind-power-training/tags/latest$")
    # A version resolves to itself after a check that it exists.
    assert resolve_template(host, "wind-power-training", digest) == (uri, digest)


@pytest.mark.integration
def test_a_moved_tag_resolves_to_the_new_digest(registry_server, training_template, tmp_path):
    host = registry_server.host()
    first = publish_template(training_template, host=host, tags=["prod"])
    second = publish_template(
        training_template, host=host, tags=["prod"], description="retrained weekly"
    )
    assert first["version"] != second["version"]
    assert resolve_template(host, "wind-power-training", "prod")[1] == second["version"]
    assert resolve_template(host, "wind-power-training", first["version"])[1] == first["version"]


@pytest.mark.integration
def test_unknown_tag_and_bad_tag(registry_server, training_template):
    host = registry_server.host()
    with pytest.raises(PipelineError, match="resolving tag wind-power-training:nope .*HTTP 404"):
        resolve_template(host, "wind-power-training", "nope")
    with pytest.raises(ConfigError, match="tag 'sha256:x'"):
        publish_template(training_template, host=host, tags=["sha256:x"])
