"""Request ids, structured JSON logs and Prometheus metrics.

Request id: every HTTP request gets one: the caller's ``X-Request-ID`` when it is a sane token
(letters, digits, ``._-``, at most 128 characters), otherwise a fresh uuid4. It is echoed in the
response header and attached to every log record written while the request runs (a context
variable, which the thread pool that runs sync endpoints copies).

Logs: with ``PAL_LOG_JSON=true`` every line on stdout is one JSON object (``ts``, ``level``,
``logger``, ``message``, ``request_id`` and any ``extra`` fields). The access log line comes from
here (``logger: pal.access``, with route template, status and duration) rather than uvicorn's, so it
carries the request id.

Metrics, with several uvicorn workers in mind:
- Request counters and latency histograms live in each process. With ``PROMETHEUS_MULTIPROC_DIR``
  set (docker-compose sets it), prometheus-client writes them to memory-mapped files in that folder
  and ``/metrics`` sums every worker's files, so a scrape that lands on any worker sees the totals.
  Without it, each process reports its own (fine for one worker).
- Everything about the data (answers, edges, budget, lease reclaims, trainer lag, webhook outbox) is
  read from the database at scrape time, so it is exact whichever process answers and whatever
  process wrote it, and survives restarts.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pal.wire import parse_cursor
from server import models
from server.config import get_settings
from server.errors import ApiError
from server.log_redaction import mask_url
from server.security import constant_time_equal
from server.timeutil import as_utc, utcnow

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("pal_request_id", default=None)

access_log = logging.getLogger("pal.access")

# --------------------------------------------------------------------------- process-local metrics

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
_LOCAL_REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "pal_http_requests", "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"], registry=_LOCAL_REGISTRY,
)
HTTP_LATENCY = Histogram(
    "pal_http_request_duration_seconds", "Time from request to the last byte of the response, by route template.",
    ["method", "route"], registry=_LOCAL_REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
WEBHOOK_DELIVERIES = Counter(
    "pal_webhook_delivery_attempts", "Webhook POSTs tried by this server, by outcome (delivered, failed).",
    ["outcome"], registry=_LOCAL_REGISTRY,
)


def route_template(scope: Scope) -> str:
    """The matched route's path template ("/api/v1/tasks/{task_id}/answers"); bounded cardinality."""
    # FastAPI >= 0.12x keeps an included router's routes as they were declared (without the
    # include prefix) and records the full template in its effective route context.
    context = (scope.get("fastapi") or {}).get("effective_route_context")
    path = getattr(context, "path_format", None) or getattr(context, "path", None)
    if not path:
        route = scope.get("route")
        path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path if isinstance(path, str) and path else "<unmatched>"


# --------------------------------------------------------------------------- request context

class RequestContextMiddleware:
    """Pure ASGI (streams pass through untouched): request id, access log, request metrics."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        rid = incoming if _REQUEST_ID_OK.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(rid)
        status = 500
        start = time.perf_counter()
        recorded = False

        def record() -> None:
            nonlocal recorded
            if recorded:
                return
            recorded = True
            elapsed = time.perf_counter() - start
            route = route_template(scope)
            method = str(scope.get("method", ""))
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_LATENCY.labels(method, route).observe(elapsed)
            state = scope.get("state") or {}
            client = scope.get("client")
            path = mask_url(str(scope.get("path", "")))  # invite tokens are credentials
            access_log.info(
                "%s %s %s", method, path, status,
                extra={"method": method, "path": path, "route": route, "status": status,
                       "duration_ms": round(elapsed * 1000, 2), "user_id": state.get("user_id"),
                       "client": client[0] if client else None},
            )

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                # Count before the last byte leaves: a client that reads the response and then
                # scrapes /metrics must find its request counted.
                record()
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            record()
            request_id_var.reset(token)


# --------------------------------------------------------------------------- JSON logs

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is logged too.
_RECORD_FIELDS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or request_id_var.get(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and key not in out and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure_json_logging(level: int = logging.INFO) -> None:
    """One JSON handler on the root logger; uvicorn's loggers propagate to it and uvicorn's own
    access log is silenced (ours carries the request id)."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers = []
        lg.propagate = True
    access = logging.getLogger("uvicorn.access")
    access.handlers = []
    access.propagate = False
    access.disabled = True


# --------------------------------------------------------------------------- metrics from the database

class DatabaseCollector(Collector):
    """Gauges and counters read from the database at scrape time (exact across processes)."""

    def collect(self) -> Iterator[Metric]:
        from server.db import get_sessionmaker

        with get_sessionmaker()() as db:
            yield from database_metrics(db)
            db.rollback()


def _per_project(family: GaugeMetricFamily | CounterMetricFamily, project_ids: list[int],
                 values: Mapping[int, float]) -> Metric:
    for pid in project_ids:
        family.add_metric([str(pid)], values.get(pid, 0))
    return family


