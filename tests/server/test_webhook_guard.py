"""Webhooks never reach the server's own network unless the operator allows it: internal
addresses in every spelling are refused when a URL is saved and again when an event is delivered
(after DNS resolution); logs carry no credentials; open /metrics shows no per-project deliveries."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from server import models
from server.config import Settings
from server.migrate import upgrade
from server.services import outbox
from server.webhook_guard import guarded_client, parse_networks, redact, refusal
from server.webhooks import DueEvent, deliver, deliver_due
from tests.conftest import LiveServer, _drop_pg_database, fresh_database_url
from tests.server.test_webhooks import Receiver
from tests.support import make_project, make_user

INTERNAL = [
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[::ffff:169.254.169.254]/",
    "http://2130706433:8301/",
    "http://0x7f.1/",
    "http://0177.0.0.1/",
    "http://127.1/",
    "http://0/",
    "http://0.0.0.0:5432/",
    "http://localhost:5432/",
    "http://LOCALHOST./",
    "http://api.localhost/",
    "http://[::1]/",
    "http://[::]/",
    "http://10.1.2.3/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://[fe80::1]/",
    "http://[fd00::1]/",
    "http://224.0.0.1/",
    "http://[ff02::1]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[2002:a9fe:a9fe::]/",
    "http://user:pw@127.0.0.1/",
]


@pytest.mark.parametrize("url", INTERNAL)
def test_internal_addresses_are_refused_in_every_spelling(url: str) -> None:
    assert refusal(url, (), lookup=False) is not None


@pytest.mark.parametrize("url", ["http://93.184.215.14/hook", "https://[2606:4700::1111]/x",
                                 "https://hooks.example.com/pal"])
def test_public_addresses_and_names_are_accepted(url: str) -> None:
    assert refusal(url, (), lookup=False) is None


def test_allowed_networks_open_only_themselves() -> None:
    allow = parse_networks("127.0.0.1, 10.0.0.0/8")
    assert refusal("http://127.0.0.1:9/hook", allow) is None
    assert refusal("http://localhost:9/hook", allow) is None
    assert refusal("http://10.9.9.9/", allow) is None
    assert refusal("http://127.0.0.2/", allow) is not None
    assert refusal("http://169.254.169.254/", allow) is not None
    with pytest.raises(ValueError, match="not-a-net"):
        parse_networks("not-a-net")
    with pytest.raises(ValueError):
        Settings(webhook_allow_networks="10.0.0.0/33")


def test_a_name_resolving_to_loopback_is_refused_when_saved() -> None:
    assert refusal("http://localhost.:9/", (), lookup=True) is not None
    assert refusal("http://ip6-localhost:9/", ()) is not None


def test_saving_an_internal_webhook_url_is_refused_and_stores_nothing(live_server: LiveServer, db: Session) -> None:
    admin = make_user(db, "admin")
    pid = make_project(db, n_items=0)
    name = f"hook-{uuid.uuid4().hex[:8]}"
    with live_server.client(admin.token) as client:
        patched = client.patch(f"/api/v1/projects/{pid}", json={"webhook_url": "http://2130706433:5432/",
                                                                "budget_cap": 7})
        created = client.post("/api/v1/projects", json={"name": name, "webhook_url": "http://[::ffff:a9fe:a9fe]/"})
        fine = client.patch(f"/api/v1/projects/{pid}", json={"webhook_url": "https://93.184.215.14/hook"})
    for resp in (patched, created):
        assert resp.status_code == 422, resp.text
        assert resp.json()["error"]["fields"][0]["field"] == "webhook_url"
    assert fine.status_code == 200
    db.expire_all()
    assert db.get(models.Project, pid).budget_cap != 7  # type: ignore[union-attr]
    assert db.scalar(sa.select(sa.func.count()).select_from(models.Project).where(models.Project.name == name)) == 0


def _event(url: str) -> DueEvent:
    return DueEvent(id=1, event_id="e1", type="test", url=url, body="{}", attempts=1)


def test_delivery_to_loopback_is_refused_after_resolution() -> None:
    receiver = Receiver()
    with guarded_client((), timeout=5) as client:
        for url in (receiver.url, f"http://localhost:{receiver.port}/hook"):
            ok, status, error = deliver(client, _event(url), "s")
            assert not ok and status is None and error is not None and "refused" in error, error
    with guarded_client(parse_networks("127.0.0.1,::1"), timeout=5) as allowed:
        ok, status, _error = deliver(allowed, _event(receiver.url), "s")
    assert ok and status == 200
    assert len(receiver.calls) == 1  # the refused attempts never reached it


def test_delivery_log_lines_carry_no_credentials(tmp_path: Path, backend: str,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    assert redact("https://bob:s3cret@hooks.example.com:8443/p?token=abc") == "https://hooks.example.com:8443/p?…"
    url, name = fresh_database_url(backend, tmp_path)
    upgrade(url)
    engine = sa.create_engine(url)
    try:
        with sessionmaker(bind=engine, expire_on_commit=False)() as db:
            pid = make_project(db, n_items=0)
            outbox.enqueue(db, project_id=pid, url="http://bob:s3cret@127.0.0.1:9/hook?token=abc", type="test",
                           dedup_key="creds", data={})
            db.commit()
            with caplog.at_level(logging.WARNING, logger="pal.webhooks"), guarded_client((), 2) as client:
                assert deliver_due(db, client, Settings(webhook_max_attempts=5)) == 1
    finally:
        engine.dispose()
        if name:
            _drop_pg_database(name)
    logged = " ".join(f"{r.getMessage()} {getattr(r, 'url', '')}" for r in caplog.records)
    assert "127.0.0.1:9/hook" in logged and "s3cret" not in logged and "abc" not in logged


def test_open_metrics_show_no_per_project_webhook_outcomes(live_server: LiveServer, db: Session) -> None:
    pid = make_project(db, n_items=0)
    outbox.enqueue(db, project_id=pid, url="https://93.184.215.14/hook", type="test",
                   dedup_key=f"metrics:{pid}", data={})
    db.execute(sa.update(models.WebhookEvent).where(models.WebhookEvent.dedup_key == f"metrics:{pid}")
               .values(status="failed"))
    db.commit()
    with live_server.client() as client:
        lines = [line for line in client.get("/metrics").text.splitlines() if line.startswith("pal_webhook_events{")]
    assert lines and all('project="all"' in line for line in lines), lines

