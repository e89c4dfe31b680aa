"""The cloud identities CI gets are narrow: WIF refs are pinned and CI cannot act as the runner."""

from __future__ import annotations

from pathlib import Path

import hcl2
import pytest

ROOT = Path(__file__).resolve().parents[2] / "terraform"


def _blocks(path: Path, kind: str) -> dict[str, dict]:
    doc = hcl2.loads(path.read_text())
    out = {}
    for block in doc.get(kind, []):
        for name, body in block.items():
            out[name.strip('"')] = body
    return out


def _unquote(value: object) -> object:
    if isinstance(value, str):
        return value.strip('"')
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    return value


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_workload_identity_accepts_named_refs_only_by_default(env: str) -> None:
    refs = _unquote(
        _blocks(ROOT / "envs" / env / "variables.tf", "variable")["github_allowed_refs"]["default"]
    )
    assert refs and all(r.startswith(("refs/heads/", "refs/tags/")) for r in refs)
    assert not any(r.startswith("refs/pull/") for r in refs)


def test_ci_may_act_as_the_runner_only_when_asked() -> None:
    module = ROOT / "modules" / "service-accounts"
    variable = _blocks(module / "variables.tf", "variable")["ci_can_act_as_runner"]
    assert _unquote(variable["default"]) is False
    resources = hcl2.loads((module / "main.tf").read_text())["resource"]
    [binding] = [
        body
        for block in resources
        for kind, named in block.items()
        if kind.strip('"') == "google_service_account_iam_member"
        for name, body in named.items()
        if name.strip('"') == "ci_act_as_runner"
    ]
    assert "var.ci_can_act_as_runner" in str(binding["count"])
