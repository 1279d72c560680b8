"""Test helpers: seeding users, projects and items straight into the database."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass

import httpx
import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

PG_ADMIN_URL = os.environ.get("PAL_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def pg_available() -> bool:
    try:
        engine = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


@dataclass
class Actor:
    id: int
    email: str
    role: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


PASSWORD = "correct horse battery"


def make_user(db: Session, role: str, *, password: str | None = PASSWORD) -> Actor:
    from server.admin import ensure_user
    from server.services.users import create_token

    email = f"{role}-{uuid.uuid4().hex[:10]}@test.example"
    user = ensure_user(db, email=email, role=role, password=password)
    token = create_token(db, user_id=user.id, name="test").token
    return Actor(id=user.id, email=email, role=role, token=token)


def synthetic_images(n: int, *, classes: int = 4, size: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Distinct uint8 images whose class shows in their pixels (so embeddings can learn it)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    images = rng.integers(0, 60, size=(n, size, size), dtype=np.uint8)
    for c in range(classes):
        rows = labels == c
        images[rows, (c * size) // classes:((c + 1) * size) // classes, :] += 150
    images[:, 0, 0] = np.arange(n) % 256  # keep every image unique
    images[:, 0, 1] = np.arange(n) // 256
    return images, labels


def make_project(db: Session, *, n_items: int = 40, members: list[Actor] | None = None, **settings: object) -> int:
    from server import models
    from server.admin import ensure_project
    from server.schemas import ProjectCreate
    from server.services import imports

    body = {"name": f"p-{uuid.uuid4().hex[:10]}", "oracle": "random", **settings}
    project = ensure_project(db, ProjectCreate(**body))  # type: ignore[arg-type]
    if n_items:
        images, labels = synthetic_images(n_items)
        sources = [
            imports.Source(name=f"img{i}", load=(lambda i=i: imports.decode_array(images[i])),
                           label=str(labels[i]), split="test" if i % 5 == 0 else "train")
            for i in range(n_items)
        ]
        imports.import_sources(db, project_id=project.id, sources=sources)
    for actor in members or []:
        db.add(models.ProjectMember(project_id=project.id, user_id=actor.id))
    db.commit()
    return project.id


def item_labels(db: Session, project_id: int) -> dict[int, str]:
    from server import models

    rows = db.execute(sa.select(models.Item.id, models.Item.label).where(models.Item.project_id == project_id))
    return {int(i): str(lab) for i, lab in rows}


def wait_for_feed(client: httpx.Client, pid: int, n_edges: int, timeout: float = 20.0) -> None:
    """Wait until the edge feed delivers ``n_edges``. The server's knowledge graph reads the same feed,
    whose PostgreSQL watermark holds back edges while any older transaction in the cluster is still
    open (another test run sharing the server, say); clusters are computed from what it delivered."""
    deadline = time.monotonic() + timeout
    while True:
        seen, cursor = 0, "0:0"
        while True:
            page = client.get(f"/api/v1/projects/{pid}/edges", params={"cursor": cursor}).json()
            seen += len(page["edges"])
            cursor = page["next_cursor"]
            if not page["has_more"]:
                break
        if seen >= n_edges or time.monotonic() > deadline:
            assert seen >= n_edges, f"the edge feed delivered {seen} of {n_edges} edges"
            return
        time.sleep(0.2)
