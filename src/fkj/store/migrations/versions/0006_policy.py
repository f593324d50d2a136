"""access policy: emergency access (akuttilgang) grants

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table('emergency_access',
    sa.Column('id', big_id, autoincrement=True, nullable=False),
    sa.Column('tenant', sa.String(length=4), nullable=False),
    sa.Column('agent', sa.String(length=200), nullable=False),
    sa.Column('fhir_user', sa.String(length=200), nullable=True),
    sa.Column('unit', sa.String(length=200), nullable=True),
    sa.Column('roles', sa.String(length=400), nullable=False),
    sa.Column('patient', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('started', sa.BigInteger(), nullable=False),
    sa.Column('expires', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('emergency_access', schema=None) as batch_op:
        batch_op.create_index('ix_emergency_access_agent',
                              ['tenant', 'agent', 'patient', 'expires'], unique=False)
        batch_op.create_index('ix_emergency_access_started', ['tenant', 'started'],
                              unique=False)

    if op.get_bind().dialect.name == "postgresql":
        from fkj.store import rls
        conn = op.get_bind()
        rls.protect(conn, "emergency_access")
        rls.grant_sequences(conn)


def downgrade() -> None:
    with op.batch_alter_table('emergency_access', schema=None) as batch_op:
        batch_op.drop_index('ix_emergency_access_started')
        batch_op.drop_index('ix_emergency_access_agent')
    op.drop_table('emergency_access')
