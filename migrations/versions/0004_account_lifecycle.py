"""account lifecycle: token expiry, failed tries per invite

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 12:45:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # batch mode: SQLite cannot ALTER a table to add a column with a server default in place.
    with op.batch_alter_table('api_tokens') as batch:
        batch.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('invites') as batch:
        batch.add_column(sa.Column('failed_attempts', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('invites') as batch:
        batch.drop_column('failed_attempts')
    with op.batch_alter_table('api_tokens') as batch:
        batch.drop_column('expires_at')
