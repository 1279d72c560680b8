"""Engine and sessions. PostgreSQL in production; SQLite as the embedded default, where every
transaction starts with BEGIN IMMEDIATE so writers are serialised (the single-process
equivalent of row locks and of the edge feed's commit-order watermark)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from server.config import Settings, get_settings


def pg_options(settings: Settings) -> str:
    return (f"-c statement_timeout={settings.statement_timeout_ms} "
            "-c idle_in_transaction_session_timeout=60000 -c lock_timeout=5000")


def make_engine(settings: Settings) -> sa.Engine:
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=8, max_overflow=8
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # let SQLAlchemy's "begin" hook issue BEGIN
            cur = dbapi_connection.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    options = pg_options(settings)
    # No pool_pre_ping: it cost a round trip on every checkout (a fifth of the server's time on the
    # claim/answer paths, measured with py-spy by bench/load.py). A connection that died with its
    # server (PostgreSQL restarted) fails its next statement instead; SQLAlchemy then sees the
    # disconnect and discards every pooled connection of that age, the request answers 503 with
    # Retry-After (server/errors.py) and the client's retry gets a fresh connection. bench/faults.py
    # restarts PostgreSQL under load to check exactly that.
    return sa.create_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_pre_ping=False,
        connect_args={"options": options, "connect_timeout": 5},
    )


@lru_cache
def get_engine() -> sa.Engine:
    return make_engine(get_settings())


@lru_cache
def get_sessionmaker() -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


@lru_cache
def get_autocommit_sessionmaker() -> sessionmaker[Session]:
    """Sessions for work that is one statement at a time (the auth lookup, the PostgreSQL fast paths
    of claim and answer): in autocommit each statement is its own transaction, with no BEGIN and no
    COMMIT round trip and no transaction held open between statements. Same pool as the others.
    SQLite keeps its serialised BEGIN IMMEDIATE transactions."""
    engine = get_engine()
    if engine.dialect.name == "postgresql":
        engine = engine.execution_options(isolation_level="AUTOCOMMIT")
    return sessionmaker(bind=engine, expire_on_commit=False)


class LoopReader:
    """A few autocommit psycopg ``AsyncConnection``s per process for one-statement reads made on
    the event loop: the caller lookup that every request makes, without a thread-pool hop and
    without ORM loading (together about a third of a small request's cost). PostgreSQL only.

    Connections belong to the event loop that opened them; if the loop changes (test clients that
    start their own loop) the old ones are dropped. A connection that fails is discarded; the
    caller turns the error into a 503 with Retry-After, like the pool's errors."""

    def __init__(self, url: sa.URL, *, size: int, options: str) -> None:
        self.conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.size = size
        self.options = options
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: list[Any] = []
        self._slots: asyncio.Semaphore | None = None

    def _bind_loop(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._slots is None:
            self._loop, self._idle, self._slots = loop, [], asyncio.Semaphore(self.size)
        return self._slots

    async def fetchone(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        import psycopg

        async with self._bind_loop():
            conn = self._idle.pop() if self._idle else None
            try:
                if conn is None or conn.closed:
                    conn = await psycopg.AsyncConnection.connect(
                        self.conninfo, autocommit=True, connect_timeout=5, options=self.options)
                cur = await conn.execute(sql, params, prepare=True)
                row = await cur.fetchone()
            except BaseException:
                if conn is not None:
                    await conn.close()
                raise
            self._idle.append(conn)
            return row


@lru_cache
def get_loop_reader() -> LoopReader | None:
    """The process's event-loop reader on PostgreSQL; None on SQLite (callers use a thread)."""
    settings = get_settings()
    url = make_url(settings.database_url)
    if url.get_backend_name() != "postgresql":
        return None
    return LoopReader(url, size=4, options=pg_options(settings))


def reset_engine_cache() -> None:
    """Forget the cached engine (tests and CLI commands that switch databases)."""
    if get_engine.cache_info().currsize:
        get_engine().dispose()
    get_engine.cache_clear()
    get_sessionmaker.cache_clear()
    get_autocommit_sessionmaker.cache_clear()
    get_loop_reader.cache_clear()


async def get_db() -> AsyncIterator[Session]:
    """The request's session. Opening one does no I/O, so it happens on the event loop (a sync
    dependency would cost two thread-pool hops per request). Closing one that still holds a
    transaction rolls back over the network: that runs in the loop's default executor, not in the
    request thread pool, so a request never waits for a pool thread while it holds a connection."""
    session = get_sessionmaker()()
    try:
        yield session
    finally:
        if session.in_transaction():
            await asyncio.get_running_loop().run_in_executor(None, session.close)
        else:
            session.close()


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def use_autocommit(session: Session) -> bool:
    """Put a session that has not started a transaction into autocommit (PostgreSQL only): each
    statement then commits on its own, without BEGIN and COMMIT round trips. True when it did.
    Only single-statement work belongs there; ``session.close()`` ends it (the pool resets the
    connection) and the session can then be used for ordinary transactions again."""
    if not is_postgres(session) or session.in_transaction():
        return False
    session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    return True
