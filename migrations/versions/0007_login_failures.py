"""failed sign-ins, shared by every server process (throttling per client address and per e-mail)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 14:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'login_failures',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('client', sa.String(length=64), nullable=False),
        sa.Column('email', sa.String(length=320), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index('ix_login_failures_client_at', 'login_failures', ['client', 'at'])
    op.create_index('ix_login_failures_at', 'login_failures', ['at'])


def downgrade() -> None:
    op.drop_index('ix_login_failures_at', table_name='login_failures')
    op.drop_index('ix_login_failures_client_at', table_name='login_failures')
    op.drop_table('login_failures')
