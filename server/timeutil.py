from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; PAL stores UTC everywhere."""
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