def _counts(db: sa.orm.Session, query: sa.Executable) -> dict[int, int]:
    """``{project_id: n}`` from a query of (project id, count) rows."""
    return {int(pid): int(n) for pid, n in db.execute(query)}


def _budget_metrics(projects: Sequence[Any]) -> list[Metric]:
    budget_spent = GaugeMetricFamily("pal_budget_spent", "Tasks charged to the project's budget.", labels=["project"])
    budget_cap = GaugeMetricFamily("pal_budget_cap", "The project's label budget (tasks).", labels=["project"])
    paused = GaugeMetricFamily("pal_project_paused", "1 when the project is paused.", labels=["project"])
    for pid, spent, cap, is_paused in projects:
        budget_spent.add_metric([str(pid)], spent)
        budget_cap.add_metric([str(pid)], cap)
        paused.add_metric([str(pid)], 1 if is_paused else 0)
    return [budget_spent, budget_cap, paused]


def _work_metrics(db: sa.orm.Session, project_ids: list[int]) -> list[Metric]:
    """Answers (and how many were undone) and tasks issued."""
    M = models
    answers = db.execute(
        sa.select(M.Answer.project_id, sa.func.count(), sa.func.count(M.Answer.undone_at)).group_by(M.Answer.project_id)
    ).all()
    tasks = _counts(db, sa.select(M.Task.project_id, sa.func.count()).group_by(M.Task.project_id))
    return [
        _per_project(CounterMetricFamily("pal_answers", "Answers stored (undone ones included).", labels=["project"]),
                     project_ids, {int(pid): int(n) for pid, n, _undone in answers}),
        _per_project(CounterMetricFamily("pal_answers_undone", "Answers undone by their annotator.",
                                         labels=["project"]),
                     project_ids, {int(pid): int(undone) for pid, _n, undone in answers}),
        _per_project(CounterMetricFamily("pal_tasks", "Tasks issued.", labels=["project"]), project_ids, tasks),
    ]


def _edge_metrics(db: sa.orm.Session) -> tuple[Metric, dict[int, int]]:
    """Edges by project and kind, and each project's total (the trainer lag of a project without
    an embedding version)."""
    edges_total = CounterMetricFamily("pal_edges", "Edges stored, by kind (answer, retract).",
                                      labels=["project", "kind"])
    totals: dict[int, int] = {}
    for pid, kind, count in db.execute(
        sa.select(models.Edge.project_id, models.Edge.kind, sa.func.count())
        .group_by(models.Edge.project_id, models.Edge.kind)
    ):
        edges_total.add_metric([str(pid), kind], int(count))
        totals[int(pid)] = totals.get(int(pid), 0) + int(count)
    return edges_total, totals


def _lease_metrics(db: sa.orm.Session, project_ids: list[int], now: datetime) -> list[Metric]:
    A = models.Assignment
    reclaims = _counts(db, sa.select(A.project_id, sa.func.coalesce(sa.func.sum(A.leases_issued - 1), 0))
                       .where(A.leases_issued > 1).group_by(A.project_id))
    expired = _counts(db, sa.select(A.project_id, sa.func.count())
                      .where(A.status == "leased", A.lease_expires_at < now).group_by(A.project_id))
    return [
        _per_project(CounterMetricFamily("pal_lease_reclaims",
                                         "Slots whose lease expired and that a later claim took again.",
                                         labels=["project"]), project_ids, reclaims),
        _per_project(GaugeMetricFamily("pal_leases_expired", "Leased slots past their lease, not yet reclaimed.",
                                       labels=["project"]), project_ids, expired),
    ]


def _embedding_metrics(db: sa.orm.Session, project_ids: list[int], edge_totals: dict[int, int],
                       now: datetime) -> list[Metric]:
    """The newest embedding version of each project, its age, and the edges it has not seen."""
    ev = models.EmbeddingVersion
    newest = {int(r.project_id): r for r in db.execute(
        sa.select(ev.project_id, ev.version, ev.metrics, ev.created_at)
        .where(ev.id.in_(sa.select(sa.func.max(ev.id)).group_by(ev.project_id)))
    )}
    version_g = GaugeMetricFamily("pal_embedding_version", "Newest embedding version number.", labels=["project"])
    age_g = GaugeMetricFamily("pal_embedding_age_seconds", "Seconds since the newest embedding version.",
                              labels=["project"])
    lag_g = GaugeMetricFamily(
        "pal_trainer_lag_edges",
        "Edges the trainer has not consumed: edges after the newest version's cursor (all edges before any).",
        labels=["project"])
    for pid in project_ids:
        version = newest.get(pid)
        if version is not None:
            version_g.add_metric([str(pid)], version.version)
            age_g.add_metric([str(pid)], max((now - as_utc(version.created_at)).total_seconds(), 0.0))
        lag = trainer_lag(db, project_id=pid, newest_metrics=version.metrics if version else None,
                          total_edges=edge_totals.get(pid, 0))
        lag_g.add_metric([str(pid)], lag)
    return [version_g, age_g, lag_g]


