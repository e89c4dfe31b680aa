"""Locates the infrastructure lint tools (checkov, hadolint, check-jsonschema) for tests/infra."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA_BIN_ENV = "VOLTPIPE_INFRA_BIN"
# Where `.venv-infra/bin/pip install -r requirements/infra.txt` puts the tools.
DEFAULT_INFRA_BIN = REPO_ROOT / ".venv-infra" / "bin"


def find_infra_tool(name: str, infra_bin: str | None) -> str:
    """Returns the path of an infra tool, or fails the test saying how to install it.

    Args:
        name: Executable name, e.g. "checkov".
        infra_bin: Value of $VOLTPIPE_INFRA_BIN (a directory), or None when unset.

    Returns:
        Absolute path of the executable.
    """
    if infra_bin:
        candidate = Path(infra_bin) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
        pytest.fail(
            f"{name!r} not found in {INFRA_BIN_ENV}={infra_bin}; install the infra tools with "
            "`.venv-infra/bin/pip install -r requirements/infra.txt`"
        )
    candidate = DEFAULT_INFRA_BIN / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name!r} not found: set {INFRA_BIN_ENV} to the bin directory of the virtualenv "
            "made with `pip install -r requirements/infra.txt`, or put it on PATH"
        )
    return found


@pytest.fixture(scope="session")
def infra_tool() -> Callable[[str], str]:
    """Function mapping a tool name to its executable path (see find_infra_tool)."""
    infra_bin = os.environ.get(INFRA_BIN_ENV) or None
    return lambda name: find_infra_tool(name, infra_bin)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """Root of the voltpipe repository."""
    return REPO_ROOT
