"""The account lifecycle over HTTP: disable and enable, end sessions, change passwords, list,
revoke and expire tokens. Every change takes effect at the caller's next request."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from server import models
from server.timeutil import utcnow
from tests.conftest import LiveServer
from tests.support import PASSWORD, Actor, make_user

NEW_PASSWORD = "another long phrase"


@contextmanager
def signed_in(server: LiveServer, email: str, password: str = PASSWORD) -> Iterator[httpx.Client]:
    """A cookie session, as a browser holds it (CSRF header set)."""
    with server.client() as client:
        resp = client.post("/api/v1/auth/login", json={"email": email, "password": password})
        assert resp.status_code == 200, resp.text
        client.headers["X-CSRF-Token"] = resp.json()["csrf_token"]
        yield client


def me(client: httpx.Client) -> int:
    return client.get("/api/v1/auth/me").status_code


def field_of(resp: httpx.Response) -> str:
    return str(resp.json()["error"]["fields"][0]["field"])


def test_disabled_user_is_refused_at_once_and_enabling_restores_tokens(live_server: LiveServer, db: Session) -> None:
    admin, user = make_user(db, "admin"), make_user(db, "annotator")
    with live_server.client(admin.token) as adm, live_server.client(user.token) as bearer, \
            signed_in(live_server, user.email) as browser:
        assert me(bearer) == 200 and me(browser) == 200
        off = adm.patch(f"/api/v1/users/{user.id}", json={"is_active": False})
        assert off.status_code == 200 and off.json()["is_active"] is False and off.json()["sessions"] == 0
        assert me(bearer) == 401 and me(browser) == 401
        login = live_server.client().post("/api/v1/auth/login", json={"email": user.email, "password": PASSWORD})
        assert login.status_code == 401
        on = adm.patch(f"/api/v1/users/{user.id}", json={"is_active": True})
        assert on.status_code == 200 and on.json()["is_active"] is True
        assert me(bearer) == 200  # tokens are suspended, not revoked
        assert me(browser) == 401  # the sessions ended for good


def test_ending_sessions_signs_the_user_out_everywhere(live_server: LiveServer, db: Session) -> None:
    admin, user = make_user(db, "admin"), make_user(db, "annotator")
    with live_server.client(admin.token) as adm, signed_in(live_server, user.email) as one, \
            signed_in(live_server, user.email) as two:
        assert adm.get(f"/api/v1/users/{user.id}").json()["sessions"] == 2
        resp = adm.delete(f"/api/v1/users/{user.id}/sessions")
        assert resp.status_code == 200 and resp.json() == {"ended": 2}
        assert me(one) == 401 and me(two) == 401
        assert adm.delete("/api/v1/users/999999/sessions").status_code == 404


def test_changing_ones_password_ends_the_other_sessions(live_server: LiveServer, db: Session) -> None:
    user = make_user(db, "annotator")
    with signed_in(live_server, user.email) as here, signed_in(live_server, user.email) as elsewhere:
        resp = here.post("/api/v1/auth/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD})
        assert resp.status_code == 204, resp.text
        assert me(here) == 200 and me(elsewhere) == 401
    with live_server.client() as anon:
        old = anon.post("/api/v1/auth/login", json={"email": user.email, "password": PASSWORD})
        new = anon.post("/api/v1/auth/login", json={"email": user.email, "password": NEW_PASSWORD})
    assert old.status_code == 401 and new.status_code == 200


def test_password_change_with_a_wrong_current_password_changes_nothing(live_server: LiveServer, db: Session) -> None:
    user = make_user(db, "annotator")
    with signed_in(live_server, user.email) as here, signed_in(live_server, user.email) as elsewhere:
        wrong = here.post("/api/v1/auth/password", json={"current_password": "not it at all",
                                                          "new_password": NEW_PASSWORD})
        weak = here.post("/api/v1/auth/password", json={"current_password": PASSWORD, "new_password": "password"})
        assert (wrong.status_code, field_of(wrong)) == (401, "current_password")
        assert (weak.status_code, field_of(weak)) == (422, "new_password")
        assert me(elsewhere) == 200


def test_admin_setting_a_password_ends_all_the_users_sessions(live_server: LiveServer, db: Session) -> None:
    admin, user = make_user(db, "admin"), make_user(db, "annotator")
    with live_server.client(admin.token) as adm, signed_in(live_server, user.email) as browser:
        resp = adm.patch(f"/api/v1/users/{user.id}", json={"password": NEW_PASSWORD})
        assert resp.status_code == 200 and resp.json()["sessions"] == 0
        assert me(browser) == 401


def test_a_refused_user_change_stores_nothing(live_server: LiveServer, db: Session) -> None:
    admin, user = make_user(db, "admin"), make_user(db, "annotator")
    with live_server.client(admin.token) as adm, signed_in(live_server, user.email) as browser:
        weak = adm.patch(f"/api/v1/users/{user.id}", json={"is_active": False, "name": "x", "password": "password"})
        loose = adm.patch(f"/api/v1/users/{user.id}", json={"is_active": "no"})
        role = adm.patch(f"/api/v1/users/{user.id}", json={"role": "owner"})
        unknown = adm.patch("/api/v1/users/999999", json={"is_active": False})
        assert (weak.status_code, field_of(weak)) == (422, "password")
        assert (loose.status_code, field_of(loose)) == (422, "is_active")
        assert (role.status_code, field_of(role)) == (422, "role")
        assert (unknown.status_code, field_of(unknown)) == (404, "user_id")
        assert me(browser) == 200
    db.expire_all()
    stored = db.get(models.User, user.id)
    assert stored is not None and stored.is_active and stored.name == ""


def test_admins_cannot_disable_or_demote_themselves(live_server: LiveServer, db: Session) -> None:
    admin = make_user(db, "admin")
    with live_server.client(admin.token) as adm:
        off = adm.patch(f"/api/v1/users/{admin.id}", json={"is_active": False})
        down = adm.patch(f"/api/v1/users/{admin.id}", json={"role": "annotator"})
        assert (off.status_code, field_of(off)) == (409, "is_active")
        assert (down.status_code, field_of(down)) == (409, "role")
        assert me(adm) == 200


def test_tokens_are_listed_and_revoked(live_server: LiveServer, db: Session) -> None:
    admin, trainer = make_user(db, "admin"), make_user(db, "trainer")
    with live_server.client(admin.token) as adm:
        issued = adm.post(f"/api/v1/users/{trainer.id}/tokens", json={"name": "gpu-box"}).json()
        listed = adm.get(f"/api/v1/users/{trainer.id}/tokens").json()
        assert [t["name"] for t in listed] == ["test", "gpu-box"] and all("token" not in t for t in listed)
        with live_server.client(issued["token"]) as bearer:
            assert me(bearer) == 200
            assert adm.delete(f"/api/v1/tokens/{issued['id']}").status_code == 204
            assert me(bearer) == 401
        again = adm.get(f"/api/v1/users/{trainer.id}/tokens").json()
        assert [t["revoked_at"] is not None for t in again] == [False, True]
        missing = adm.delete("/api/v1/tokens/999999")
        assert (missing.status_code, field_of(missing)) == (404, "token_id")
        assert adm.get("/api/v1/users/999999/tokens").status_code == 404


def test_token_with_expiry_stops_working_when_it_expires(live_server: LiveServer, db: Session) -> None:
    admin, trainer = make_user(db, "admin"), make_user(db, "trainer")
    with live_server.client(admin.token) as adm:
        issued = adm.post(f"/api/v1/users/{trainer.id}/tokens", json={"name": "ci", "expires_days": 7}).json()
        for bad in (0, -1, "7", 4000, True):
            resp = adm.post(f"/api/v1/users/{trainer.id}/tokens", json={"expires_days": bad})
            assert (resp.status_code, field_of(resp)) == (422, "expires_days"), bad
    assert issued["expires_at"] is not None
    with live_server.client(issued["token"]) as bearer:
        assert me(bearer) == 200
        db.execute(sa.update(models.ApiToken).where(models.ApiToken.id == issued["id"])
                   .values(expires_at=utcnow() - timedelta(seconds=1)))
        db.commit()
        expired = bearer.get("/api/v1/auth/me")
    assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]
    assert db.scalar(sa.select(sa.func.count()).select_from(models.ApiToken)
                     .where(models.ApiToken.user_id == trainer.id)) == 2  # refused bodies stored nothing


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/api/v1/users", None),
    ("GET", "/api/v1/users/{uid}", None),
    ("PATCH", "/api/v1/users/{uid}", {"is_active": False}),
    ("DELETE", "/api/v1/users/{uid}/sessions", None),
    ("GET", "/api/v1/users/{uid}/tokens", None),
    ("POST", "/api/v1/users/{uid}/tokens", {}),
])
def test_account_routes_are_admin_only(live_server: LiveServer, db: Session, method: str, path: str,
                                       body: dict[str, object] | None) -> None:
    victim = make_user(db, "annotator")
    for role in ("annotator", "trainer"):
        actor: Actor = make_user(db, role)
        with live_server.client(actor.token) as client:
            resp = client.request(method, path.format(uid=victim.id), json=body)
        assert resp.status_code == 403, (role, resp.text)
    db.expire_all()
    assert db.get(models.User, victim.id).is_active  # type: ignore[union-attr]


def test_cookie_admin_changes_need_the_csrf_header(live_server: LiveServer, db: Session) -> None:
    admin, user = make_user(db, "admin"), make_user(db, "annotator")
    with signed_in(live_server, admin.email) as browser:
        csrf = browser.headers.pop("X-CSRF-Token")
        refused = browser.patch(f"/api/v1/users/{user.id}", json={"is_active": False})
        ended = browser.delete(f"/api/v1/users/{user.id}/sessions")
        assert refused.status_code == 403 and ended.status_code == 403
        browser.headers["X-CSRF-Token"] = csrf
        assert browser.patch(f"/api/v1/users/{user.id}", json={"is_active": False}).status_code == 200


def test_guessing_the_current_password_is_throttled(live_server: LiveServer, db: Session) -> None:
    user = make_user(db, "annotator")
    with signed_in(live_server, user.email) as browser:
        codes = [browser.post("/api/v1/auth/password", json={"current_password": f"guess number {n}",
                                                            "new_password": NEW_PASSWORD}).status_code
                 for n in range(11)]
        right = browser.post("/api/v1/auth/password", json={"current_password": PASSWORD,
                                                            "new_password": NEW_PASSWORD})
    assert codes == [401] * 10 + [429] and right.status_code == 429
