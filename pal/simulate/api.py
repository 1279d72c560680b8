"""The HTTP side of the simulated annotators: the routes a browser annotator may call, a client
restricted to them, errors, and the admin calls that create annotator accounts."""

from __future__ import annotations

import re
import threading
import uuid
from collections import Counter
from dataclasses import dataclass

import httpx

API = "/api/v1"

# Every route a browser annotator may call (method, path template). The simulator's annotator
# clients refuse anything else before it leaves the process.
ANNOTATOR_ROUTES: frozenset[tuple[str, str]] = frozenset({
    ("GET", "/api/v1/auth/me"),
    ("GET", "/api/v1/projects"),
    ("GET", "/api/v1/projects/{project_id}"),
    ("GET", "/api/v1/projects/{project_id}/me"),
    ("GET", "/api/v1/projects/{project_id}/tasks/mine"),
    ("POST", "/api/v1/projects/{project_id}/tasks/claim"),
    ("POST", "/api/v1/tasks/{task_id}/lease"),
    ("POST", "/api/v1/tasks/{task_id}/answers"),
    ("DELETE", "/api/v1/answers/{answer_id}"),
    ("GET", "/api/v1/items/{item_id}/image"),
})

_TEMPLATE_RE = [
    (re.compile("^" + re.sub(r"\{[a-z_]+\}", r"\\d+", tpl) + "$"), method, tpl) for method, tpl in ANNOTATOR_ROUTES
]


def route_template(method: str, path: str) -> tuple[str, str] | None:
    """The annotator route template that ``method path`` matches, or None."""
    for regex, m, tpl in _TEMPLATE_RE:
        if m == method and regex.match(path):
            return (m, tpl)
    return None


class ForbiddenRoute(RuntimeError):
    """An annotator client tried to call a route that annotators do not use."""


class RouteRecorder:
    """httpx request hook: refuses non-annotator routes and counts the ones called (thread-safe)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> None:
        template = route_template(request.method, request.url.path)
        if template is None:
            raise ForbiddenRoute(f"annotator client may not call {request.method} {request.url.path}")
        with self._lock:
            self.counts[f"{template[0]} {template[1]}"] += 1


def annotator_client(server: str, token: str, recorder: RouteRecorder, timeout: float = 30.0) -> httpx.Client:
    """An httpx client that can only call annotator routes, and records the ones it calls."""
    return httpx.Client(base_url=server.rstrip("/"), headers={"Authorization": f"Bearer {token}"},
                        timeout=timeout, event_hooks={"request": [recorder]})


# --------------------------------------------------------------------------- accounts


@dataclass(frozen=True)
class Account:
    user_id: int
    email: str
    token: str


class SimulationError(RuntimeError):
    pass


def raise_for(resp: httpx.Response) -> None:
    if resp.status_code >= 400:
        raise SimulationError(f"{resp.request.method} {resp.request.url.path} -> {resp.status_code}: {resp.text[:300]}")


def create_annotators(admin: httpx.Client, project: int, n: int, tag: str | None = None) -> list[Account]:
    """``n`` new annotator accounts with tokens, members of ``project`` (admin API)."""
    tag = tag or uuid.uuid4().hex[:8]
    accounts = []
    for i in range(n):
        email = f"sim-{tag}-{i}@simulated.invalid"
        resp = admin.post(f"{API}/users", json={"email": email, "name": f"Simulated annotator {i}",
                                                "role": "annotator"})
        raise_for(resp)
        uid = int(resp.json()["id"])
        resp = admin.post(f"{API}/users/{uid}/tokens", json={"name": "pal simulate"})
        raise_for(resp)
        token = str(resp.json()["token"])
        raise_for(admin.post(f"{API}/projects/{project}/members/{uid}"))
        accounts.append(Account(uid, email, token))
    return accounts

