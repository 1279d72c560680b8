"""Every route in the OpenAPI, called with each role and without auth: only the allowed roles
get past authentication and authorisation (401 without credentials, 403 with the wrong role).

Adding a route without listing it in ALLOWED makes this test fail, so the role table is
kept complete."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.orm import Session

from tests.conftest import LiveServer
from tests.support import make_project, make_user

ANY = {"anonymous", "admin", "annotator", "trainer"}
AUTHENTICATED = {"admin", "annotator", "trainer"}
ADMIN = {"admin"}
ANNOTATE = {"admin", "annotator"}
TRAIN = {"admin", "trainer"}

ALLOWED: dict[tuple[str, str], set[str]] = {
    ("GET", "/healthz"): ANY,
    ("GET", "/metrics"): ANY,
    ("POST", "/api/v1/auth/login"): ANY,
    ("POST", "/api/v1/auth/logout"): AUTHENTICATED,
    ("GET", "/api/v1/auth/me"): AUTHENTICATED,
    ("POST", "/api/v1/auth/invites/{token}/accept"): ANY,
    ("POST", "/api/v1/auth/password"): AUTHENTICATED,
    ("POST", "/api/v1/users"): ADMIN,
    ("GET", "/api/v1/users"): ADMIN,
    ("GET", "/api/v1/users/{user_id}"): ADMIN,
    ("PATCH", "/api/v1/users/{user_id}"): ADMIN,
    ("DELETE", "/api/v1/users/{user_id}/sessions"): ADMIN,
    ("POST", "/api/v1/users/{user_id}/tokens"): ADMIN,
    ("GET", "/api/v1/users/{user_id}/tokens"): ADMIN,
    ("DELETE", "/api/v1/tokens/{token_id}"): ADMIN,
    ("POST", "/api/v1/projects"): ADMIN,
    ("GET", "/api/v1/projects"): AUTHENTICATED,
    ("GET", "/api/v1/projects/{project_id}"): AUTHENTICATED,
    ("PATCH", "/api/v1/projects/{project_id}"): ADMIN,
    ("POST", "/api/v1/projects/{project_id}/invites"): ADMIN,
    ("GET", "/api/v1/projects/{project_id}/members"): ADMIN,
    ("POST", "/api/v1/projects/{project_id}/members"): ADMIN,
    ("POST", "/api/v1/projects/{project_id}/members/{user_id}"): ADMIN,
    ("DELETE", "/api/v1/projects/{project_id}/members/{user_id}"): ADMIN,
    ("POST", "/api/v1/projects/{project_id}/imports"): ADMIN,
    ("POST", "/api/v1/projects/{project_id}/imports/path"): ADMIN,
    ("GET", "/api/v1/projects/{project_id}/known-labels"): ADMIN,
    ("POST", "/api/v1/projects/{project_id}/known-labels"): ADMIN,
    ("POST", "/api/v1/projects/{project_id}/known-labels/file"): ADMIN,
    ("GET", "/api/v1/projects/{project_id}/annotators/quality"): ADMIN,
    # Sorted, exclude runs before include: the annotator is let back in before the task routes run.
    ("POST", "/api/v1/projects/{project_id}/annotators/{user_id}/exclude"): ADMIN,
    ("POST", "/api/v1/projects/{project_id}/annotators/{user_id}/include"): ADMIN,
    ("GET", "/api/v1/items/{item_id}/image"): AUTHENTICATED,
    ("GET", "/api/v1/projects/{project_id}/items"): TRAIN,
    ("GET", "/api/v1/projects/{project_id}/items/pixels"): TRAIN,
    ("POST", "/api/v1/projects/{project_id}/tasks/claim"): ANNOTATE,
    ("GET", "/api/v1/projects/{project_id}/tasks/mine"): ANNOTATE,
    ("GET", "/api/v1/projects/{project_id}/me"): ANNOTATE,
    ("POST", "/api/v1/tasks/{task_id}/lease"): ANNOTATE,
    ("POST", "/api/v1/tasks/{task_id}/answers"): ANNOTATE,
    ("DELETE", "/api/v1/answers/{answer_id}"): ANNOTATE,
    ("GET", "/api/v1/projects/{project_id}/edges"): TRAIN,
    ("POST", "/api/v1/projects/{project_id}/embeddings"): TRAIN,
    ("GET", "/api/v1/projects/{project_id}/embeddings"): TRAIN,
    ("GET", "/api/v1/projects/{project_id}/embeddings/current/vectors"): TRAIN,
    ("GET", "/api/v1/projects/{project_id}/embeddings/current/item_ids"): TRAIN,
    ("POST", "/api/v1/projects/{project_id}/embeddings/import"): ADMIN,
    ("GET", "/api/v1/projects/{project_id}/exports/edges.csv"): ADMIN,
    ("GET", "/api/v1/projects/{project_id}/exports/embeddings.npy"): ADMIN,
    ("GET", "/api/v1/projects/{project_id}/exports/embedding_index.csv"): ADMIN,
    ("GET", "/api/v1/projects/{project_id}/exports/clusters.csv"): ADMIN,
    ("GET", "/api/v1/projects/{project_id}/exports/manifest.json"): ADMIN,
    ("GET", "/api/v1/projects/{project_id}/exports/{fmt}.zip"): ADMIN,
    ("GET", "/api/v1/projects/{project_id}/exports/label-studio.json"): ADMIN,
    ("GET", "/api/v1/projects/{project_id}/exports/coco.json"): ADMIN,
    ("GET", "/api/v1/projects/{project_id}/stats"): ADMIN,
    ("GET", "/api/v1/projects/{project_id}/clusters"): ADMIN,
    ("GET", "/api/v1/projects/{project_id}/clusters/{item_id}/items"): ADMIN,
}


def _routes(server: LiveServer) -> list[tuple[str, str]]:
    with server.client() as client:
        spec = client.get("/openapi.json").json()
    return sorted((method.upper(), path) for path, ops in spec["paths"].items() for method in ops)


def test_role_table_lists_every_route(live_server: LiveServer) -> None:
    assert set(_routes(live_server)) == set(ALLOWED)


def test_every_route_admits_only_its_roles(live_server: LiveServer, db: Session) -> None:
    actors = {role: make_user(db, role) for role in ("admin", "annotator", "trainer")}
    pid = make_project(db, n_items=12, members=[actors["annotator"]])
    values = {"project_id": pid, "user_id": actors["annotator"].id, "task_id": 1, "answer_id": 1,
              "item_id": 1, "token_id": 999_999, "token": uuid.uuid4().hex, "fmt": "coco"}
    failures = []
    for method, path in _routes(live_server):
        url = path.format(**values)
        for role in ("anonymous", "admin", "annotator", "trainer"):
            token = actors[role].token if role != "anonymous" else None
            with live_server.client(token) as client:
                status = client.request(method, url, json={} if method in ("POST", "PATCH") else None).status_code
            allowed = role in ALLOWED[(method, path)]
            denied = status in (401, 403)
            if allowed == denied:
                failures.append(f"{method} {path} as {role}: {status}")
            if not allowed and status != (401 if role == "anonymous" else 403):
                failures.append(f"{method} {path} as {role}: {status}, want {401 if role == 'anonymous' else 403}")
    assert failures == []


@pytest.mark.parametrize("route", ["/api/v1/projects/{pid}/edges", "/api/v1/projects/{pid}/items"])
def test_annotator_cannot_read_trainer_feeds(live_server: LiveServer, db: Session, route: str) -> None:
    annotator = make_user(db, "annotator")
    pid = make_project(db, n_items=4, members=[annotator])
    with live_server.client(annotator.token) as client:
        assert client.get(route.format(pid=pid)).status_code == 403


def test_annotator_cannot_see_other_projects(live_server: LiveServer, db: Session) -> None:
    annotator = make_user(db, "annotator")
    mine = make_project(db, n_items=4, members=[annotator])
    other = make_project(db, n_items=4)
    with live_server.client(annotator.token) as client:
        listed = {p["id"] for p in client.get("/api/v1/projects").json()}
        assert client.get(f"/api/v1/projects/{other}").status_code == 404
        assert client.post(f"/api/v1/projects/{other}/tasks/claim").status_code == 404
    assert listed == {mine}


def test_annotator_project_view_hides_budget_and_labels(live_server: LiveServer, db: Session) -> None:
    annotator = make_user(db, "annotator")
    pid = make_project(db, n_items=4, members=[annotator])
    with live_server.client(annotator.token) as client:
        body = client.get(f"/api/v1/projects/{pid}").json()
    assert set(body) == {"id", "name", "description", "n_candidates", "paused"}
