"""bulk import progress and bulk export jobs

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('bulk_import_file',
    sa.Column('tenant', sa.String(length=4), nullable=False),
    sa.Column('file_key', sa.String(length=64), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('head_sha', sa.String(length=64), nullable=False),
    sa.Column('line', sa.BigInteger(), nullable=False),
    sa.Column('loaded', sa.BigInteger(), nullable=False),
    sa.Column('failed', sa.BigInteger(), nullable=False),
    sa.Column('done', sa.Boolean(), nullable=False),
    sa.Column('updated', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('tenant', 'file_key')
    )
    op.create_table('bulk_export_job',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('tenant', sa.String(length=4), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('level', sa.String(length=16), nullable=False),
    sa.Column('subject', sa.String(length=200), nullable=False),
    sa.Column('client_id', sa.String(length=200), nullable=True),
    sa.Column('request', sa.Text(), nullable=False),
    sa.Column('params', sa.Text(), nullable=False),
    sa.Column('transaction_time', sa.BigInteger(), nullable=False),
    sa.Column('created', sa.BigInteger(), nullable=False),
    sa.Column('updated', sa.BigInteger(), nullable=False),
    sa.Column('expires', sa.BigInteger(), nullable=True),
    sa.Column('progress', sa.Text(), nullable=False),
    sa.Column('manifest', sa.Text(), nullable=True),
    sa.Column('directory', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('bulk_export_job', schema=None) as batch_op:
        batch_op.create_index('ix_bulk_export_job_tenant_status', ['tenant', 'status'],
                              unique=False)

    if op.get_bind().dialect.name == "postgresql":
        from fkj.store import rls
        for table in ("bulk_import_file", "bulk_export_job"):
            rls.protect(op.get_bind(), table)


def downgrade() -> None:
    with op.batch_alter_table('bulk_export_job', schema=None) as batch_op:
        batch_op.drop_index('ix_bulk_export_job_tenant_status')
    op.drop_table('bulk_export_job')
    op.drop_table('bulk_import_file')
