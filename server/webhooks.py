"""Delivering the webhook outbox: signed POSTs, retries with exponential backoff.

Every server process runs one worker thread (``PAL_WEBHOOK_WORKER``). A worker takes due events
with a short lease (``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING`` on
PostgreSQL; SQLite's BEGIN IMMEDIATE serialises the same statement), POSTs each one, then marks it
delivered or schedules the next attempt. Two workers never hold the same event, so a receiver gets
each event once; should a process die between a 2xx and the mark, the event goes out again after
the lease with the same ``X-PAL-Event-Id``, which receivers use as an idempotency key. A receiver
that is down gets every event later: attempts back off from ``PAL_WEBHOOK_BACKOFF_SECONDS``,
doubling up to ``PAL_WEBHOOK_BACKOFF_MAX_SECONDS``, and stop after ``PAL_WEBHOOK_MAX_ATTEMPTS``
(status ``failed``; the row stays for inspection).

Request: ``POST <webhook_url>``, body = the stored JSON (``id``, ``type``, ``project_id``,
``created_at``, ``data``), headers ``X-PAL-Event``, ``X-PAL-Event-Id``, ``Idempotency-Key`` and
``X-PAL-Signature: sha256=<hex HMAC-SHA256 of the raw body keyed with PAL_SECRET_KEY>``.

The worker's client connects only to addresses ``server/webhook_guard.py`` accepts (no internal
address unless ``PAL_WEBHOOK_ALLOW_NETWORKS`` lists it), with no redirects and no proxy; log lines
carry the URL without its credentials or query.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import random
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.orm import Session

from pal import __version__
from server.config import Settings, get_settings
from server.observability import WEBHOOK_DELIVERIES
from server.services import outbox
from server.timeutil import utcnow
from server.webhook_guard import guarded_client, redact

log = logging.getLogger("pal.webhooks")

SIGNATURE_HEADER = "X-PAL-Signature"
EVENT_HEADER = "X-PAL-Event"
EVENT_ID_HEADER = "X-PAL-Event-Id"


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str) -> bool:
    """What a receiver runs on the raw body before trusting it."""
    return hmac.compare_digest(signature(secret, body), header.strip())


def backoff_seconds(attempts: int, settings: Settings, rng: random.Random | None = None) -> float:
    """Delay after the ``attempts``-th failed try: base * 2**(attempts-1), capped, with +-20 % jitter
    so that events failed together do not retry in lockstep."""
    delay = min(settings.webhook_backoff_seconds * 2 ** max(attempts - 1, 0), settings.webhook_backoff_max_seconds)
    return delay * (0.8 + 0.4 * (rng or random).random())


@dataclass(frozen=True)
class DueEvent:
    id: int
    event_id: str
    type: str
    url: str
    body: str
    attempts: int


_CLAIM = """
UPDATE webhook_events SET lease_until = :lease_until, attempts = attempts + 1
 WHERE id IN (
    SELECT id FROM webhook_events
     WHERE status = 'pending' AND next_attempt_at <= :now AND (lease_until IS NULL OR lease_until < :now)
     ORDER BY id
     LIMIT :limit
     {lock}
 )
RETURNING id, event_id, type, url, body, attempts
"""


def claim_due(db: Session, *, limit: int, lease_seconds: float) -> list[DueEvent]:
    now = utcnow()
    lock = "FOR UPDATE SKIP LOCKED" if db.get_bind().dialect.name == "postgresql" else ""
    rows = db.execute(
        sa.text(_CLAIM.replace("{lock}", lock)),
        {"now": now, "lease_until": now + timedelta(seconds=lease_seconds), "limit": limit},
    ).all()
    db.commit()
    return sorted((DueEvent(*r) for r in rows), key=lambda e: e.id)


def _finish(db: Session, event: DueEvent, *, ok: bool, status: int | None, error: str | None,
            settings: Settings) -> None:
    now = utcnow()
    values: dict[str, object] = {"lease_until": None, "last_status": status, "last_error": error}
    if ok:
        values.update(status="delivered", delivered_at=now, last_error=None)
    elif event.attempts >= settings.webhook_max_attempts:
        values.update(status="failed")
    else:
        values.update(next_attempt_at=now + timedelta(seconds=backoff_seconds(event.attempts, settings)))
    db.execute(sa.update(outbox_table()).where(outbox_table().c.id == event.id).values(**values))
    db.commit()


def outbox_table() -> sa.Table:
    from server import models

    return models.WebhookEvent.__table__  # type: ignore[return-value]


def deliver(client: httpx.Client, event: DueEvent, secret: str) -> tuple[bool, int | None, str | None]:
    body = event.body.encode()
    headers = {
        "Content-Type": "application/json", "User-Agent": f"PAL-webhooks/{__version__}",
        EVENT_HEADER: event.type, EVENT_ID_HEADER: event.event_id, "Idempotency-Key": event.event_id,
        SIGNATURE_HEADER: signature(secret, body),
    }
    try:
        response = client.post(event.url, content=body, headers=headers)
    except httpx.HTTPError as exc:  # a refused internal address arrives here as a ConnectError
        return False, None, f"{type(exc).__name__}: {exc}"[:1000]
    if 200 <= response.status_code < 300:
        return True, response.status_code, None
    return False, response.status_code, f"HTTP {response.status_code}: {response.text[:500]}"


def deliver_due(db: Session, client: httpx.Client, settings: Settings, *, limit: int = 20) -> int:
    """One pass: deliver what is due; returns how many events were tried."""
    events = claim_due(db, limit=limit, lease_seconds=settings.webhook_timeout_seconds * 2 + 30)
    for event in events:
        ok, status, error = deliver(client, event, settings.secret_key)
        WEBHOOK_DELIVERIES.labels("delivered" if ok else "failed").inc()
        if not ok:
            log.warning("webhook %s (%s) attempt %d failed: %s", event.event_id, event.type, event.attempts, error,
                        extra={"event_id": event.event_id, "url": redact(event.url), "attempt": event.attempts})
        _finish(db, event, ok=ok, status=status, error=error, settings=settings)
    return len(events)


class WebhookWorker:
    """A daemon thread: deliver due events, check the trainer lag now and then, sleep until woken
    (an event committed in this process) or ``PAL_WEBHOOK_POLL_SECONDS`` pass."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pal-webhooks", daemon=True)
        self._lag_every = max(settings.webhook_poll_seconds * 5, 1.0)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        outbox.wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        from server.db import get_sessionmaker

        next_lag_check = 0.0
        with guarded_client(self.settings.webhook_networks, self.settings.webhook_timeout_seconds) as client:
            while not self._stop.is_set():
                outbox.wake.clear()
                try:
                    with get_sessionmaker()() as db:
                        if time.monotonic() >= next_lag_check:
                            outbox.check_trainer_lag(db, limit=self.settings.trainer_lag_alert_edges)
                            next_lag_check = time.monotonic() + self._lag_every
                        while deliver_due(db, client, self.settings) and not self._stop.is_set():
                            pass
                except Exception:  # the database may be restarting: log, wait, try again
                    log.exception("webhook worker pass failed")
                outbox.wake.wait(self.settings.webhook_poll_seconds)


@contextlib.asynccontextmanager
async def webhook_lifespan(_app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    worker = WebhookWorker(settings) if settings.webhook_worker else None
    if worker is not None:
        worker.start()
    try:
        yield
    finally:
        if worker is not None:
            worker.stop()
