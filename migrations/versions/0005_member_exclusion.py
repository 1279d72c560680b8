"""member exclusion: an admin may exclude an annotator from a project

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 13:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: every existing member stays included; SQLite adds it without a rebuild.
    op.add_column('project_members', sa.Column('excluded_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('project_members') as batch:  # SQLite before 3.35 cannot drop a column
        batch.drop_column('excluded_at')
