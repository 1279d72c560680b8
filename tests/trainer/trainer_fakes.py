"""An in-process stand-in for the server's trainer-facing HTTP API (httpx.MockTransport).

It implements the contract the trainer relies on (project, pixel pages, the edge feed with
an opaque cursor, embedding upload) so the client and the loop can be tested without the
real server.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from pal.wire import NEXT_AFTER_HEADER, decode_npy, encode_npy, encode_pixels, format_cursor, parse_cursor
from trainer.client import ApiClient, RetryPolicy
from trainer.config import TrainConfig

TOKEN = "test-token"


def answer(edge_id: int, src: int, dst: int, sign: int, weight: float = 1.0) -> dict[str, Any]:
    return {
        "id": edge_id,
        "src": src,
        "dst": dst,
        "sign": sign,
        "weight": weight,
        "kind": "answer",
        "retracts_id": None,
    }


def retract(edge_id: int, retracts_id: int) -> dict[str, Any]:
    return {
        "id": edge_id,
        "src": 0,
        "dst": 0,
        "sign": 0,
        "weight": 0.0,
        "kind": "retract",
        "retracts_id": retracts_id,
    }


def parse_multipart(request: httpx.Request) -> dict[str, bytes]:
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + request.content)
    return {
        part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
        for part in message.iter_parts()
    }


@dataclass
class FakeServer:
    images: np.ndarray  # (N, H, W, C) uint8
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    project: int = 1
    edges: list[dict[str, Any]] = field(default_factory=list)
    # Rows appended once this many versions were uploaded: lets a test script the feed over time.
    later_edges: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    uploads: list[dict[str, Any]] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    fail_next: list[int | Exception] = field(default_factory=list)  # status codes or errors to raise first
    # The current embedding version (ids, vectors) before any upload; an upload then replaces it.
    current: tuple[np.ndarray, np.ndarray] | None = None

    def __post_init__(self) -> None:
        if len(self.ids) == 0:
            self.ids = np.arange(100, 100 + len(self.images), dtype=np.int64)

    def visible_edges(self) -> list[dict[str, Any]]:
        rows = list(self.edges)
        for after, extra in sorted(self.later_edges.items()):
            if len(self.uploads) >= after:
                rows += extra
        return sorted(rows, key=lambda r: r["id"])

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.fail_next:
            failure = self.fail_next.pop(0)
            if isinstance(failure, Exception):
                raise failure
            return httpx.Response(failure, json={"error": {"code": "unavailable", "message": "try later"}})
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return httpx.Response(401, json={"error": {"code": "unauthorized", "message": "bad token"}})
        path, q = request.url.path, request.url.params
        base = f"/api/v1/projects/{self.project}"
        if path == base:
            return httpx.Response(200, json={"id": self.project, "name": "fake", "n_candidates": 8})
        if path == f"{base}/items/pixels":
            after, limit = int(q.get("after", -1)), int(q["limit"])
            chosen = np.flatnonzero(self.ids > after)[:limit]
            images = self.images[chosen]
            if "size" in q and int(q["size"]) != images.shape[1]:
                return httpx.Response(400, json={"error": {"code": "bad_size", "message": "fake serves native"}})
            more = len(chosen) and chosen[-1] < len(self.ids) - 1
            headers = {NEXT_AFTER_HEADER: str(self.ids[chosen[-1]])} if more else {}
            return httpx.Response(200, content=encode_pixels(self.ids[chosen], images), headers=headers)
        if path == f"{base}/edges":
            _, last = parse_cursor(q["cursor"])
            limit = int(q["limit"])
            rows = [r for r in self.visible_edges() if r["id"] > last]
            page = rows[:limit]
            cursor = format_cursor(0, page[-1]["id"]) if page else q["cursor"]
            return httpx.Response(200, json={"edges": page, "next_cursor": cursor, "has_more": len(rows) > limit})
        if path in (f"{base}/embeddings/current/vectors", f"{base}/embeddings/current/item_ids"):
            return self._current(path.rsplit("/", 1)[1])
        if path == f"{base}/embeddings" and request.method == "POST":
            parts = parse_multipart(request)
            upload = {
                "meta": json.loads(parts["meta"]),
                "item_ids": decode_npy(parts["item_ids"]),
                "vectors": decode_npy(parts["vectors"]),
            }
            self.uploads.append(upload)
            return httpx.Response(201, json={"id": len(self.uploads), "step": upload["meta"]["step"]})
        return httpx.Response(404, json={"error": {"code": "not_found", "message": path}})

    def _current(self, which: str) -> httpx.Response:
        if self.uploads:
            version, ids, vectors = len(self.uploads), self.uploads[-1]["item_ids"], self.uploads[-1]["vectors"]
        elif self.current is not None:
            version, (ids, vectors) = 0, self.current
        else:
            return httpx.Response(404, json={"error": {"code": "no_embedding", "message": "none yet"}})
        data = encode_npy(vectors if which == "vectors" else ids)
        return httpx.Response(200, content=data, headers={"X-Embedding-Version": str(version)})

    def client(self, retry: RetryPolicy | None = None, sleep: Callable[[float], None] = lambda s: None) -> ApiClient:
        return ApiClient(
            "http://fake",
            TOKEN,
            transport=httpx.MockTransport(self.handler),
            retry=retry or RetryPolicy(max_attempts=5),
            sleep=sleep,
        )


def blob_images(n: int = 48, size: int = 16, seed: int = 0) -> np.ndarray:
    """(n, size, size, 1) uint8: a bright square at one of 4 places, by class i % 4."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 40, size=(n, size, size, 1), dtype=np.uint8)
    half = size // 2
    for i in range(n):
        r, c = divmod(i % 4, 2)
        images[i, r * half + 2 : r * half + half - 2, c * half + 2 : c * half + half - 2] = 220
    return images


def colour_images(n: int = 12, size: int = 16, seed: int = 0) -> np.ndarray:
    """(n, size, size, 3) uint8: noise with a red, green or blue tint, by class i % 3."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, size=(n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        images[i, ..., i % 3] += 150
    return images


def fake_config(tmp_path: Path, **overrides: Any) -> TrainConfig:
    """A trainer config for the fake server: tiny batches, CPU, a checkpoint under ``tmp_path``."""
    settings: dict[str, Any] = {
        "server": "http://fake",
        "token": "unused",
        "project": 1,
        "checkpoint": str(tmp_path / "ckpt.pt"),
        "batch_size": 8,
        "proj_dim": 16,
        "publish_every": 2,
        "warmup_steps": 2,
        "device": "cpu",
        "log_every": 1,
    }
    settings.update(overrides)
    return TrainConfig(**settings)
