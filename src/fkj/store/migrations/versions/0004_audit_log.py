"""audit log (append-only, hash-chained per tenant)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

# Triggers refusing any change to the audit rows, on both backends. On PostgreSQL the app role
# has no UPDATE/DELETE privilege anyway; the trigger also stops the owner, who would have to
# drop or disable it first (itself a visible, logged DDL change).
_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION fkj_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit log is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$
"""
_PG_HEAD_FUNCTION = """
CREATE OR REPLACE FUNCTION fkj_audit_head_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.tenant <> OLD.tenant OR NEW.last_seq < OLD.last_seq THEN
        RAISE EXCEPTION 'audit chain head may only move forward: % on audit_head refused', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$
"""
_APPEND_ONLY = ("audit_log", "audit_patient")


def upgrade() -> None:
    op.create_table('audit_head',
    sa.Column('tenant', sa.String(length=4), nullable=False),
    sa.Column('last_seq', sa.BigInteger(), nullable=False),
    sa.Column('last_hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('tenant')
    )
    op.create_table('audit_log',
    sa.Column('tenant', sa.String(length=4), nullable=False),
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('recorded', sa.BigInteger(), nullable=False),
    sa.Column('patients', sa.Text(), nullable=False),
    sa.Column('agent', sa.String(length=200), nullable=False),
    sa.Column('action', sa.String(length=1), nullable=False),
    sa.Column('subtype', sa.String(length=64), nullable=False),
    sa.Column('purpose', sa.String(length=100), nullable=False),
    sa.Column('outcome', sa.String(length=2), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('tenant', 'seq')
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index('ix_audit_log_tenant_agent_recorded', ['tenant', 'agent', 'recorded'], unique=False)
        batch_op.create_index('ix_audit_log_tenant_recorded', ['tenant', 'recorded'], unique=False)

    op.create_table('audit_patient',
    sa.Column('tenant', sa.String(length=4), nullable=False),
    sa.Column('patient', sa.String(length=128), nullable=False),
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.PrimaryKeyConstraint('tenant', 'patient', 'seq')
    )

    if op.get_bind().dialect.name == "postgresql":
        _postgresql()
    else:
        _sqlite()


def _postgresql() -> None:
    from fkj.store import rls
    conn = op.get_bind()
    for table in ("audit_log", "audit_patient", "audit_head"):
        rls.protect(conn, table, append_only=True)
    rls.grant_plain(conn, "audit_head", "UPDATE")
    op.execute(_PG_FUNCTION)
    op.execute(_PG_HEAD_FUNCTION)
    for table in _APPEND_ONLY:
        op.execute(f'CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON "{table}" '
                   'FOR EACH ROW EXECUTE FUNCTION fkj_audit_append_only()')
        op.execute(f'CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON "{table}" '
                   'FOR EACH STATEMENT EXECUTE FUNCTION fkj_audit_append_only()')
    op.execute('CREATE TRIGGER audit_head_forward BEFORE UPDATE OR DELETE ON "audit_head" '
               'FOR EACH ROW EXECUTE FUNCTION fkj_audit_head_forward()')
    op.execute('CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON "audit_head" '
               'FOR EACH STATEMENT EXECUTE FUNCTION fkj_audit_append_only()')


def _sqlite() -> None:
    for table in _APPEND_ONLY:
        for what in ("UPDATE", "DELETE"):
            op.execute(
                f'CREATE TRIGGER {table}_no_{what.lower()} BEFORE {what} ON "{table}" '
                f"BEGIN SELECT RAISE(ABORT, 'audit log is append-only: {what} on {table} "
                "refused'); END")
    op.execute(
        'CREATE TRIGGER audit_head_forward BEFORE UPDATE ON "audit_head" '
        'WHEN NEW.tenant <> OLD.tenant OR NEW.last_seq < OLD.last_seq '
        "BEGIN SELECT RAISE(ABORT, 'audit chain head may only move forward'); END")
    op.execute(
        'CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON "audit_head" '
        "BEGIN SELECT RAISE(ABORT, 'audit chain head may only move forward'); END")


def downgrade() -> None:
    # dropping the tables drops their triggers
    op.drop_table('audit_patient')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_log_tenant_recorded')
        batch_op.drop_index('ix_audit_log_tenant_agent_recorded')

    op.drop_table('audit_log')
    op.drop_table('audit_head')
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS fkj_audit_append_only()")
        op.execute("DROP FUNCTION IF EXISTS fkj_audit_head_forward()")
