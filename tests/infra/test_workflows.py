"""Checks of .github/workflows: schema validity and keyless (Workload Identity Federation) release."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS_DIR = REPO_ROOT / ".github" / "workflows"
WORKFLOWS = sorted(WORKFLOWS_DIR.glob("*.yml")) + sorted(WORKFLOWS_DIR.glob("*.yaml"))


def load_workflow(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS_DIR / name).read_text(encoding="utf-8"))
    # YAML 1.1 reads the bare key `on` as the boolean True.
    if True in data:
        data["on"] = data.pop(True)
    return data


def steps_using(workflow: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [
        step
        for job in workflow["jobs"].values()
        for step in job.get("steps", [])
        if str(step.get("uses", "")).split("@")[0] == action
    ]


def all_run_scripts(workflow: dict[str, Any]) -> str:
    return "\n".join(
        str(step.get("run", ""))
        for job in workflow["jobs"].values()
        for step in job.get("steps", [])
    )


def test_expected_workflows_exist() -> None:
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "release.yml"}


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_matches_github_schema(workflow: Path, infra_tool: Callable[[str], str]) -> None:
    check_jsonschema = infra_tool("check-jsonschema")
    proc = subprocess.run(
        [check_jsonschema, "--builtin-schema", "vendor.github-workflows", str(workflow)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, (
        f"{workflow.name} is not a valid workflow:\n{proc.stdout}{proc.stderr}"
    )


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_no_long_lived_credentials(workflow: Path) -> None:
    text = workflow.read_text(encoding="utf-8")
    for forbidden in ("credentials_json", "GOOGLE_APPLICATION_CREDENTIALS", "service_account_key"):
        assert forbidden not in text, f"{workflow.name} uses {forbidden}"


FULL_SHA = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"uses:\s*(\S+)\s+#\s*v\d+(\.\d+){0,2}\s*$")


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_by_full_commit_sha(workflow: Path) -> None:
    """A tag (`@v4`) can be moved to other code by whoever controls the action's repository; a
    40-hex commit cannot. The release tag stays readable as a trailing `# vX.Y.Z` comment."""
    data = load_workflow(workflow.name)
    uses = [
        str(step["uses"])
        for job in data["jobs"].values()
        for step in job.get("steps", [])
        if "uses" in step
    ]
    assert uses, f"{workflow.name} uses no action"
    unpinned = [u for u in uses if not FULL_SHA.match(u)]
    assert not unpinned, f"{workflow.name}: actions not pinned by commit SHA: {unpinned}"
    lines = [ln for ln in workflow.read_text(encoding="utf-8").splitlines() if "uses:" in ln]
    missing = [ln.strip() for ln in lines if not VERSION_COMMENT.search(ln)]
    assert not missing, f"{workflow.name}: pinned actions without a '# vX.Y.Z' comment: {missing}"


def test_ci_runs_make_test_on_prs_and_main() -> None:
    workflow = load_workflow("ci.yml")
    assert "pull_request" in workflow["on"]
    assert "main" in workflow["on"]["push"]["branches"]
    (setup,) = steps_using(workflow, "actions/setup-python")
    assert str(setup["with"]["python-version"]) == "3.11"
    assert setup["with"].get("cache") == "pip"
    assert "make test" in all_run_scripts(workflow)


def test_release_authenticates_with_workload_identity_federation() -> None:
    workflow = load_workflow("release.yml")
    (auth,) = steps_using(workflow, "google-github-actions/auth")
    assert auth["uses"].startswith("google-github-actions/auth@")
    assert auth["with"]["workload_identity_provider"] == "${{ vars.WIF_PROVIDER }}"
    assert auth["with"]["service_account"] == "${{ vars.CI_SERVICE_ACCOUNT }}"
    assert "credentials_json" not in auth["with"]
    for job in workflow["jobs"].values():
        permissions = {**workflow.get("permissions", {}), **job.get("permissions", {})}
        assert permissions.get("id-token") == "write"
        assert permissions.get("contents") == "read"


def test_release_triggers_and_job_concurrency() -> None:
    workflow = load_workflow("release.yml")
    assert "main" in workflow["on"]["push"]["branches"]
    assert "v*" in workflow["on"]["push"]["tags"]
    for name, job in workflow["jobs"].items():
        assert "concurrency" in job, f"job {name} has no job-level concurrency"


def test_release_builds_pushes_and_publishes() -> None:
    workflow = load_workflow("release.yml")
    (build,) = steps_using(workflow, "docker/build-push-action")
    assert build["with"]["file"] == "images/Dockerfile"
    assert build["with"]["push"] is True
    tags = build["with"]["tags"]
    assert "github.sha" in tags and "steps.meta.outputs.tag" in tags
    scripts = all_run_scripts(workflow)
    assert "pip install ." in scripts
    assert "voltpipe compile training --config configs/dev.yaml" in scripts
    assert "-o training.yaml" in scripts
    assert "voltpipe publish training --config configs/dev.yaml" in scripts
    assert '--tag "${TAG}"' in scripts
    # Components run in the image this workflow pushed, pinned by commit.
    assert '--set "image=${COMPONENT_IMAGE}"' in scripts
    assert (REPO_ROOT / "configs" / "dev.yaml").exists()


def test_release_smoke_run_is_gated() -> None:
    workflow = load_workflow("release.yml")
    smoke = [
        step
        for job in workflow["jobs"].values()
        for step in job.get("steps", [])
        if "voltpipe run training --target vertex" in str(step.get("run", ""))
    ]
    assert len(smoke) == 1
    assert "smoke_run" in str(smoke[0].get("if", ""))
