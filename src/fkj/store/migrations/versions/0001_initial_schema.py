"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-22
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('event_log',
    sa.Column('tenant', sa.String(length=4), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('action', sa.String(length=8), nullable=False),
    sa.Column('time', sa.BigInteger(), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('tenant', 'seq')
    )
    op.create_table('idx_date',
    sa.Column('tenant', sa.String(length=4), nullable=False),
    sa.Column('rid', sa.BigInteger(), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('param', sa.String(length=100), nullable=False),
    sa.Column('low', sa.Float(), nullable=True),
    sa.Column('high', sa.Float(), nullable=True)
    )
    with op.batch_alter_table('idx_date', schema=None) as batch_op:
        batch_op.create_index('ix_idx_date_lookup', ['tenant', 'type', 'param', 'low', 'high'], unique=False)
        batch_op.create_index('ix_idx_date_rid', ['rid'], unique=False)

    op.create_table('idx_number',
    sa.Column('tenant', sa.String(length=4), nullable=False),
    sa.Column('rid', sa.BigInteger(), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('param', sa.String(length=100), nullable=False),
    sa.Column('low', sa.Float(), nullable=True),
    sa.Column('high', sa.Float(), nullable=True)
    )
    with op.batch_alter_table('idx_number', schema=None) as batch_op:
        batch_op.create_index('ix_idx_number_lookup', ['tenant', 'type', 'param', 'low'], unique=False)
        batch_op.create_index('ix_idx_number_rid', ['rid'], unique=False)

    op.create_table('idx_quantity',
    sa.Column('tenant', sa.String(length=4), nullable=False),
    sa.Column('rid', sa.BigInteger(), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('param', sa.String(length=100), nullable=False),
    sa.Column('system', sa.Text(), nullable=True),
    sa.Column('code', sa.Text(), nullable=True),
    sa.Column('low', sa.Float(), nullable=True),
    sa.Column('high', sa.Float(), nullable=True)
    )
    with op.batch_alter_table('idx_quantity', schema=None) as batch_op:
        batch_op.create_index('ix_idx_quantity_lookup', ['tenant', 'type', 'param', 'code', 'low'], unique=False)
        batch_op.create_index('ix_idx_quantity_rid', ['rid'], unique=False)

    op.create_table('idx_reference',
    sa.Column('tenant', sa.String(length=4), nullable=False),
    sa.Column('rid', sa.BigInteger(), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('param', sa.String(length=100), nullable=False),
    sa.Column('target_type', sa.String(length=64), nullable=True),
    sa.Column('target_id', sa.String(length=64), nullable=True),
    sa.Column('url', sa.Text(), nullable=True),
    sa.Column('ident_system', sa.Text(), nullable=True),
    sa.Column('ident_value', sa.Text(), nullable=True)
    )
    with op.batch_alter_table('idx_reference', schema=None) as batch_op:
        batch_op.create_index('ix_idx_reference_lookup', ['tenant', 'type', 'param', 'target_id', 'target_type'], unique=False)
        batch_op.create_index('ix_idx_reference_rid', ['rid'], unique=False)
        batch_op.create_index('ix_idx_reference_target', ['tenant', 'target_type', 'target_id'], unique=False)

    op.create_table('idx_string',
    sa.Column('tenant', sa.String(length=4), nullable=False),
    sa.Column('rid', sa.BigInteger(), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('param', sa.String(length=100), nullable=False),
    sa.Column('norm', sa.Text(), nullable=False),
    sa.Column('exact', sa.Text(), nullable=False)
    )
    with op.batch_alter_table('idx_string', schema=None) as batch_op:
        batch_op.create_index('ix_idx_string_lookup', ['tenant', 'type', 'param', 'norm'], unique=False)
        batch_op.create_index('ix_idx_string_rid', ['rid'], unique=False)

    op.create_table('idx_token',
    sa.Column('tenant', sa.String(length=4), nullable=False),
    sa.Column('rid', sa.BigInteger(), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('param', sa.String(length=100), nullable=False),
    sa.Column('system', sa.Text(), nullable=True),
    sa.Column('code', sa.Text(), nullable=True),
    sa.Column('text', sa.Text(), nullable=True)
    )
    with op.batch_alter_table('idx_token', schema=None) as batch_op:
        batch_op.create_index('ix_idx_token_lookup', ['tenant', 'type', 'param', 'code', 'system'], unique=False)
        batch_op.create_index('ix_idx_token_rid', ['rid'], unique=False)

    op.create_table('idx_uri',
    sa.Column('tenant', sa.String(length=4), nullable=False),
    sa.Column('rid', sa.BigInteger(), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('param', sa.String(length=100), nullable=False),
    sa.Column('uri', sa.Text(), nullable=False)
    )
    with op.batch_alter_table('idx_uri', schema=None) as batch_op:
        batch_op.create_index('ix_idx_uri_lookup', ['tenant', 'type', 'param', 'uri'], unique=False)
        batch_op.create_index('ix_idx_uri_rid', ['rid'], unique=False)

    op.create_table('resource',
    sa.Column('rid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('tenant', sa.String(length=4), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('last_updated', sa.BigInteger(), nullable=False),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('rid'),
    sa.UniqueConstraint('tenant', 'type', 'id', name='uq_resource_tenant_type_id')
    )
    with op.batch_alter_table('resource', schema=None) as batch_op:
        batch_op.create_index('ix_resource_tenant_type_updated', ['tenant', 'type', 'last_updated'], unique=False)

    op.create_table('resource_version',
    sa.Column('tenant', sa.String(length=4), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('last_updated', sa.BigInteger(), nullable=False),
    sa.Column('method', sa.String(length=8), nullable=False),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('tenant', 'type', 'id', 'version')
    )
    with op.batch_alter_table('resource_version', schema=None) as batch_op:
        batch_op.create_index('ix_resource_version_tenant_seq', ['tenant', 'seq'], unique=False)
        batch_op.create_index('ix_resource_version_tenant_type_seq', ['tenant', 'type', 'seq'], unique=False)

    op.create_table('tenant',
    sa.Column('id', sa.String(length=4), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('created', sa.BigInteger(), nullable=False),
    sa.Column('event_seq', sa.BigInteger(), nullable=False),
    sa.Column('settings', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )


    if op.get_bind().dialect.name == "postgresql":
        _row_level_security()


def _row_level_security() -> None:
    from fkj.store import rls
    conn = op.get_bind()
    rls.ensure_role(conn)
    rls.grant_plain(conn, "tenant")
    rls.grant_plain(conn, "alembic_version", "SELECT")
    for table in ("resource", "resource_version", "idx_string", "idx_token", "idx_reference",
                  "idx_date", "idx_number", "idx_quantity", "idx_uri"):
        rls.protect(conn, table)
    rls.protect(conn, "event_log", append_only=True)
    rls.grant_sequences(conn)


def downgrade() -> None:
    op.drop_table('tenant')
    with op.batch_alter_table('resource_version', schema=None) as batch_op:
        batch_op.drop_index('ix_resource_version_tenant_type_seq')
        batch_op.drop_index('ix_resource_version_tenant_seq')

    op.drop_table('resource_version')
    with op.batch_alter_table('resource', schema=None) as batch_op:
        batch_op.drop_index('ix_resource_tenant_type_updated')

    op.drop_table('resource')
    with op.batch_alter_table('idx_uri', schema=None) as batch_op:
        batch_op.drop_index('ix_idx_uri_rid')
        batch_op.drop_index('ix_idx_uri_lookup')

    op.drop_table('idx_uri')
    with op.batch_alter_table('idx_token', schema=None) as batch_op:
        batch_op.drop_index('ix_idx_token_rid')
        batch_op.drop_index('ix_idx_token_lookup')

    op.drop_table('idx_token')
    with op.batch_alter_table('idx_string', schema=None) as batch_op:
        batch_op.drop_index('ix_idx_string_rid')
        batch_op.drop_index('ix_idx_string_lookup')

    op.drop_table('idx_string')
    with op.batch_alter_table('idx_reference', schema=None) as batch_op:
        batch_op.drop_index('ix_idx_reference_target')
        batch_op.drop_index('ix_idx_reference_rid')
        batch_op.drop_index('ix_idx_reference_lookup')

    op.drop_table('idx_reference')
    with op.batch_alter_table('idx_quantity', schema=None) as batch_op:
        batch_op.drop_index('ix_idx_quantity_rid')
        batch_op.drop_index('ix_idx_quantity_lookup')

    op.drop_table('idx_quantity')
    with op.batch_alter_table('idx_number', schema=None) as batch_op:
        batch_op.drop_index('ix_idx_number_rid')
        batch_op.drop_index('ix_idx_number_lookup')

    op.drop_table('idx_number')
    with op.batch_alter_table('idx_date', schema=None) as batch_op:
        batch_op.drop_index('ix_idx_date_rid')
        batch_op.drop_index('ix_idx_date_lookup')

    op.drop_table('idx_date')
    op.drop_table('event_log')
