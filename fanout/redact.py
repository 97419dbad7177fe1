"""Keep credentials out of every line fanout writes."""
from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_URL_IN_TEXT = re.compile(r"\b(rediss?|unix|redis\+sentinel)://[^\s'\"<>]+")


def redact_url(url: str | None) -> str:
    """``redis://user:secret@host:6379/0`` -> ``redis://user:***@host:6379/0``.

    Query parameters named like secrets (password, token) are masked too.
    """
    if not url:
        return str(url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    netloc = parts.netloc
    if "@" in netloc:
        creds, host = netloc.rsplit("@", 1)
        if ":" in creds:
            user = creds.split(":", 1)[0]
            creds = f"{user}:***"
        else:
            # redis://secret@host: a bare password in the user slot
            creds = "***"
        netloc = f"{creds}@{host}"
    query = re.sub(r"(?i)((?:password|passwd|pwd|token|secret)=)[^&]*", r"\1***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Redact every Redis URL found inside a free-form string."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
