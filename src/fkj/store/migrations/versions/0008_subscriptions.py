"""events: subscription state, matched notifications, websocket binding tokens, outbox

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('subscription_state',
    sa.Column('tenant', sa.String(length=4), nullable=False),
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('topic', sa.Text(), nullable=False),
    sa.Column('filters', sa.Text(), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('endpoint', sa.Text(), nullable=True),
    sa.Column('headers', sa.Text(), nullable=False),
    sa.Column('content', sa.String(length=16), nullable=False),
    sa.Column('heartbeat', sa.Integer(), nullable=False),
    sa.Column('timeout', sa.Integer(), nullable=False),
    sa.Column('max_count', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('owner', sa.Text(), nullable=False),
    sa.Column('matched_seq', sa.BigInteger(), nullable=False),
    sa.Column('event_count', sa.BigInteger(), nullable=False),
    sa.Column('delivered', sa.BigInteger(), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('next_attempt', sa.BigInteger(), nullable=False),
    sa.Column('last_sent', sa.BigInteger(), nullable=False),
    sa.Column('lease_owner', sa.String(length=64), nullable=True),
    sa.Column('lease_until', sa.BigInteger(), nullable=False, server_default='0'),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('end_time', sa.BigInteger(), nullable=True),
    sa.Column('created', sa.BigInteger(), nullable=False),
    sa.Column('updated', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('tenant', 'id')
    )
    op.create_table('subscription_event',
    sa.Column('tenant', sa.String(length=4), nullable=False),
    sa.Column('sub_id', sa.String(length=64), nullable=False),
    sa.Column('number', sa.BigInteger(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('rid', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('action', sa.String(length=8), nullable=False),
    sa.Column('time', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('tenant', 'sub_id', 'number')
    )
    op.create_table('ws_binding_token',
    sa.Column('token', sa.String(length=64), nullable=False),
    sa.Column('tenant', sa.String(length=4), nullable=False),
    sa.Column('subscriptions', sa.Text(), nullable=False),
    sa.Column('expires', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('token')
    )
    with op.batch_alter_table('ws_binding_token', schema=None) as batch_op:
        batch_op.create_index('ix_ws_binding_token_tenant', ['tenant'], unique=False)
    op.create_table('event_outbox',
    sa.Column('tenant', sa.String(length=4), nullable=False),
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('tenant', 'name')
    )

    if op.get_bind().dialect.name == "postgresql":
        from fkj.store import rls
        for table in ("subscription_state", "subscription_event", "ws_binding_token",
                      "event_outbox"):
            rls.protect(op.get_bind(), table)


def downgrade() -> None:
    op.drop_table('event_outbox')
    with op.batch_alter_table('ws_binding_token', schema=None) as batch_op:
        batch_op.drop_index('ix_ws_binding_token_tenant')
    op.drop_table('ws_binding_token')
    op.drop_table('subscription_event')
    op.drop_table('subscription_state')
