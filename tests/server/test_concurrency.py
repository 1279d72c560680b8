"""The concurrency rules of the design, with real concurrent clients over HTTP."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import sqlalchemy as sa
from sqlalchemy.orm import Session

from server import models
from tests.conftest import LiveServer
from tests.support import Actor, make_project, make_user


def _post(client: httpx.Client, url: str, **kw: object) -> httpx.Response:
    """A client that backs off on 503, as the web page and the simulator do."""
    for _ in range(50):
        resp = client.post(url, **kw)  # type: ignore[arg-type]
        if resp.status_code != 503:
            return resp
        time.sleep(0.05)
    return resp


def _annotate_until_exhausted(server: LiveServer, actor: Actor, pid: int, acked: list[tuple[int, dict, list[int]]],
                              lock: threading.Lock) -> None:
    with server.client(actor.token) as client:
        while True:
            body = _post(client, f"/api/v1/projects/{pid}/tasks/claim").json()
            task = body["task"]
            if task is None:
                assert body["reason"] == "budget_exhausted", body
                return
            outliers = task["candidates"][: (task["id"] % 4)]
            resp = _post(client, f"/api/v1/tasks/{task['id']}/answers", json={
                "idempotency_key": uuid.uuid4().hex, "lease_token": task["lease_token"], "outlier_ids": outliers,
            })
            assert resp.status_code == 201, resp.text
            with lock:
                acked.append((resp.json()["id"], task, outliers))


def test_concurrent_claims_charge_exactly_the_budget(live_server: LiveServer, db: Session, backend: str) -> None:
    n_clients, cap = (32, 1500) if backend == "postgres" else (8, 200)
    annotators = [make_user(db, "annotator") for _ in range(n_clients)]
    pid = make_project(db, n_items=300, members=annotators, budget_cap=cap, redundancy=2, n_candidates=4)
    acked: list[tuple[int, dict, list[int]]] = []
    lock = threading.Lock()
    with ThreadPoolExecutor(n_clients) as pool:
        futures = [pool.submit(_annotate_until_exhausted, live_server, a, pid, acked, lock) for a in annotators]
        for f in futures:
            f.result()

    assert db.scalar(sa.select(models.Project.budget_spent).where(models.Project.id == pid)) == cap
    assert db.scalar(sa.select(sa.func.count()).select_from(models.Task).where(models.Task.project_id == pid)) == cap
    # Every slot of every charged task was answered once, by two different annotators.
    assert len(acked) == 2 * cap
    per_task = db.execute(
        sa.select(models.Answer.task_id, sa.func.count(), sa.func.count(sa.distinct(models.Answer.annotator_id)))
        .where(models.Answer.project_id == pid).group_by(models.Answer.task_id)
    ).all()
    assert all(n == 2 and distinct == 2 for _, n, distinct in per_task)
    duplicates = db.execute(
        sa.select(models.Edge.answer_id, models.Edge.src, models.Edge.dst).where(models.Edge.project_id == pid)
        .group_by(models.Edge.answer_id, models.Edge.src, models.Edge.dst).having(sa.func.count() > 1)
    ).all()
    assert duplicates == []
    stored = {
        (a, s, d, sign) for a, s, d, sign in db.execute(
            sa.select(models.Edge.answer_id, models.Edge.src, models.Edge.dst, models.Edge.sign)
            .where(models.Edge.project_id == pid)
        )
    }
    expected = {
        (answer_id, task["reference"], c, -1 if c in outliers else 1)
        for answer_id, task, outliers in acked for c in task["candidates"]
    }
    assert stored == expected


def test_concurrent_retries_of_one_answer_store_it_once(live_server: LiveServer, db: Session) -> None:
    annotator = make_user(db, "annotator")
    pid = make_project(db, members=[annotator])
    key = uuid.uuid4().hex
    with live_server.client(annotator.token) as client:
        task = client.post(f"/api/v1/projects/{pid}/tasks/claim").json()["task"]
    body = {"idempotency_key": key, "lease_token": task["lease_token"], "outlier_ids": task["candidates"][:2]}

    def send(_: int) -> tuple[int, int]:
        with live_server.client(annotator.token) as c:
            resp = _post(c, f"/api/v1/tasks/{task['id']}/answers", json=body)
            return resp.status_code, resp.json()["id"]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(send, range(8)))
    assert sorted(code for code, _ in results) == [200] * 7 + [201]
    assert len({answer_id for _, answer_id in results}) == 1
    n_edges = db.scalar(sa.select(sa.func.count()).select_from(models.Edge).where(models.Edge.project_id == pid))
    assert n_edges == len(task["candidates"])


def test_people_claiming_at_once_get_complementary_grids(live_server: LiveServer, db: Session) -> None:
    """A grid out with one annotator is in flight: the next claim asks about other items."""
    from server.services.tasks import items_in_flight

    people = [make_user(db, "annotator") for _ in range(3)]
    pid = make_project(db, n_items=60, members=people, oracle="active")
    grids = []
    for person in people:
        with live_server.client(person.token) as client:
            grids.append(_post(client, f"/api/v1/projects/{pid}/tasks/claim").json()["task"])
    shown = [{g["reference"], *g["candidates"]} for g in grids]
    assert not shown[0] & shown[1] and not shown[2] & (shown[0] | shown[1])
    assert items_in_flight(db, project_id=pid) == frozenset().union(*shown)
    with live_server.client(people[0].token) as client:
        body = {"idempotency_key": uuid.uuid4().hex, "lease_token": grids[0]["lease_token"], "outlier_ids": []}
        assert _post(client, f"/api/v1/tasks/{grids[0]['id']}/answers", json=body).status_code == 201
    db.expire_all()
    assert items_in_flight(db, project_id=pid) == frozenset(shown[1] | shown[2])
