"""Project settings over real HTTP: values are taken as their JSON type, never coerced."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.orm import Session

from tests.conftest import LiveServer
from tests.support import make_user


@pytest.mark.parametrize("change", [
    {"paused": "yes"}, {"paused": 1}, {"budget_cap": True}, {"n_candidates": "8"}, {"n_candidates": 8.5},
    {"redundancy": "2"}, {"gold_rate": "0.1"},
])
def test_project_settings_refuse_loose_values(live_server: LiveServer, db: Session, change: dict[str, object]) -> None:
    """"yes" is not true, true is not 1, "8" is not 8: refused (422) and the project left as it was."""
    admin = make_user(db, "admin")
    with live_server.client(admin.token) as client:
        pid = client.post("/api/v1/projects", json={"name": f"strict-{uuid.uuid4().hex[:8]}"}).json()["id"]
        resp = client.patch(f"/api/v1/projects/{pid}", json=change)
        created = client.post("/api/v1/projects", json={"name": f"strict-{uuid.uuid4().hex[:8]}", **change})
        after = client.get(f"/api/v1/projects/{pid}").json()
    assert resp.status_code == 422, resp.text
    assert created.status_code == 422, created.text  # paused is no create setting: refused as unknown
    assert after["paused"] is False and after["budget_cap"] == 1000 and after["n_candidates"] == 8


def test_project_settings_take_well_typed_values(live_server: LiveServer, db: Session) -> None:
    admin = make_user(db, "admin")
    with live_server.client(admin.token) as client:
        body = {"name": f"strict-{uuid.uuid4().hex[:8]}", "gold_rate": 0}
        pid = client.post("/api/v1/projects", json=body).json()["id"]
        resp = client.patch(f"/api/v1/projects/{pid}", json={"paused": True, "budget_cap": 5, "gold_rate": 1})
    assert resp.status_code == 200, resp.text
    assert (resp.json()["paused"], resp.json()["budget_cap"], resp.json()["gold_rate"]) == (True, 5, 1.0)
