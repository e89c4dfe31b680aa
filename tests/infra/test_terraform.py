"""Static checks of terraform/: HCL parses, module conventions, version ranges, env outputs, checkov."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hcl2
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = REPO_ROOT / "terraform"
MODULE_DIRS = sorted(p for p in (TERRAFORM_DIR / "modules").iterdir() if p.is_dir())
ENV_DIRS = [TERRAFORM_DIR / "envs" / "dev", TERRAFORM_DIR / "envs" / "prod"]
TF_DIRS = MODULE_DIRS + ENV_DIRS
TF_FILES = sorted(p for p in TERRAFORM_DIR.rglob("*.tf") if ".terraform" not in p.parts)

EXPECTED_MODULES = {
    "artifact-registry",
    "bigquery",
    "buckets",
    "github-wif",
    "pipeline-schedule",
    "project-services",
    "service-accounts",
    "tensorboard",
}
MODULE_FILES = ("main.tf", "variables.tf", "outputs.tf", "versions.tf", "README.md")
# The names voltpipe's `--terraform-output FILE` reads from `terraform output -json`.
VOLTPIPE_CONFIG_OUTPUTS = {
    "vertex_project",
    "vertex_location",
    "pipeline_root",
    "service_account",
    "bigquery_project",
    "bigquery_location",
    "image_repository",
    "template_repository",
    "serving_service_account",
    "workload_identity_provider",
    "ci_service_account",
}


def _unquote(value: Any) -> Any:
    """python-hcl2 >= 5 keeps the quotes of string literals and block labels; older ones do not."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _normalise(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            _unquote(k): _normalise(v)
            for k, v in node.items()
            if k not in ("__is_block__", "__comments__", "__inline_comments__")
        }
    if isinstance(node, list):
        return [_normalise(v) for v in node]
    return _unquote(node)


def load_tf(path: Path) -> dict[str, Any]:
    """Parses one .tf file into python-hcl2's dict form, independent of the python-hcl2 version."""
    with path.open(encoding="utf-8") as handle:
        return _normalise(hcl2.load(handle))


def load_dir(directory: Path) -> dict[str, list[Any]]:
    """Merges the top-level blocks of every .tf file of a directory."""
    merged: dict[str, list[Any]] = {}
    for path in sorted(directory.glob("*.tf")):
        for block_type, blocks in load_tf(path).items():
            merged.setdefault(block_type, []).extend(blocks)
    return merged


def named_blocks(directory: Path, block_type: str) -> dict[str, dict[str, Any]]:
    """Returns {name: body} of the labelled blocks of one type (variable, output, module)."""
    result: dict[str, dict[str, Any]] = {}
    for block in load_dir(directory).get(block_type, []):
        for name, body in block.items():
            result[name] = body
    return result


def is_version_range(constraint: str) -> bool:
    """True for a bounded range: both a lower (>=) and an upper (<) bound, or a pessimistic ~>."""
    parts = [p.strip() for p in constraint.split(",")]
    if any(p.startswith("~>") for p in parts):
        return True
    has_lower = any(
        p.startswith(">=") or (p.startswith(">") and not p.startswith(">=")) for p in parts
    )
    has_upper = any(p.startswith("<") for p in parts)
    return has_lower and has_upper


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT))


@pytest.mark.parametrize("path", TF_FILES, ids=_rel)
def test_tf_file_parses(path: Path) -> None:
    parsed = load_tf(path)
    assert parsed, f"{_rel(path)} parsed to nothing"


def test_expected_modules_exist() -> None:
    assert {p.name for p in MODULE_DIRS} == EXPECTED_MODULES


@pytest.mark.parametrize("module_dir", MODULE_DIRS, ids=lambda p: p.name)
def test_module_has_standard_files(module_dir: Path) -> None:
    missing = [name for name in MODULE_FILES if not (module_dir / name).is_file()]
    assert not missing, f"{_rel(module_dir)} lacks {missing}"


@pytest.mark.parametrize("module_dir", MODULE_DIRS, ids=lambda p: p.name)
def test_module_readme_documents_every_input_and_output(module_dir: Path) -> None:
    readme = (module_dir / "README.md").read_text(encoding="utf-8")
    assert "## Inputs" in readme and "## Outputs" in readme
    names = list(named_blocks(module_dir, "variable")) + list(named_blocks(module_dir, "output"))
    undocumented = [n for n in names if f"| `{n}` |" not in readme]
    assert not undocumented, f"{_rel(module_dir)}/README.md misses table rows for {undocumented}"


@pytest.mark.parametrize("tf_dir", TF_DIRS, ids=_rel)
def test_every_variable_has_type_and_description(tf_dir: Path) -> None:
    variables = named_blocks(tf_dir, "variable")
    bad = [
        name
        for name, body in variables.items()
        if "type" not in body or not str(body.get("description", "")).strip()
    ]
    assert not bad, f"variables without type or description in {_rel(tf_dir)}: {bad}"


