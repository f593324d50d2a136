"""audit quarantine: records the database could not store as written are kept here, with a
hash-protected stand-in in the chain

A shipment of journaled audit records that the database refuses because of one record
(issue 30: a NUL byte) is bisected; the other records are chained and the bad one is kept
in ``audit_quarantine`` (its bytes, base64, and their sha256), while the chain gets, in its
place, a record naming that sha256 (``fkj.security.audit.quarantine``). Append-only, like
the log: triggers refuse UPDATE/DELETE on both backends; on PostgreSQL the app role may
only SELECT and INSERT, under the tenant policy.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08
"""
import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_quarantine',
    sa.Column('tenant', sa.String(length=4), nullable=False),
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('quarantined', sa.BigInteger(), nullable=False),
    sa.Column('journal', sa.String(length=32), nullable=False),
    sa.Column('position', sa.BigInteger(), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('record', sa.Text(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('tenant', 'seq')
    )
    if op.get_bind().dialect.name == "postgresql":
        from fkj.store import rls
        rls.protect(op.get_bind(), "audit_quarantine", append_only=True)
        # fkj_audit_append_only() is migration 0004's
        op.execute('CREATE TRIGGER audit_quarantine_append_only BEFORE UPDATE OR DELETE ON '
                   '"audit_quarantine" FOR EACH ROW EXECUTE FUNCTION fkj_audit_append_only()')
        op.execute('CREATE TRIGGER audit_quarantine_no_truncate BEFORE TRUNCATE ON '
                   '"audit_quarantine" FOR EACH STATEMENT EXECUTE FUNCTION '
                   'fkj_audit_append_only()')
    else:
        for what in ("UPDATE", "DELETE"):
            op.execute(
                f'CREATE TRIGGER audit_quarantine_no_{what.lower()} BEFORE {what} ON '
                f'"audit_quarantine" BEGIN SELECT RAISE(ABORT, \'audit log is append-only: '
                f"{what} on audit_quarantine refused'); END")


def downgrade() -> None:
    op.drop_table('audit_quarantine')  # its triggers go with it
