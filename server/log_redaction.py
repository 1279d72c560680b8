"""Secrets that travel in URLs stay out of the logs.

An invite link is a bearer credential: ``/login?invite=<token>`` signs a stranger up, and
``/api/v1/auth/invites/<token>/accept`` carries the same token in its path. Access logs are read by
more people than the database (log shippers, support tickets), so both access logs, ours
(``pal.access``) and uvicorn's (``uvicorn.access``, the default without ``PAL_LOG_JSON``), write
these values masked.
"""

from __future__ import annotations

import logging
import re

MASK = "***"
_PATH_TOKEN = re.compile(r"(/auth/invites/)[^/?#]+")
_QUERY_TOKEN = re.compile(r"([?&](?:invite|token)=)[^&#]*", re.IGNORECASE)


def mask_url(path: str) -> str:
    """``path`` (with or without its query string) with invite tokens replaced by ``***``."""
    return _QUERY_TOKEN.sub(rf"\g<1>{MASK}", _PATH_TOKEN.sub(rf"\g<1>{MASK}", path))


class AccessLogRedactor(logging.Filter):
    """Masks the request path of uvicorn's access log records; its arguments are (client, method,
    path with query, HTTP version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], mask_url(args[2]), *args[3:])
        return True


def install_access_log_redaction() -> None:
    """Idempotent: one filter on uvicorn's access logger, however often the app is created."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, AccessLogRedactor) for f in access.filters):
        access.addFilter(AccessLogRedactor())