@pytest.mark.parametrize("tf_dir", TF_DIRS, ids=_rel)
def test_every_output_has_description(tf_dir: Path) -> None:
    outputs = named_blocks(tf_dir, "output")
    assert outputs, f"{_rel(tf_dir)} declares no output"
    bad = [name for name, body in outputs.items() if not str(body.get("description", "")).strip()]
    assert not bad, f"outputs without description in {_rel(tf_dir)}: {bad}"


@pytest.mark.parametrize("tf_dir", TF_DIRS, ids=_rel)
def test_versions_are_ranges(tf_dir: Path) -> None:
    terraform_blocks = load_tf(tf_dir / "versions.tf").get("terraform", [])
    assert terraform_blocks, f"{_rel(tf_dir)}/versions.tf has no terraform block"
    for block in terraform_blocks:
        required_version = block.get("required_version")
        assert required_version and is_version_range(required_version), (
            f"{_rel(tf_dir)}: required_version {required_version!r} is not a range"
        )
        providers = [p for group in block.get("required_providers", []) for p in group.items()]
        assert providers, f"{_rel(tf_dir)}: no required_providers"
        for name, spec in providers:
            assert "source" in spec, f"{_rel(tf_dir)}: provider {name} has no source"
            version = spec.get("version", "")
            assert is_version_range(version), (
                f"{_rel(tf_dir)}: provider {name} version {version!r} is not a range"
            )


@pytest.mark.parametrize("constraint", [">= 5.30, < 7.0", "~> 5.0", ">= 1.5.0, < 2.0.0"])
def test_is_version_range_accepts(constraint: str) -> None:
    assert is_version_range(constraint)


@pytest.mark.parametrize("constraint", ["5.30.0", ">= 5.0", "< 7.0", ""])
def test_is_version_range_rejects(constraint: str) -> None:
    assert not is_version_range(constraint)


@pytest.mark.parametrize("env_dir", ENV_DIRS, ids=lambda p: p.name)
def test_env_exposes_voltpipe_config_outputs(env_dir: Path) -> None:
    missing = VOLTPIPE_CONFIG_OUTPUTS - set(named_blocks(env_dir, "output"))
    assert not missing, f"{_rel(env_dir)} does not output {sorted(missing)}"


@pytest.mark.parametrize("env_dir", ENV_DIRS, ids=lambda p: p.name)
def test_env_composes_every_module_from_local_sources(env_dir: Path) -> None:
    modules = named_blocks(env_dir, "module")
    used = set()
    for name, body in modules.items():
        source = body["source"]
        target = (env_dir / source).resolve()
        assert target.is_dir(), f"{_rel(env_dir)}: module {name} source {source} does not exist"
        used.add(target.name)
    assert used == EXPECTED_MODULES


@pytest.mark.parametrize("env_dir", ENV_DIRS, ids=lambda p: p.name)
def test_env_has_tfvars_example_and_gcs_backend(env_dir: Path) -> None:
    assert (env_dir / "terraform.tfvars.example").is_file()
    backends = [
        b for t in load_tf(env_dir / "versions.tf")["terraform"] for b in t.get("backend", [])
    ]
    assert any("gcs" in b for b in backends), f"{_rel(env_dir)} has no gcs backend block"


def test_no_service_account_keys_anywhere() -> None:
    # Keyless by design: CI uses Workload Identity Federation.
    offenders = [
        _rel(p) for p in TF_FILES if "google_service_account_key" in p.read_text(encoding="utf-8")
    ]
    assert not offenders, f"service account keys declared in {offenders}"


def test_checkov_skips_give_a_reason() -> None:
    pattern = re.compile(r"checkov:skip=([A-Z0-9_]+)(?::(.*))?")
    bad = []
    for path in TF_FILES:
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            match = pattern.search(line)
            if match and len((match.group(2) or "").strip()) < 20:
                bad.append(f"{_rel(path)}:{lineno} {match.group(1)}")
    assert not bad, f"checkov skips without a real reason: {bad}"


@pytest.mark.slow
def test_checkov_reports_no_failed_checks(infra_tool: Callable[[str], str]) -> None:
    checkov = infra_tool("checkov")
    proc = subprocess.run(
        [
            checkov,
            "-d",
            str(TERRAFORM_DIR),
            "--framework",
            "terraform",
            "--compact",
            "--skip-download",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=600,
        check=False,
    )
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(
            f"checkov printed no JSON (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
    reports = report if isinstance(report, list) else [report]
    failed = [
        f"{check['check_id']} {check['resource']} ({check['file_path']})"
        for r in reports
        for check in r.get("results", {}).get("failed_checks", [])
    ]
    summary = [r.get("summary", {}) for r in reports]
    assert sum(s.get("failed", 0) for s in summary) == 0 and not failed, (
        "checkov failed checks:\n" + "\n".join(failed)
    )
    assert sum(s.get("parsing_errors", 0) for s in summary) == 0, (
        f"checkov parsing errors: {summary}"
    )
    assert sum(s.get("passed", 0) for s in summary) > 0, f"checkov checked nothing: {summary}"
