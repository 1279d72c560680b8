"""The Alembic migrations are the only way the schema is made: they run up, down and up again on
both databases, and they match the models exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from server.migrate import compare_type, downgrade, include_object, upgrade
from server.models import Base
from tests.conftest import _drop_pg_database, fresh_database_url


@pytest.fixture(params=["sqlite", "postgres"])
def scratch_url(request: pytest.FixtureRequest, tmp_path: Path, pg_ready: bool):  # type: ignore[no-untyped-def]
    if request.param == "postgres" and not pg_ready:
        pytest.skip("PostgreSQL not reachable: PostgreSQL half skipped")
    url, name = fresh_database_url(request.param, tmp_path)
    yield url
    if name:
        _drop_pg_database(name)


def test_upgrade_downgrade_upgrade_round_trip(scratch_url: str) -> None:
    upgrade(scratch_url)
    downgrade(scratch_url)
    engine = sa.create_engine(scratch_url)
    assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()
    upgrade(scratch_url)
    engine = sa.create_engine(scratch_url)
    tables = set(sa.inspect(engine).get_table_names())
    assert {"projects", "items", "tasks", "assignments", "answers", "edges"} <= tables
    engine.dispose()


def test_models_match_migrations(scratch_url: str) -> None:
    upgrade(scratch_url)
    engine = sa.create_engine(scratch_url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": compare_type, "include_object": include_object})
        diff = compare_metadata(ctx, Base.metadata)
    engine.dispose()
    assert diff == []
