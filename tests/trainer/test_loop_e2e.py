"""The trainer against a real server process: answers in, embedding versions out, exact resume."""

from __future__ import annotations

import uuid
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server import models
from tests.conftest import LiveServer
from tests.support import item_labels, make_project, make_user
from trainer.config import TrainConfig
from trainer.loop import run


def _answer_truthfully(live_server: LiveServer, token: str, pid: int, labels: dict[int, str], tasks: int) -> None:
    with live_server.client(token) as client:
        for _ in range(tasks):
            task = client.post(f"/api/v1/projects/{pid}/tasks/claim").json()["task"]
            outliers = [c for c in task["candidates"] if labels[c] != labels[task["reference"]]]
            body = {
                "idempotency_key": uuid.uuid4().hex,
                "lease_token": task["lease_token"],
                "outlier_ids": outliers,
            }
            resp = client.post(f"/api/v1/tasks/{task['id']}/answers", json=body)
            assert resp.status_code == 201, resp.text
        # Undo the last answer: the feed then carries retract rows too.
        assert client.delete(f"/api/v1/answers/{resp.json()['id']}").status_code == 200


def _config(server: str, token: str, pid: int, tmp_path: Path, max_steps: int) -> TrainConfig:
    return TrainConfig(
        server=server,
        token=token,
        project=pid,
        checkpoint=str(tmp_path / "ckpt.pt"),
        batch_size=8,
        proj_dim=16,
        publish_every=2,
        max_steps=max_steps,
        device="cpu",
        embed_batch_size=64,
        warmup_steps=1,
    )


def test_loop_e2e_trains_publishes_and_resumes(live_server: LiveServer, db: Session, tmp_path: Path) -> None:
    trainer, annotator = make_user(db, "trainer"), make_user(db, "annotator")
    pid = make_project(db, n_items=40, members=[annotator])
    _answer_truthfully(live_server, annotator.token, pid, item_labels(db, pid), tasks=3)
    n_rows = db.scalar(sa.select(sa.func.count()).select_from(models.Edge).where(models.Edge.project_id == pid))

    first = run(_config(live_server.url, trainer.token, pid, tmp_path, max_steps=2))
    second = run(_config(live_server.url, trainer.token, pid, tmp_path, max_steps=4))

    assert first.edges_consumed == second.edges_consumed == n_rows
    assert (first.step, second.step) == (2, 4)
    with live_server.client(trainer.token) as client:
        versions = client.get(f"/api/v1/projects/{pid}/embeddings").json()
    assert [v["version"] for v in versions] == [1, 2]
    assert {"loss", "invariance", "variance", "covariance"} <= set(versions[-1]["metrics"])
    # The server scores each upload against the hidden labels, and tells only admins.
    assert "knn_accuracy" not in second.versions[-1]["metrics"]

    # A head on the server's current embedding (version 2) as frozen features: it reads the
    # vectors and ids over HTTP, trains and publishes version 3 at the head's width.
    head = _config(live_server.url, trainer.token, pid, tmp_path / "head", max_steps=2)
    head.backbone, head.head_dim, head.features_cache = "features", 24, str(tmp_path / "features")
    third = run(head)
    assert third.versions[-1]["version"] == 3 and third.versions[-1]["dim"] == 24