def _outbox_metrics(db: sa.orm.Session) -> Metric:
    """Outbox rows by status; per project only when /metrics needs a token. Open to anyone, which
    project's deliveries fail would tell an outsider whether its receiver answers."""
    outbox_g = GaugeMetricFamily("pal_webhook_events", "Webhook outbox rows by status (pending, delivered, failed); "
                                 "project is 'all' unless PAL_METRICS_TOKEN is set.", labels=["project", "status"])
    per_project = bool(get_settings().metrics_token)
    we = models.WebhookEvent
    project = we.project_id if per_project else sa.literal("all")
    for pid, status, count in db.execute(
        sa.select(project, we.status, sa.func.count()).group_by(*([we.project_id] if per_project else []), we.status)
    ):
        outbox_g.add_metric([str(pid), status], int(count))
    return outbox_g


def _feed_metrics(db: sa.orm.Session, project_ids: list[int]) -> list[Metric]:
    """Committed edges the feed holds back (PostgreSQL; zero on SQLite) and for how long."""
    from server.services.edges import held_back

    edges = GaugeMetricFamily("pal_feed_held_back_edges",
                              "Committed edges the edge feed cannot deliver yet: an older transaction, in any "
                              "database of the cluster, is still open.", labels=["project"])
    age = GaugeMetricFamily("pal_feed_held_back_seconds", "Age of the oldest held-back edge.", labels=["project"])
    for pid in project_ids:
        held = held_back(db, project_id=pid)
        edges.add_metric([str(pid)], 0 if held is None else held.edges)
        age.add_metric([str(pid)], 0.0 if held is None else held.oldest_edge_age_s)
    return [edges, age]


def database_metrics(db: sa.orm.Session) -> list[Metric]:
    now = utcnow()
    projects = db.execute(
        sa.select(models.Project.id, models.Project.budget_spent, models.Project.budget_cap, models.Project.paused)
    ).all()
    project_ids = [int(r[0]) for r in projects]
    edges_total, edge_totals = _edge_metrics(db)
    return [*_budget_metrics(projects), *_work_metrics(db, project_ids), edges_total,
            *_lease_metrics(db, project_ids, now), *_embedding_metrics(db, project_ids, edge_totals, now),
            _outbox_metrics(db), *_feed_metrics(db, project_ids)]


def trainer_lag(db: sa.orm.Session, *, project_id: int, newest_metrics: dict[str, Any] | None,
                total_edges: int | None = None) -> int:
    """Edges (answer and retract rows) the newest embedding version has not seen.

    The version's ``cursor`` names the last edge it consumed; edges with a larger id came after it
    (on PostgreSQL the feed orders by commit, so this can be off by the few edges in flight). Without
    a readable cursor the version's ``edges_seen`` count is used; without a version, every edge."""
    if total_edges is None:
        total_edges = int(db.scalar(
            sa.select(sa.func.count()).select_from(models.Edge).where(models.Edge.project_id == project_id)
        ) or 0)
    if not newest_metrics:
        return total_edges
    cursor = newest_metrics.get("cursor")
    if isinstance(cursor, str):
        try:
            _tx, last_id = parse_cursor(cursor)
        except ValueError:
            last_id = -1
        if last_id >= 0:
            return int(db.scalar(
                sa.select(sa.func.count()).select_from(models.Edge)
                .where(models.Edge.project_id == project_id, models.Edge.id > last_id)
            ) or 0)
    seen = newest_metrics.get("edges_seen")
    if isinstance(seen, int | float):
        return max(total_edges - int(seen), 0)
    return total_edges


_DB_REGISTRY = CollectorRegistry(auto_describe=False)
_DB_REGISTRY.register(DatabaseCollector())


def render_metrics() -> bytes:
    if MULTIPROCESS:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        process_part = generate_latest(registry)
    else:
        process_part = generate_latest(_LOCAL_REGISTRY)
    return process_part + generate_latest(_DB_REGISTRY)


router = APIRouter(tags=["operations"])


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
def metrics(request: Request) -> Response:
    """Prometheus metrics. Open to scrapers unless ``PAL_METRICS_TOKEN`` is set, in which case the
    scraper sends it as a bearer token."""
    expected = get_settings().metrics_token
    if expected:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not constant_time_equal(token.strip(), expected):
            raise ApiError(401, "unauthenticated", "/metrics needs 'Authorization: Bearer <PAL_METRICS_TOKEN>'",
                           headers={"WWW-Authenticate": "Bearer"})
    return Response(content=render_metrics(), media_type=CONTENT_TYPE_LATEST)
