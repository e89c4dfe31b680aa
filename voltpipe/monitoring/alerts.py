"""Alerts: a Slack-compatible webhook post and a structured log line for Cloud Logging alerting."""

from __future__ import annotations

import json
import logging
import sys
import urllib.error
import urllib.request
from typing import Any

__all__ = ["format_message", "notify", "slack_payload", "structured_log_line"]

logger = logging.getLogger(__name__)

_TITLES = {
    "drift_detected": "Drift detected",
    "no_drift": "No drift",
    "pipeline_failed": "Pipeline failed",
}
_MAX_LISTED = 20  # features named in a message; the rest are counted


def format_message(event: str, summary: dict[str, Any]) -> str:
    """One human sentence for an event: what happened and, for drift, which features."""
    title = _TITLES.get(event, event.replace("_", " ").capitalize())
    name = summary.get("pipeline") or summary.get("name")
    parts = [f"voltpipe{f' {name}' if name else ''}: {title}"]
    drifted = list(summary.get("drifted_features") or [])
    if drifted:
        listed = ", ".join(drifted[:_MAX_LISTED])
        more = f" and {len(drifted) - _MAX_LISTED} more" if len(drifted) > _MAX_LISTED else ""
        parts.append(f"in {len(drifted)} feature(s): {listed}{more}")
    if summary.get("prediction_drift"):
        parts.append("(predictions drifted too)" if drifted else "in the model's predictions")
    if summary.get("error"):
        parts.append(f"— {summary['error']}")
    return " ".join(parts)


def slack_payload(event: str, summary: dict[str, Any]) -> dict[str, Any]:
    """The JSON body of a Slack incoming-webhook message (``text`` plus Block Kit ``blocks``).

    Other chat tools that accept Slack-compatible webhooks read ``text`` alone.
    """
    text = format_message(event, summary)
    fields = [
        {"type": "mrkdwn", "text": f"*{k}*\n{_short(v)}"}
        for k, v in summary.items()
        if v is not None and k != "drifted_features"
    ][:10]  # Slack allows at most 10 fields in a section
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    if fields:
        blocks.append({"type": "section", "fields": fields})
    blocks.append(
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"event: `{event}`"}]}
    )
    return {"text": text, "blocks": blocks}


def _short(value: Any) -> str:
    s = value if isinstance(value, str) else json.dumps(value, default=str)
    return s if len(s) <= 200 else s[:197] + "..."


def _redacted(value: Any) -> Any:
    """`value` with credentials removed from every string in it (URLs, tokens, webhooks)."""
    from voltpipe.tracking.redact import redact

    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v) for v in value]
    return value


def resolve_webhook(reference: str | None, environ: dict[str, str] | None = None) -> str | None:
    """The webhook URL a config names: ``env:NAME`` reads environment variable NAME where the
    alert is sent (so the secret never travels as a pipeline parameter, an argument or a
    compiled template); a plain URL is used as is."""
    import os

    if not reference:
        return None
    if reference.startswith("env:"):
        name = reference[4:]
        value = (os.environ if environ is None else environ).get(name, "").strip()
        if not value:
            logger.warning("alert webhook: environment variable %s is not set", name)
        return value or None
    return reference


def notify(
    webhook_url: str | None, *, event: str, summary: dict[str, Any], timeout: float = 5
) -> bool:
    """Posts an event to a Slack-compatible webhook; never raises on a network failure.

    Args:
        webhook_url: The incoming-webhook URL, or ``env:NAME`` (see `resolve_webhook`);
            ``None`` or empty sends nothing. Credentials in `summary` are redacted first.
        event: The event name, e.g. ``drift_detected``.
        summary: JSON-safe facts of the event (e.g. ``DriftResult.summary()``).
        timeout: Seconds to wait for the webhook.

    Returns:
        True when the webhook answered with a 2xx status, False otherwise (not configured,
        unreachable, refused); a failure is logged as one warning line.
    """
    from voltpipe.tracking.redact import redact

    webhook_url = resolve_webhook(webhook_url)
    if not webhook_url:
        return False
    if not webhook_url.lower().startswith(("https://", "http://")):
        logger.warning(
            "alert webhook unreachable for event %s: %r is not an http(s) URL",
            event,
            redact(webhook_url),
        )
        return False
    body = json.dumps(slack_payload(event, _redacted(summary)), default=str).encode()
    try:
        request = urllib.request.Request(
            webhook_url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "voltpipe-alerts"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            ok = 200 <= response.status < 300
            if not ok:
                logger.warning(
                    "alert webhook answered HTTP %s for event %s", response.status, event
                )
            return ok
    except urllib.error.HTTPError as exc:
        logger.warning("alert webhook answered HTTP %s for event %s", exc.code, event)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        # ValueError: a malformed URL; the alert is lost, the pipeline goes on.
        reason = getattr(exc, "reason", exc)
        logger.warning("alert webhook unreachable for event %s: %s", event, redact(str(reason)))
    return False


def structured_log_line(event: str, summary: dict[str, Any], *, severity: str | None = None) -> str:
    """One JSON line that Cloud Logging parses as a structured entry, and prints it.

    A log-based alert matches ``jsonPayload.voltpipe_event="drift_detected"``. The severity is
    WARNING for drift and failures, INFO otherwise, unless given.

    Returns:
        The line (without the newline).
    """
    if severity is None:
        severity = "INFO" if event in ("no_drift",) else "WARNING"
    entry = {
        "severity": severity,
        "message": format_message(event, summary),
        "voltpipe_event": event,
    }
    summary = _redacted(summary)
    entry["message"] = format_message(event, summary)
    entry.update({k: v for k, v in summary.items() if k not in entry})
    line = json.dumps(entry, default=str, sort_keys=False)
    print(line, file=sys.stdout, flush=True)
    return line
