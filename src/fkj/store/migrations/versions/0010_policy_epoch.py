"""access policy: per-tenant policy epoch (invalidates cached decision contexts);
audit: fkj_audit_append() on PostgreSQL (a read's audit record in one round trip)

Revision ID: 0010
Revises: 0007
Create Date: 2026-11-22
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('policy_epoch',
    sa.Column('tenant', sa.String(length=4), nullable=False),
    sa.Column('epoch', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('tenant')
    )
    if op.get_bind().dialect.name == "postgresql":
        from fkj.store import rls
        # a counter, no clinical data: not tenant-scoped, so any connection can read it
        rls.grant_plain(op.get_bind(), "policy_epoch", "SELECT, INSERT, UPDATE")
        from fkj.security.audit.chain import PG_APPEND_FUNCTION
        op.execute(PG_APPEND_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS fkj_audit_append(text, json, text)")
    op.drop_table('policy_epoch')
