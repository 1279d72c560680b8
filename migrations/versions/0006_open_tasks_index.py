"""index of a project's tasks still waiting for answers (the grids in flight the oracle avoids)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 13:20:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_tasks_open', 'tasks', ['project_id', 'id'], unique=False,
                    postgresql_where=sa.text('completed_at IS NULL'),
                    sqlite_where=sa.text('completed_at IS NULL'))


def downgrade() -> None:
    op.drop_index('ix_tasks_open', table_name='tasks')
