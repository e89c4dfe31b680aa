"""Checks of images/Dockerfile: hadolint, multi-stage layout, non-root runtime, KFP-compatible entrypoint."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "images" / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"


def parse_instructions(text: str) -> list[tuple[str, str]]:
    """Splits a Dockerfile into (INSTRUCTION, arguments), joining continuation lines, dropping comments."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            keyword, _, args = full.partition(" ")
            instructions.append((keyword.upper(), args.strip()))
    return instructions


def stages(instructions: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """Groups instructions by build stage (each starts with FROM)."""
    result: list[list[tuple[str, str]]] = []
    for keyword, args in instructions:
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, args))
    return result


INSTRUCTIONS = parse_instructions(DOCKERFILE.read_text(encoding="utf-8"))
STAGES = stages(INSTRUCTIONS)
FINAL = STAGES[-1]


def test_hadolint_passes(infra_tool: Callable[[str], str]) -> None:
    hadolint = infra_tool("hadolint")
    proc = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"hadolint findings:\n{proc.stdout}{proc.stderr}"


def test_hadolint_ignores_have_a_reason() -> None:
    lines = DOCKERFILE.read_text(encoding="utf-8").splitlines()
    bad = []
    for index, line in enumerate(lines):
        if "hadolint ignore=" in line:
            previous = lines[index - 1].strip() if index else ""
            # The reason is the comment line just above the ignore.
            if not previous.startswith("#") or "hadolint" in previous:
                bad.append(index + 1)
    assert not bad, f"hadolint ignores without a reason comment above them, lines {bad}"


def test_parser_joins_continuations_and_skips_comments() -> None:
    parsed = parse_instructions("FROM a AS b\n# note\nRUN x \\\n    && y\nUSER 1\n")
    assert parsed == [("FROM", "a AS b"), ("RUN", "x && y"), ("USER", "1")]


def test_multi_stage_build_from_python_311_slim_pinned_by_digest() -> None:
    froms = [args for stage in STAGES for keyword, args in stage if keyword == "FROM"]
    assert len(froms) >= 2, "expected a builder and a runtime stage"
    for args in froms:
        image = args.split()[0]
        # Pinned by digest: a tag can be re-pushed with other content, a digest cannot.
        assert re.fullmatch(r"python:3\.11[\w.-]*-slim[\w.-]*@sha256:[0-9a-f]{64}", image), image
        assert not image.endswith(":latest")


def test_builder_builds_a_wheel_into_opt_venv() -> None:
    builder_runs = " ".join(args for keyword, args in STAGES[0] if keyword == "RUN")
    assert "venv /opt/venv" in builder_runs
    assert "pip wheel" in builder_runs


LOCK = REPO_ROOT / "images" / "requirements.lock"
PIN = re.compile(r"^([a-z0-9._-]+)==(\S+) \\\n    --hash=sha256:([0-9a-f]{64})$", re.M)


def _locked() -> dict[str, str]:
    text = LOCK.read_text(encoding="utf-8")
    pins = {name: version for name, version, _ in PIN.findall(text)}
    entries = [ln for ln in text.splitlines() if ln and not ln.startswith(("#", " "))]
    assert len(pins) == len(entries), "a lock entry without exactly one sha256 hash"
    return pins


def test_dependencies_install_only_against_the_hashes_of_the_lock() -> None:
    builder_runs = [args for keyword, args in STAGES[0] if keyword == "RUN"]
    locked = [r for r in builder_runs if "-r /tmp/requirements.lock" in r]
    assert len(locked) == 1 and "--require-hashes" in locked[0], builder_runs
    # Everything else pip installs or builds is voltpipe itself, offline, without dependencies.
    for run in builder_runs:
        if run is locked[0] or "pip" not in run:
            continue
        for command in run.split("&&"):
            if command.strip().startswith(("pip install", "pip wheel")):
                assert "--no-deps" in command and "--no-index" in command, command
    copies = [args for keyword, args in STAGES[0] if keyword == "COPY"]
    assert copies[0] == "images/requirements.lock /tmp/requirements.lock"


def test_the_lock_satisfies_install_requires_and_the_build_system() -> None:
    import configparser
    import tomllib

    from packaging.requirements import Requirement

    cfg = configparser.ConfigParser()
    cfg.read(REPO_ROOT / "setup.cfg", encoding="utf-8")
    wanted = [ln.strip() for ln in cfg["options"]["install_requires"].splitlines() if ln.strip()]
    build = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    wanted += build["build-system"]["requires"]
    pins = _locked()
    for line in wanted:
        req = Requirement(line)
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        assert name in pins, f"{line}: not in images/requirements.lock (run `make lock`)"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{line}: the lock pins {name}=={pins[name]} (run `make lock`)"
        )


def test_final_stage_copies_only_the_venv() -> None:
    copies = [args for keyword, args in FINAL if keyword in ("COPY", "ADD")]
    assert copies, "runtime stage copies nothing"
    for args in copies:
        assert args.startswith("--from=builder /opt/venv /opt/venv"), (
            f"unexpected copy into runtime: {args}"
        )


def test_final_stage_runs_as_non_root_user() -> None:
    users = [args for keyword, args in FINAL if keyword == "USER"]
    assert users, "runtime stage has no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"runtime user is {users[-1]}"
    assert user == "10001"


def test_no_entrypoint_so_kfp_commands_run_unchanged() -> None:
    # KFP puts `python3 -m kfp.dsl.executor_main ...` in the container command; an
    # ENTRYPOINT would receive it as arguments instead of running it.
    assert not [args for keyword, args in INSTRUCTIONS if keyword == "ENTRYPOINT"]


def test_default_command_serves_on_vertex_port() -> None:
    cmds = [args for keyword, args in FINAL if keyword == "CMD"]
    assert cmds and "voltpipe.serving" in cmds[-1]
    assert any(keyword == "EXPOSE" and "8080" in args for keyword, args in FINAL)


def test_runtime_environment() -> None:
    env = " ".join(args for keyword, args in FINAL if keyword == "ENV")
    assert "PATH=/opt/venv/bin:$PATH" in env
    assert "PYTHONUNBUFFERED=1" in env


def test_no_build_tools_in_runtime_stage() -> None:
    runs = " ".join(args for keyword, args in FINAL if keyword == "RUN")
    for tool in ("apt-get install", "build-essential", "gcc", "pip install", "pip wheel"):
        assert tool not in runs, f"runtime stage runs {tool!r}"


@pytest.mark.parametrize(
    "pattern", [".git", ".venv", ".voltpipe", "tests", "**/__pycache__", "**/*.tfstate"]
)
def test_dockerignore_excludes(pattern: str) -> None:
    entries = {
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    }
    assert pattern in entries


def test_dockerignore_keeps_package_build_inputs() -> None:
    entries = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    for needed in (
        "setup.cfg",
        "pyproject.toml",
        "README.md",
        "voltpipe",
        "components",
        "pipelines",
    ):
        assert needed not in entries, f".dockerignore drops {needed}, which `pip wheel .` needs"
