"""Removing credentials from text before it is logged, shown, stored or sent."""

from __future__ import annotations

import re

# scheme://user:password@host -> scheme://***@host (also user-only and token-only forms)
_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<userinfo>[^\s/@'\"]+)@")
# ?token=..., &key=..., &sig=... in URLs; Authorization headers; bearer tokens
_SECRET_QUERY = re.compile(
    r"(?P<key>[?&](?:[a-z_\-]*(?:token|key|secret|password|passwd|pwd|sig|signature|auth)"
    r"[a-z_\-]*))=(?P<value>[^&\s'\"]+)",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?P<key>\b(?:bearer|basic|token)\s+)[A-Za-z0-9._~+/=\-]{8,}", re.IGNORECASE)
# Chat webhooks carry their secret in the path (Slack, Google Chat, Teams, Discord).
_WEBHOOK_PATH = re.compile(
    r"(?P<base>https?://(?:hooks\.slack\.com|chat\.googleapis\.com|discord(?:app)?\.com|"
    r"[a-z0-9\-]+\.webhook\.office\.com|outlook\.office\.com)/)[^\s'\"]+",
    re.IGNORECASE,
)

MASK = "***"


def redact(text: str) -> str:
    """`text` with URL credentials, secret query values, bearer tokens and chat webhook paths
    replaced by ``***``."""
    if not text:
        return text
    text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    text = _SECRET_QUERY.sub(lambda m: f"{m['key']}={MASK}", text)
    text = _BEARER.sub(lambda m: f"{m['key']}{MASK}", text)
    return _WEBHOOK_PATH.sub(lambda m: f"{m['base']}{MASK}", text)


def redact_url(url: str) -> str:
    """A URL safe to show: scheme, host and path kept, credentials and query secrets masked;
    a chat webhook's secret path is masked too."""
    return redact(url)
