"""Running the Alembic migrations from code (``pal migrate``, tests, ``pal demo``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

from pal.assets import asset_dir
from server.models import TxId


def alembic_config(database_url: str) -> Config:
    # No alembic.ini: it only configures the `alembic` command's logging in a checkout, and an installed
    # PAL has none. The scripts come from the installed package or the checkout (pal/assets.py).
    cfg = Config()
    cfg.set_main_option("script_location", str(asset_dir("migrations")))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def _ensure_sqlite_folder(database_url: str) -> None:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)


def upgrade(database_url: str, revision: str = "head") -> None:
    _ensure_sqlite_folder(database_url)
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)


def compare_type(ctx: Any, inspected_column: Any, metadata_column: Any, inspected_type: Any,
                 metadata_type: Any) -> bool | None:
    """Autogenerate hook: xid8 is unknown to SQLAlchemy's reflection; the migration creates it."""
    if isinstance(metadata_type, TxId):
        return False
    return None


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Autogenerate hook: the edge feed's (project_id, txid, id) index is PostgreSQL-only."""
    return not (type_ == "index" and name == "ix_edges_project_txid")
