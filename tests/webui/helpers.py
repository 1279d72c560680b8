"""What the browser tests share: reading the grid from the page, waiting for the outbox, running
axe-core, and building a project with real answers and embeddings for the dashboard."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "demo" / "fashion-mnist-demo.npz"
SCREENSHOTS = ROOT / "docs" / "screenshots"
AXE = "/static/vendor/axe-core/axe.min.js"

GRID_STATE_JS = """() => {
  const id = (img) => Number(new URL(img.src).pathname.split('/')[4]);
  const root = document.getElementById('annotate');
  return {
    seq: Number(document.body.dataset.gridSeq || 0),
    task: Number(root.dataset.taskId || 0),
    reference: document.querySelector('#reference img') ? id(document.querySelector('#reference img')) : null,
    candidates: [...document.querySelectorAll('#grid img')].map(id),
    pressed: [...document.querySelectorAll('#grid .candidate')].map(t => t.getAttribute('aria-pressed') === 'true'),
  };
}"""


def grid_state(page: Any) -> dict[str, Any]:
    state: dict[str, Any] = page.evaluate(GRID_STATE_JS)
    return state


def wait_grid(page: Any, after_seq: int = 0, timeout: float = 15_000) -> dict[str, Any]:
    """The grid shown after grid number ``after_seq`` (fully painted: the page bumps its sequence
    number after the frame that shows the decoded images)."""
    page.wait_for_function("(n) => Number(document.body.dataset.gridSeq || 0) > n", arg=after_seq, timeout=timeout)
    return grid_state(page)


def wait_outbox_empty(page: Any, timeout: float = 15_000) -> None:
    page.wait_for_function("() => !Object.keys(localStorage).some(k => k.startsWith('pal.outbox'))",
                           timeout=timeout)


def serious_axe_violations(page: Any) -> list[str]:
    """axe-core, loaded from the vendored copy on the server (same origin, so the CSP allows it)."""
    page.add_script_tag(url=AXE)
    result = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    return [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
            for v in result if v["impact"] in ("serious", "critical")]


def demo_npz(n: int, path: Path) -> Path:
    """The first ``n`` demo images (with labels and split) as a small .npz upload."""
    with np.load(DEMO, allow_pickle=False) as data:
        np.savez(path, images=data["images"][:n], labels=data["labels"][:n], split=data["split"][:n])
    return path


def session_client(base_url: str, email: str, password: str) -> httpx.Client:
    """An httpx client signed in with a browser-style cookie session (CSRF header set)."""
    client = httpx.Client(base_url=base_url, timeout=30)
    resp = client.post("/api/v1/auth/login", json={"email": email, "password": password})
    resp.raise_for_status()
    client.headers["X-CSRF-Token"] = resp.json()["csrf_token"]
    return client


def answer_truthfully(client: httpx.Client, pid: int, labels: dict[int, str], grids: int,
                      error_rate: float = 0.0, seed: int = 0) -> int:
    """Claim and answer ``grids`` grids as an annotator who knows the hidden labels (and gets each
    candidate wrong with probability ``error_rate``); returns the number of answers."""
    rng = np.random.default_rng(seed)
    done = 0
    for _ in range(grids):
        claim = client.post(f"/api/v1/projects/{pid}/tasks/claim").json()
        task = claim.get("task")
        if task is None:
            break
        ref = labels[task["reference"]]
        outliers = [c for c in task["candidates"] if (labels[c] != ref) != (rng.random() < error_rate)]
        resp = client.post(f"/api/v1/tasks/{task['id']}/answers", json={
            "idempotency_key": uuid.uuid4().hex, "lease_token": task["lease_token"], "outlier_ids": outliers,
            "seconds": 2.0 + (task["id"] % 7) * 0.6,
        })
        resp.raise_for_status()
        done += 1
    return done


def upload_pixel_embedding(client: httpx.Client, pid: int, ids: np.ndarray, images: np.ndarray, dim: int,
                           step: int) -> None:
    """Publish the top-``dim`` principal components of the raw pixels as an embedding version (the
    server measures its kNN and cluster accuracy against the hidden labels)."""
    x = images.reshape(len(images), -1).astype(np.float32) / 255.0
    x -= x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    vectors = (x @ vt[:dim].T).astype(np.float32)
    files = {"item_ids": ("ids.npy", _npy(ids.astype(np.int64))), "vectors": ("v.npy", _npy(vectors))}
    meta = json.dumps({"step": step, "edges_seen": 0, "metrics": {"loss": round(1.0 / (1 + step / 100), 4)}})
    client.post(f"/api/v1/projects/{pid}/embeddings", data={"meta": meta}, files=files).raise_for_status()


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()
