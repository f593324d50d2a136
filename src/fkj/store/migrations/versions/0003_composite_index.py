"""composite search index

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    comps = [sa.Column(f"c{i}_{k}", sa.Float() if k in ("lo", "hi") else sa.Text(), nullable=True)
             for i in (1, 2, 3) for k in ("s", "v", "t", "lo", "hi")]
    op.create_table('idx_composite',
    sa.Column('tenant', sa.String(length=4), nullable=False),
    sa.Column('rid', sa.BigInteger(), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('param', sa.String(length=100), nullable=False),
    *comps
    )
    with op.batch_alter_table('idx_composite', schema=None) as batch_op:
        batch_op.create_index('ix_idx_composite_lookup',
                              ['tenant', 'type', 'param', 'c1_v', 'c1_s'], unique=False)
        batch_op.create_index('ix_idx_composite_rid', ['rid'], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        from fkj.store import rls
        rls.protect(op.get_bind(), "idx_composite")


def downgrade() -> None:
    with op.batch_alter_table('idx_composite', schema=None) as batch_op:
        batch_op.drop_index('ix_idx_composite_rid')
        batch_op.drop_index('ix_idx_composite_lookup')
    op.drop_table('idx_composite')
