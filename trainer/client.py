"""The trainer's HTTP client for the PAL server (bearer token, retries with backoff).

Transient failures (connection errors, timeouts, 429, 5xx) are retried with exponential
backoff and a log line each time, so a trainer outlives a server restart; other 4xx
responses raise :class:`ApiError` at once with the server's error code and message.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from pal.core.edges import EdgeKind, EdgeRecord
from pal.wire import NEXT_AFTER_HEADER, NPY_MEDIA_TYPE, decode_npy, decode_pixels, encode_npy

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class ApiError(RuntimeError):
    """A non-retryable error answer, or retries exhausted."""

    def __init__(self, status: int, code: str, message: str, fields: Any = None) -> None:
        super().__init__(f"HTTP {status} {code}: {message}" + (f" {fields}" if fields else ""))
        self.status, self.code, self.message, self.fields = status, code, message, fields


@dataclass(frozen=True)
class EdgePage:
    edges: list[EdgeRecord]
    next_cursor: str
    has_more: bool
    # Committed edges the server's feed holds back behind an open transaction (see the API docs).
    held_back: dict[str, Any] | None = None


@dataclass(frozen=True)
class PixelPage:
    ids: np.ndarray  # (n,) int64
    images: np.ndarray  # (n, s, s, C) uint8
    next_after: int | None


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int | None = None  # None: keep trying (a long-running trainer waits for the server)
    base_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, attempt: int) -> float:
        return float(min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


def _error_from(response: httpx.Response) -> ApiError:
    try:
        err = response.json()["error"]
        return ApiError(response.status_code, str(err.get("code")), str(err.get("message")), err.get("fields"))
    except (ValueError, KeyError, TypeError):
        return ApiError(response.status_code, "http_error", response.text[:200])


class ApiClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            transport=transport,
        )
        self.retry = retry or RetryPolicy()
        self._sleep = sleep

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            response: httpx.Response | None = None
            try:
                response = self.http.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 400:
                    return response
                if response.status_code not in RETRY_STATUS:
                    raise _error_from(response)
                problem = f"HTTP {response.status_code}"
            if self.retry.max_attempts is not None and attempt >= self.retry.max_attempts:
                if response is not None:
                    raise _error_from(response)
                raise ApiError(0, "unreachable", f"{method} {url} failed {attempt} times; last: {problem}")
            wait = self.retry.delay(attempt)
            log.warning("server unavailable (%s %s: %s); retry %d in %.1fs", method, url, problem, attempt, wait)
            self._sleep(wait)

    # --- resources --------------------------------------------------------------------------

    def get_project(self, project: int) -> dict[str, Any]:
        data: dict[str, Any] = self.request("GET", f"/api/v1/projects/{project}").json()
        return data

    def get_pixels(self, project: int, after: int | None, limit: int, size: int | None) -> PixelPage:
        params: dict[str, int] = {"limit": limit}
        if after is not None:
            params["after"] = after
        if size is not None:
            params["size"] = size
        response = self.request("GET", f"/api/v1/projects/{project}/items/pixels", params=params)
        ids, images = decode_pixels(response.content)
        header = response.headers.get(NEXT_AFTER_HEADER, "")
        return PixelPage(ids.astype(np.int64), images, int(header) if header else None)

    def get_edges(self, project: int, cursor: str, limit: int) -> EdgePage:
        params: dict[str, str | int] = {"cursor": cursor, "limit": limit}
        data = self.request("GET", f"/api/v1/projects/{project}/edges", params=params).json()
        edges = [
            EdgeRecord(
                id=int(e["id"]),
                src=int(e["src"]),
                dst=int(e["dst"]),
                sign=int(e["sign"]),
                weight=float(e["weight"]),
                kind=EdgeKind(e["kind"]),
                retracts_id=None if e.get("retracts_id") is None else int(e["retracts_id"]),
                annotator_id=None if e.get("annotator_id") is None else int(e["annotator_id"]),
            )
            for e in data["edges"]
        ]
        return EdgePage(edges, str(data["next_cursor"]), bool(data["has_more"]), data.get("held_back"))

    def get_current_embedding(self, project: int) -> tuple[str, np.ndarray, np.ndarray]:
        """The current version's number, item ids (N,) int64 and vectors (N, D) float32.

        Read as two requests; a version published between them is caught and read again."""
        base = f"/api/v1/projects/{project}/embeddings/current"
        while True:
            vectors = self.request("GET", f"{base}/vectors")
            ids = self.request("GET", f"{base}/item_ids")
            version = vectors.headers.get("X-Embedding-Version", "?")
            if ids.headers.get("X-Embedding-Version", "?") == version:
                item_ids = decode_npy(ids.content).astype(np.int64)
                return version, item_ids, decode_npy(vectors.content).astype(np.float32)

    def upload_embeddings(
        self,
        project: int,
        *,
        item_ids: np.ndarray,
        vectors: np.ndarray,
        step: int,
        edges_seen: int,
        cursor: str,
        metrics: dict[str, float],
    ) -> dict[str, Any]:
        if vectors.ndim != 2 or len(item_ids) != len(vectors):
            raise ValueError(f"want item_ids (N,) and vectors (N, D); got {item_ids.shape} and {vectors.shape}")
        meta = {"step": step, "edges_seen": edges_seen, "cursor": cursor, "metrics": metrics}
        files = {
            "item_ids": ("item_ids.npy", encode_npy(item_ids.astype(np.int64)), NPY_MEDIA_TYPE),
            "vectors": ("vectors.npy", encode_npy(vectors.astype(np.float32)), NPY_MEDIA_TYPE),
        }
        response = self.request(
            "POST", f"/api/v1/projects/{project}/embeddings", data={"meta": json.dumps(meta)}, files=files
        )
        data: dict[str, Any] = response.json()
        return data
