"""Sign-in throttling shared by every server process: failed attempts are rows in the database.

Two limits in a sliding minute: failures per (client address, e-mail), so one account cannot be
guessed at, and failures per client address across every e-mail, so one client cannot spread its
guesses over many accounts (password spraying). The client address is the TCP peer unless the peer
is a configured trusted proxy (``PAL_TRUSTED_PROXIES``); a forged ``X-Forwarded-For`` from anyone
else changes nothing. Concurrent failures may overshoot a limit by the few requests in flight: the
count is a brake on guessing, not an exact quota."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server import models
from server.config import Settings
from server.timeutil import utcnow

WINDOW = timedelta(minutes=1)


def _count(db: Session, *conditions: sa.ColumnElement[bool]) -> int:
    since = utcnow() - WINDOW
    query = sa.select(sa.func.count()).select_from(models.LoginFailure).where(models.LoginFailure.at >= since,
                                                                                 *conditions)
    return int(db.scalar(query) or 0)


def blocked(db: Session, settings: Settings, *, client: str, email: str) -> bool:
    """True while the client, or the client for this e-mail, has used up its failures."""
    failure = models.LoginFailure
    if _count(db, failure.client == client) >= settings.login_attempts_per_ip_per_minute:
        return True
    return _count(db, failure.client == client, failure.email == email.lower()) >= settings.login_attempts_per_minute


def record_failure(db: Session, *, client: str, email: str) -> None:
    """Store one failure (committed at once: the request that failed is about to be refused, and a
    rollback must not forget it) and delete the rows that have left the window."""
    now = utcnow()
    db.execute(sa.delete(models.LoginFailure).where(models.LoginFailure.at < now - WINDOW))
    db.add(models.LoginFailure(client=client[:64], email=email.lower()[:320], at=now))
    db.commit()


def clear(db: Session, *, client: str, email: str) -> None:
    """After a successful sign-in, forget this pair's failures. The client's failures for other
    e-mails still count against it: signing in to one's own account does not reset the sprayer."""
    db.execute(sa.delete(models.LoginFailure).where(models.LoginFailure.client == client[:64],
                                                    models.LoginFailure.email == email.lower()[:320]))
