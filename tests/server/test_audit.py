"""``pal audit``: a clean run passes; each kind of corruption fails with a message that says what.

The run is real: annotators claim and answer over HTTP (redundancy 2, a retried answer, an undo,
an abandoned claim), a client log of acknowledged answers is kept as the load generator keeps it,
and the edge feed is consumed into a feed log as the stand-in trainer does. Each corruption then
touches a project of its own in a scratch database (one test drops a constraint)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from pal.wire import START_CURSOR
from server import models
from server.audit import main as audit_main
from server.audit import run_audit
from tests.conftest import (
    BACKENDS,
    LiveServer,
    _drop_pg_database,
    fresh_database_url,
    start_server,
    stop_server,
)
from tests.support import make_project, make_user


@dataclass
class Scratch:
    url: str
    backend: str
    server: LiveServer
    engine: sa.Engine


@pytest.fixture(scope="module", params=BACKENDS)
def scratch(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            pg_ready: bool) -> Iterator[Scratch]:
    if request.param == "postgres" and not pg_ready:
        pytest.skip("PostgreSQL not reachable: PostgreSQL half skipped")
    from server.migrate import upgrade

    url, name = fresh_database_url(request.param, tmp_path_factory.mktemp("auditdb"))
    upgrade(url)
    server = start_server(url, tmp_path_factory.mktemp("auditserver") / "server.log")
    engine = sa.create_engine(url)
    yield Scratch(url, request.param, server, engine)
    engine.dispose()
    stop_server(server)
    if name:
        _drop_pg_database(name)


@dataclass
class Run:
    project_id: int
    client_log: Path
    feed_log: Path


def _post(client: httpx.Client, url: str, body: dict[str, object] | None = None) -> httpx.Response:
    resp = client.post(url, json=body)
    assert resp.status_code in (200, 201), resp.text
    return resp


@pytest.fixture
def run(scratch: Scratch, tmp_path: Path) -> Run:
    """A small finished run in a project of its own, with its client log and feed log."""
    with sessionmaker(bind=scratch.engine, expire_on_commit=False)() as db:
        annotators = [make_user(db, "annotator") for _ in range(3)]
        trainer = make_user(db, "trainer")
        pid = make_project(db, n_items=30, members=annotators, redundancy=2, n_candidates=4, budget_cap=6)
    client_log, feed_log = tmp_path / "answers.jsonl", tmp_path / "feed.jsonl"
    with client_log.open("w") as log:
        for n, who in enumerate(annotators * 5):
            with scratch.server.client(who.token) as client:
                task = _post(client, f"/api/v1/projects/{pid}/tasks/claim").json()["task"]
                if task is None:
                    continue
                if n == 4:
                    continue  # abandoned: the lease is left to expire
                body = {"idempotency_key": uuid.uuid4().hex, "lease_token": task["lease_token"],
                        "outlier_ids": task["candidates"][: n % 3]}
                acks = [_post(client, f"/api/v1/tasks/{task['id']}/answers", body).json()]
                if n == 2:
                    acks.append(_post(client, f"/api/v1/tasks/{task['id']}/answers", body).json())  # a retry
                for ack in acks:
                    log.write(json.dumps({"answer_id": ack["id"], "task_id": task["id"], "user_id": who.id,
                                          "key": body["idempotency_key"], "edges": ack["edges"]}) + "\n")
                if n == 5:
                    undone = client.delete(f"/api/v1/answers/{acks[0]['id']}")
                    assert undone.status_code == 200, undone.text
                    log.write(json.dumps({"undo": acks[0]["id"]}) + "\n")
                    again = undone.json()["task"]
                    ack = _post(client, f"/api/v1/tasks/{again['id']}/answers", {
                        "idempotency_key": uuid.uuid4().hex, "lease_token": again["lease_token"],
                        "outlier_ids": []}).json()
                    log.write(json.dumps({"answer_id": ack["id"], "task_id": again["id"], "user_id": who.id,
                                          "key": "after-undo", "edges": ack["edges"]}) + "\n")
    _consume_feed(scratch.server, trainer.token, pid, feed_log)
    return Run(pid, client_log, feed_log)


def _consume_feed(server: LiveServer, token: str, pid: int, log: Path) -> None:
    cursor = START_CURSOR
    with server.client(token) as client, log.open("w") as out:
        while True:
            page = client.get(f"/api/v1/projects/{pid}/edges", params={"cursor": cursor, "limit": 7}).json()
            if page["edges"]:
                out.write(json.dumps({"cursor": page["next_cursor"], "ids": [e["id"] for e in page["edges"]]}) + "\n")
            cursor = page["next_cursor"]
            if not page["has_more"]:
                return


def _audit(scratch: Scratch, run: Run) -> list[str]:
    report = run_audit(database_url=scratch.url, project=str(run.project_id), client_log=run.client_log,
                       trainer_log=run.feed_log)
    return report.violations


def _execute(scratch: Scratch, sql: str, **params: object) -> None:
    with scratch.engine.begin() as conn:
        conn.execute(sa.text(sql), params)


def test_audit_passes_on_a_clean_run(scratch: Scratch, run: Run) -> None:
    report = run_audit(database_url=scratch.url, project=str(run.project_id), client_log=run.client_log,
                       trainer_log=run.feed_log)
    assert report.violations == []
    assert set(report.checks) == {"budget", "redundancy", "duplicates", "answer edges", "client log", "edge feed"}
    assert all(text.startswith("ok") for text in report.checks.values()), report.checks


def test_audit_command_exits_zero_on_a_clean_run(scratch: Scratch, run: Run,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code = audit_main(["--database-url", scratch.url, "--project", str(run.project_id),
                       "--client-log", str(run.client_log), "--trainer-log", str(run.feed_log)])
    assert code == 0
    assert "all checks passed" in capsys.readouterr().out


def test_audit_fails_on_a_duplicate_edge(scratch: Scratch, run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    if scratch.backend != "postgres":
        pytest.skip("SQLite cannot drop the unique constraint that keeps this from happening")
    _execute(scratch, "ALTER TABLE edges DROP CONSTRAINT IF EXISTS uq_edges_answer_pair")
    _execute(scratch, """INSERT INTO edges (project_id, src, dst, sign, weight, kind, answer_id, annotator_id,
                                            created_at)
                         SELECT project_id, src, dst, sign, weight, kind, answer_id, annotator_id, created_at
                           FROM edges WHERE project_id = :p AND kind = 'answer' ORDER BY id LIMIT 1""",
             p=run.project_id)
    code = audit_main(["--database-url", scratch.url, "--project", str(run.project_id),
                       "--client-log", str(run.client_log)])
    out = capsys.readouterr().out
    assert code == 1
    assert "VIOLATION duplicates: 1 edges stored twice" in out
    assert "VIOLATION client log:" in out  # and the edges no longer add up to the acknowledged answers


def test_audit_fails_when_the_budget_was_bumped(scratch: Scratch, run: Run) -> None:
    _execute(scratch, "UPDATE projects SET budget_cap = budget_cap + 5, budget_spent = budget_spent + 1"
                      " WHERE id = :p", p=run.project_id)
    violations = _audit(scratch, run)
    assert len(violations) == 1
    assert violations[0].startswith("budget: budget_spent is ")
    assert "tasks were issued (each task is charged once)" in violations[0]


def test_audit_fails_on_an_edge_that_no_answer_asserted(scratch: Scratch, run: Run) -> None:
    _execute(scratch, """INSERT INTO edges (project_id, src, dst, sign, weight, kind, annotator_id, created_at)
                         SELECT project_id, dst, src, sign, weight, kind, annotator_id, created_at
                           FROM edges WHERE project_id = :p AND kind = 'answer' ORDER BY id LIMIT 1""",
             p=run.project_id)
    violations = _audit(scratch, run)
    assert any(v.startswith("answer edges: 1 answer edge(s) without a stored answer") for v in violations)
    assert any(v.startswith("client log: ") and "acknowledged answers sum to" in v for v in violations)


def test_audit_fails_on_a_lost_acknowledged_answer(scratch: Scratch, run: Run) -> None:
    with scratch.engine.begin() as conn:
        answer = conn.execute(sa.text("SELECT max(id) FROM answers WHERE project_id = :p AND undone_at IS NULL"),
                              {"p": run.project_id}).scalar()
        conn.execute(sa.text("DELETE FROM edges WHERE answer_id = :a"), {"a": answer})
        conn.execute(sa.text("UPDATE assignments SET status = 'leased' WHERE id = (SELECT assignment_id FROM answers"
                             " WHERE id = :a)"), {"a": answer})
        conn.execute(sa.text("UPDATE tasks SET answers_count = answers_count - 1 WHERE id = (SELECT task_id FROM"
                             " answers WHERE id = :a)"), {"a": answer})
        conn.execute(sa.text("DELETE FROM answers WHERE id = :a"), {"a": answer})
    violations = _audit(scratch, run)
    assert f"client log: 1 acknowledged answer(s) not stored (lost): {answer}" in violations


def test_audit_fails_on_a_task_answered_beyond_its_redundancy(scratch: Scratch, run: Run) -> None:
    with scratch.engine.begin() as conn:
        task = conn.execute(sa.text("SELECT task_id FROM answers WHERE project_id = :p AND undone_at IS NULL"
                                    " GROUP BY task_id HAVING count(*) = 2 LIMIT 1"), {"p": run.project_id}).scalar()
        conn.execute(sa.text("UPDATE tasks SET redundancy = 1 WHERE id = :t"), {"t": task})
    violations = _audit(scratch, run)
    assert any(v.startswith("redundancy: 1 task(s) answered beyond redundancy") and f"task {task}:" in v
               for v in violations)


def test_audit_fails_when_the_feed_consumer_skipped_an_edge(scratch: Scratch, run: Run) -> None:
    pages = [json.loads(line) for line in run.feed_log.read_text().splitlines()]
    skipped = pages[0]["ids"].pop(0)
    run.feed_log.write_text("".join(json.dumps(p) + "\n" for p in pages))
    violations = _audit(scratch, run)
    assert any(v.startswith("edge feed: 1 edge(s) below the final cursor") and str(skipped) in v for v in violations)


def test_audit_reads_the_trainers_cursor_without_a_feed_log(scratch: Scratch, run: Run) -> None:
    pages = [json.loads(line) for line in run.feed_log.read_text().splitlines()]
    consumed = sum(len(p["ids"]) for p in pages)
    for seen, ok in ((consumed, True), (consumed - 1, False)):
        with scratch.engine.begin() as conn:
            conn.execute(sa.delete(models.EmbeddingVersion).where(models.EmbeddingVersion.project_id == run.project_id))
            conn.execute(sa.insert(models.EmbeddingVersion).values(
                project_id=run.project_id, version=1, dim=1, n_items=0, item_ids=b"", vectors=b"",
                metrics={"cursor": pages[-1]["cursor"], "edges_seen": seen}, answers_at_upload=0))
        report = run_audit(database_url=scratch.url, project=str(run.project_id))
        assert report.ok is ok, report.violations
        assert report.checks["edge feed"].startswith("ok" if ok else "FAILED")
