"""User-facing errors: one clear message naming the culprit, no traceback by default."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

# A component prints this prefix before its one-line message so that a runner reading the
# task's log (kfp.local here, Cloud Logging on Vertex) can report the message, not a traceback.
ERROR_MARKER = "voltpipe error: "


class VoltpipeError(Exception):
    """An error caused by the user's input (config, data, query), with a readable message."""


class ConfigError(VoltpipeError, ValueError):
    """The configuration is invalid: names the key and what would be valid."""


class DataError(VoltpipeError):
    """The data or the query is unusable: names the table, column or parameter."""


class PipelineError(VoltpipeError):
    """A pipeline run failed; the message is the failing step's own message."""


@contextlib.contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Turns a VoltpipeError into one marked line on stderr and exit code 1.

    Used in component bodies: the step fails with the message a person needs, while any other
    exception (a bug) keeps its traceback.
    """
    try:
        yield
    except VoltpipeError as exc:
        message = " ".join(str(exc).split("\n"))
        print(f"{ERROR_MARKER}{message}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
