"""A claim, end to end: an existing slot if one is claimable, else a new task from the oracle.

The steps are the same on PostgreSQL and SQLite; only where transactions end differs. On PostgreSQL
the router puts the request's session in autocommit, so the common claim (a claimable slot) is one
statement with no BEGIN or COMMIT (``take_slot``, which also checks that the caller may see the
project and that it is not paused), and reading the project and the graph holds no transaction
while the oracle thinks. A new task is then issued by one statement, or, for a project with a
webhook, in one transaction (its budget events commit with the charge). SQLite, and any session
already inside a transaction, issue in one transaction and commit after each step."""

from __future__ import annotations

from contextlib import suppress

from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from pal.core.oracle import OracleContext, TaskSpec, get_oracle
from pal.core.oracle.base import NoTaskAvailable
from server import models
from server.config import Settings
from server.db import use_autocommit
from server.schemas import ClaimReason
from server.services.exclusions import refuse_if_excluded
from server.services.project_state import ProjectState, get_state
from server.services.projects import get_project_for
from server.services.tasks import (
    Lease,
    issue_task,
    issue_task_at_once,
    items_in_flight,
    retry_on_conflict,
    take_slot,
)
from server.services.warmup import FALLBACK_ORACLE, NEEDS_FEATURES, is_ready, ready_state, warming_task


def autocommitting(db: Session) -> bool:
    return db.in_transaction() and db.connection().get_execution_options().get("isolation_level") == "AUTOCOMMIT"


def _end_step(db: Session) -> None:
    # In autocommit each statement has committed already, and a commit would end autocommit.
    if not autocommitting(db):
        db.commit()


def claim(db: Session, *, user: models.User, project_id: int, settings: Settings) -> Lease | ClaimReason:
    """A lease, or the reason there is none. 404 when the caller may not see the project."""
    try:
        for attempt in range(4):
            try:
                return _claim_once(db, user=user, project_id=project_id, settings=settings)
            except IntegrityError as exc:
                retry_on_conflict(db, attempt, exc)
        raise AssertionError("unreachable")
    finally:
        db.close()  # back to ordinary transactions, and no rollback round trip when the request ends


def _choose(db: Session, project: models.Project, state: ProjectState, settings: Settings,
            busy: frozenset[int]) -> tuple[TaskSpec, str] | ClaimReason:
    """The oracle's next task for the project (its cached state refreshed first), or a reason."""
    with state.lock:
        features = None
        if state.embedding is None and project.oracle in NEEDS_FEATURES:
            features = state.ensure_pixel_features(db)
        ctx = OracleContext(
            n_candidates=project.n_candidates, item_ids=state.item_ids, graph=state.graph,
            rng=state.oracle_rng(settings.oracle_seed), target_match_share=project.target_match_share,
            gold_rate=project.gold_rate, embedding=state.embedding, pixel_features=features,
            embedding_version=state.embedding_id, cache=state.oracle_cache, busy=busy,
        )
        oracle = get_oracle(project.oracle)
        try:
            return oracle.select(ctx), oracle.name
        except NoTaskAvailable:
            return ClaimReason.DONE


def _claim_once(db: Session, *, user: models.User, project_id: int, settings: Settings) -> Lease | ClaimReason:
    lease = take_slot(db, user=user, project_id=project_id, lease_seconds=settings.lease_seconds)
    if lease is not None:
        _end_step(db)
        return lease
    project = get_project_for(db, user, project_id)
    refuse_if_excluded(db, project_id=project.id, user_id=user.id)  # 403: no new task either
    _end_step(db)
    if project.paused:
        return ClaimReason.PAUSED
    if project.budget_spent >= project.budget_cap:
        return ClaimReason.BUDGET_EXHAUSTED
    state = get_state(project.id)
    if not is_ready(state, project.oracle) and _wait_for_state(db, project) is None:
        busy = items_in_flight(db, project_id=project.id)
        spec = warming_task(db, project_id=project.id, n_candidates=project.n_candidates, busy=busy)
        _end_step(db)
        if spec is not None:
            return _issue(db, project=project, spec=spec, oracle=FALLBACK_ORACLE, user_id=user.id,
                          lease_seconds=settings.lease_seconds)
        # Every item is in some edge or grid: this claim builds the state itself.
    state.refresh(db, max_age=settings.graph_refresh_seconds)
    busy = items_in_flight(db, project_id=project.id)
    _end_step(db)
    if len(state.item_ids) < 2:
        return ClaimReason.NO_ITEMS
    chosen = _choose(db, project, state, settings, busy)
    _end_step(db)
    if isinstance(chosen, ClaimReason):
        return chosen
    spec, oracle_name = chosen
    return _issue(db, project=project, spec=spec, oracle=oracle_name, user_id=user.id,
                  lease_seconds=settings.lease_seconds)


def _wait_for_state(db: Session, project: models.Project) -> ProjectState | None:
    """The project's state if its build (started here if none runs) ends within a short wait;
    the session's pooled connection is given back meanwhile, so a burst of claims on a cold
    process does not empty the pool."""
    autocommit = autocommitting(db)
    db.close()
    state = ready_state(project)
    if autocommit:
        use_autocommit(db)
    return state


def _issue(db: Session, *, project: models.Project, spec: TaskSpec, oracle: str, user_id: int,
           lease_seconds: int) -> Lease | ClaimReason:
    """A new task, its slots and the charge, committed together (with any webhook event). In
    autocommit the transaction of a webhook project is opened on the session's own connection:
    giving it back to the pool first would let the next request in line take it meanwhile, and a
    burst bigger than the pool would then wait for this claim instead of being refused at once."""
    explicit = autocommitting(db)
    if explicit and not project.webhook_url:
        issued = issue_task_at_once(db, project=project, spec=spec, oracle=oracle, user_id=user_id,
                                    lease_seconds=lease_seconds)
        return issued if issued is not None else ClaimReason.BUDGET_EXHAUSTED
    if explicit:
        db.connection().exec_driver_sql("BEGIN")
    try:
        issued = issue_task(db, project=project, spec=spec, oracle=oracle, user_id=user_id,
                            lease_seconds=lease_seconds)
    except BaseException:
        with suppress(SQLAlchemyError):  # a broken connection is rolled back by the pool instead
            _end_transaction(db, explicit=explicit, commit=False)
        raise
    _end_transaction(db, explicit=explicit, commit=issued is not None)
    return issued if issued is not None else ClaimReason.BUDGET_EXHAUSTED


def _end_transaction(db: Session, *, explicit: bool, commit: bool) -> None:
    if explicit:
        db.connection().exec_driver_sql("COMMIT" if commit else "ROLLBACK")
    elif commit:
        db.commit()
    else:
        db.rollback()
